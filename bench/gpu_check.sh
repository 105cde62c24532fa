#!/usr/bin/env bash
# The CUDA path on a machine with NVIDIA GPUs, as is, from the repository root after `make setup`
# (CI never runs this: it has no GPU). Prints the figures it measures; exits non-zero on the first
# failure.
#   1. one process on cuda:0 with bf16 autocast: Breakout, 64k env steps, env steps/s
#   2. DDP over every GPU (torchrun, nccl, cuda:LOCAL_RANK), 8 envs per GPU: env steps/s
#   3. the CUDA run of step 1 resumed on the CPU (device=cpu), and replayed there by enjoy.py
# Usage: bash bench/gpu_check.sh [OUT_DIR]   (default: a new directory under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${1:-$(mktemp -d /tmp/gpu-check-XXXX)}
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -lt 1 ]; then echo "error: torch sees no CUDA device" >&2; exit 2; fi
echo "GPUs: $GPUS ($($PY -c "import torch; print(torch.cuda.get_device_name(0))")), out: $OUT"

fps() {  # the last time/fps of a run dir (env steps/s of the training loop, all ranks)
  $PY - "$1" <<'PYEOF'
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
events = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
events.Reload()
last = events.Scalars("time/fps")[-1]
print(f"{last.value:.0f} env steps/s at step {last.step}")
PYEOF
}

$PY train.py --config configs/breakout.yaml total_timesteps=65536 device=cuda precision=bf16 \
  checkpoint_interval=0 run_dir="$OUT/cuda" --no-progress > "$OUT/cuda.log"
echo "1. one process, cuda:0, bf16: $(fps "$OUT/cuda")"

.venv/bin/torchrun --standalone --nproc_per_node="$GPUS" train.py --config configs/breakout.yaml \
  total_timesteps=$((65536 * GPUS)) device=cuda precision=bf16 env.num_envs=$((8 * GPUS)) \
  checkpoint_interval=0 run_dir="$OUT/ddp" --no-progress > "$OUT/ddp.log"
echo "2. DDP over $GPUS GPU(s), nccl: $(fps "$OUT/ddp")"

CUDA_VISIBLE_DEVICES= $PY train.py --resume "$OUT/cuda" total_timesteps=67584 device=cpu \
  --no-progress > "$OUT/resume_cpu.log"
echo "3. resumed on the CPU: $(tail -n 5 "$OUT/resume_cpu.log" | grep final)"
CUDA_VISIBLE_DEVICES= $PY enjoy.py "$OUT/cuda" --episodes 1 --max-steps 2000 | tail -n 1
