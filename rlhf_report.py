"""Compare finished RLHF pipeline runs (configs/rlhf_sentiment*.yaml) in one table and two plots:

    python rlhf_report.py RUN_DIR [RUN_DIR ...] --out DIR [--labels main no_kl ...] [--seeds]

Writes into DIR:
  table.md                the held-out evaluation of every run (SFT row once, then each run's PPO
                          policy): gold reward, reward-model score, KL to SFT, fluency and its
                          share of the SFT model's, SFT perplexity; plus the reward model's
                          held-out pair accuracy and each stage's wall time
  overoptimisation.png    during PPO, per run against env steps: the reward-model score the
                          policy is trained on, the gold reward it stands in for, the fluency
                          (share of grammatical completions) and the KL to SFT per completion
  gold_histogram.png      the gold reward of SFT samples against PPO samples of the first run on
                          the evaluation prompts (mean-seeking SFT spreads over modes, RL
                          concentrates)
The first run's SFT row stands for all: runs of the same seed share corpus, SFT and reward model;
each run's fluency is divided by its own SFT model's. With --seeds the runs are one config over
several seeds, and the table ends with their mean ± 95 % confidence interval and their worst seed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agents.run.cli import ArgumentParser
from agents.run.curves import PlotError, read_run
from agents.run.stages import DONE_MARKER, PPO_RUN, STAGES, stage_dir
from bench.stats import mean_confidence_interval

# (TensorBoard tag of the PPO stage, panel title) of the over-optimisation figure.
PANELS = (
    ("rollout/ep_rew_mean", "reward-model score (what PPO maximises)"),
    ("rlhf/gold_score", "gold reward (VADER compound)"),
    ("rlhf/fluency", "fluency (share the grammar accepts)"),
    ("rlhf/kl", "KL(π ‖ π_SFT) per completion (nats)"),
)


def read_stage(run_dir: Path, stage: str) -> dict[str, Any]:
    marker = stage_dir(run_dir, stage) / DONE_MARKER
    if not marker.is_file():
        raise PlotError(f"{run_dir} has not finished its {stage} stage (no {marker})")
    return json.loads(marker.read_text())


def read_evaluation(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The eval stage's per-policy metrics, with every sample's gold reward."""
    read_stage(run_dir, "eval")
    results = json.loads((stage_dir(run_dir, "eval") / "eval.json").read_text())
    if "ppo" not in results:
        raise PlotError(f"{run_dir}: the evaluation has no PPO policy (did the PPO stage finish?)")
    return results


def table(run_dirs: list[Path], labels: list[str], seeds: bool = False) -> str:
    evaluations = [read_evaluation(r) for r in run_dirs]
    header = (
        "| policy | gold reward | RM score | KL to SFT (nats) | fluency | fluency ÷ SFT's | SFT perplexity "
        "| RM held-out accuracy | PPO wall time (s) | pipeline wall time (s) |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]

    def fluency_share(evaluation: dict[str, dict[str, Any]], policy: str) -> float:
        sft_fluency = evaluation["sft"]["fluency"]
        return evaluation[policy]["fluency"] / sft_fluency if sft_fluency > 0 else float("nan")

    def row(name: str, evaluation: dict[str, dict[str, Any]], policy: str, run_dir: Path | None) -> str:
        metrics = evaluation[policy]
        cells = [
            name,
            f"{metrics['gold_reward']:.3f}",
            f"{metrics['rm_score']:.2f}",
            f"{metrics['kl_to_sft']:.2f}",
            f"{metrics['fluency']:.3f}",
            f"{fluency_share(evaluation, policy):.2f}",
            f"{metrics['sft_perplexity']:.2f}",
        ]
        if run_dir is None:
            cells += ["", "", ""]
        else:
            stages = {s: read_stage(run_dir, s) for s in STAGES}
            cells += [
                f"{stages['reward_model']['held_out_accuracy']:.3f}",
                f"{stages['ppo'].get('wall_time_s', float('nan')):.0f}",
                f"{sum(s.get('wall_time_s', float('nan')) for s in stages.values()):.0f}",
            ]
        return "| " + " | ".join(cells) + " |"

    lines.append(row("SFT" + (f" ({labels[0]})" if seeds else ""), evaluations[0], "sft", None))
    lines += [row(f"PPO {label}", e, "ppo", r) for label, e, r in zip(labels, evaluations, run_dirs)]
    if seeds:
        gold = [e["ppo"]["gold_reward"] for e in evaluations]
        shares = [fluency_share(e, "ppo") for e in evaluations]
        worst = int(np.argmin(gold))
        mean_gold, half_gold = mean_confidence_interval(gold)
        mean_share, half_share = mean_confidence_interval(shares)
        lines.append(
            f"\nPPO over {len(gold)} seeds: gold reward {mean_gold:.3f} ± {half_gold:.3f} (mean ± 95 % CI), "
            f"worst {gold[worst]:.3f} ({labels[worst]}); "
            f"fluency ÷ SFT's {mean_share:.2f} ± {half_share:.2f}, lowest {min(shares):.2f}"
        )
    return "\n".join(lines) + "\n"


def plot_overoptimisation(run_dirs: list[Path], labels: list[str], output: Path) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.8), constrained_layout=True)
    for axis, (tag, title) in zip(axes, PANELS):
        for run_dir, label in zip(run_dirs, labels):
            run = read_run(run_dir / PPO_RUN, tag)
            axis.plot(run.steps, run.values, label=label)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("env steps (tokens)")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.savefig(output, dpi=110)
    plt.close(figure)


def plot_gold_histogram(run_dir: Path, label: str, output: Path) -> None:
    import matplotlib.pyplot as plt

    results = read_evaluation(run_dir)
    bins = np.linspace(-1.0, 1.0, 41)
    figure, axis = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for name, title, color in (("sft", "SFT", "tab:gray"), ("ppo", f"PPO {label}", "tab:blue")):
        gold = np.array(results[name]["gold_rewards"])
        summary = f"mean {gold.mean():.2f}, std {gold.std():.2f}, n={len(gold)}"
        axis.hist(gold, bins=bins, alpha=0.6, color=color, label=f"{title} ({summary})")
    axis.set_xlabel("gold reward of a sample (VADER compound)")
    axis.set_ylabel("samples")
    axis.set_title("held-out prompts: SFT samples spread over modes, RL samples concentrate", fontsize=10)
    axis.legend()
    figure.savefig(output, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="pipeline run dirs (the first is the main run)")
    parser.add_argument("--out", type=Path, required=True, help="directory for table.md and the PNGs")
    parser.add_argument("--labels", nargs="+", help="one name per run (default: the run dirs' names)")
    parser.add_argument("--seeds", action="store_true",
                        help="the runs are seeds of one config: add their mean ± 95%% CI and worst seed")
    args = parser.parse_args(argv)
    labels = args.labels or [r.name for r in args.runs]
    try:
        if len(labels) != len(args.runs):
            raise PlotError(f"{len(labels)} labels for {len(args.runs)} runs")
        if args.out.exists() and not args.out.is_dir():
            raise PlotError(f"--out {args.out} is not a directory")
        for run_dir in args.runs:  # everything is read and checked before anything is written
            read_evaluation(run_dir)
            for tag, _ in PANELS:
                read_run(run_dir / PPO_RUN, tag)
        import matplotlib

        matplotlib.use("Agg")
        args.out.mkdir(parents=True, exist_ok=True)
        text = table(args.runs, labels, args.seeds)
        (args.out / "table.md").write_text(text)
        plot_overoptimisation(args.runs, labels, args.out / "overoptimisation.png")
        plot_gold_histogram(args.runs[0], labels[0], args.out / "gold_histogram.png")
    except (PlotError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    print(f"wrote {args.out / 'table.md'}, overoptimisation.png and gold_histogram.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
