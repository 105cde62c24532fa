"""The sections of a training config: typed dataclasses, a default and a one-line comment per field.

The `env` section is envs.options.EnvOptions (with its `atari` subsection): the games own their
options, so envs/ needs nothing of agents/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from envs.options import EnvOptions


@dataclass
class NetworkConfig:
    # auto: by observation (transformer for tokens; nature_cnn for frames ≥ 36 px, small_cnn below; mlp)
    kind: Literal["auto", "mlp", "nature_cnn", "small_cnn", "impala_cnn", "transformer"] = "auto"
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])  # MLP layer widths
    activation: Literal["tanh", "relu"] = "tanh"  # MLP nonlinearity
    shared_trunk: bool = False  # MLP: one trunk for policy and value (False: two separate MLPs)
    d_model: int = 64  # transformer: width
    n_layers: int = 2  # transformer: blocks
    n_heads: int = 4  # transformer: attention heads (must divide d_model)
    value_grad_scale: float = 0.0  # transformer: share of the critic's gradient reaching the trunk
    squash: Literal["none", "tanh"] = (
        "none"  # Box actions: clip samples to the bounds, or map them through tanh
    )


@dataclass
class PPOConfig:
    learning_rate: float = 2.5e-4  # Adam step size at the start
    anneal_lr: bool = True  # linearly decay the learning rate to 0 over training
    adam_eps: float = 1e-5  # Adam epsilon (1e-5 as in the reference PPO implementations)
    num_steps: int = 128  # steps per env per rollout segment; batch = num_envs × num_steps
    num_minibatches: int = 4  # minibatches per epoch
    update_epochs: int = 4  # passes over each batch
    gamma: float = 0.99  # discount factor γ
    gae_lambda: float = 0.95  # GAE λ
    clip_coef: float = 0.2  # ε of the clipped surrogate (and of value clipping)
    anneal_clip: bool = False  # linearly decay clip_coef to 0 with the learning rate
    clip_value_loss: bool = True  # clip the value loss around the old value estimate
    vf_coef: float = 0.5  # c_v, weight of the value loss (algo grpo has no critic: 0)
    ent_coef: float = 0.0  # c_e, weight of the entropy bonus
    max_grad_norm: float = 0.5  # global gradient-norm clip
    norm_adv: bool = True  # normalise advantages per minibatch
    target_kl: Optional[float] = None  # stop the epochs early once approx KL exceeds this
    loss: Literal["clip", "kl_penalty"] = "clip"  # clipped surrogate or the adaptive KL penalty
    kl_penalty_coef: float = 1.0  # loss kl_penalty: initial β of the penalty on KL(π_old ‖ π_θ)
    kl_penalty_target: float = 0.01  # loss kl_penalty: β doubles above 1.5×target, halves below target/1.5


@dataclass
class RLHFConfig:
    """Text generation as RL (token envs): reference policy, KL control, SFT warm start, GRPO."""

    kl_coef: float = 0.0  # β of the KL to the frozen reference (SFT) policy; 0: no reference
    kl_estimator: Literal["k1", "k3"] = (
        "k1"  # k1: −β(log π − log π_ref) in each token's reward; k3: β·k3 in the loss
    )
    adaptive_kl: bool = False  # adapt β towards kl_target (Ziegler et al. 2019)
    kl_target: float = 1.0  # adaptive β: target KL per completion (nats)
    kl_horizon: int = 10_000  # adaptive β: completions over which β moves by up to 20 %
    sft_steps: int = 0  # supervised warm-start steps on task demonstrations before RL
    sft_learning_rate: float = 1e-3  # Adam step size of the SFT stage
    sft_batch_size: int = 64  # demonstrations per SFT step
    group_size: int = 8  # GRPO: completions sampled per prompt (env.num_envs must be a multiple)
    sample_interval: int = 10  # log a few sampled completions as text every N updates
    init_checkpoint: Optional[str] = None
    ptx_coef: float = (
        0.0  # γ_ptx of PPO-ptx: −γ_ptx·LL of a corpus batch added to each minibatch loss; 0: off
    )
    ptx_batch_size: int = 32  # corpus sentences per ptx batch
    ptx_corpus: Optional[str] = None  # corpus.json (train split) of the RLHF pipeline's corpus stage


@dataclass
class PipelineConfig:
    """The offline RLHF pipeline (agents/run/pipeline.py). SFT reads rlhf.sft_*, the PPO-ptx stage the
    usual sections and rlhf.ptx_coef / rlhf.ptx_batch_size (its corpus is the corpus stage's)."""

    enabled: bool = (
        False  # run the pipeline stages (corpus → SFT → reward model → PPO-ptx → eval) instead of one run
    )
    corpus_size: int = 3000  # distinct corpus sentences (train + held out)
    held_out_fraction: float = 0.1  # share of corpus sentences held out (SFT held-out cross-entropy)
    eval_prompt_fraction: float = 0.2  # share of prompts (per prompt kind, at least one) kept for evaluation
    rm_pairs: int = 2000  # preference pairs sampled on training prompts (ties are dropped)
    rm_held_out_pairs: int = 400  # pairs sampled on evaluation prompts, for the held-out accuracy
    rm_steps: int = 400  # Bradley–Terry Adam steps
    rm_batch_size: int = 64  # pairs per reward-model step
    rm_learning_rate: float = 3e-4  # reward-model Adam step size
    label_noise: float = 0.0  # probability that a training label is flipped (noisy labeller)
    eval_samples_per_prompt: int = 32  # completions sampled per evaluation prompt and policy


@dataclass
class TrainConfig:
    env_id: str = "CartPole-v1"  # any registered gymnasium id
    algo: Literal["ppo", "grpo"] = "ppo"  # grpo: group-normalised advantages, no critic (token envs)
    seed: int = 1  # seeds Python, NumPy, torch and the envs
    total_timesteps: int = 100_000  # env steps over all envs
    run_dir: Optional[str] = None  # default runs/<env>__<config>__<seed>__<timestamp>
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast for CNNs where supported
    torch_threads: int = 0  # torch intra-op threads; 0: one per core for CNNs, 1 for small nets
    checkpoint_interval: int = 50  # save a checkpoint every N updates (and always at the end)
    keep_checkpoints: int = 3  # periodic update_<N>.pt files kept, the newest K (final.pt always); 0: all
    stats_window: int = 100  # episodes in the rolling mean of rollout/ep_rew_mean
    capture_video: bool = False  # play and record one evaluation game every video_interval updates
    video_interval: int = 50  # updates between recorded games (videos/step_<env steps>.mp4)
    # Periodic evaluation (as SB3's EvalCallback): every eval_interval updates (0: never), play
    # eval_episodes whole games in an env of its own; logged as eval/mean_reward and
    # eval/mean_ep_length, the best mean's weights kept as checkpoints/best.pt.
    eval_interval: int = 0
    eval_episodes: int = 5
    eval_deterministic: bool = True  # the most likely action (argmax / mode / mean), else sampled
    # End training (final.pt written, extendable later) once rollout/ep_rew_mean reaches this, as
    # SB3's StopTrainingOnRewardThreshold does; e.g. 475, CartPole-v1's reward_threshold. None: never.
    stop_at_return: Optional[float] = None
    dist_timeout: int = 300  # torchrun: seconds a collective waits for the other ranks before the run fails
    log_interval: int = 10  # with no progress bar (--no-progress, not a terminal): a line every N updates
    env: EnvOptions = field(default_factory=EnvOptions)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    rlhf: RLHFConfig = field(default_factory=RLHFConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    @property
    def batch_size(self) -> int:
        return self.env.num_envs * self.ppo.num_steps

    @property
    def num_updates(self) -> int:
        # Round up, as Stable-Baselines3 does: training stops at the first update boundary at or
        # past total_timesteps, so the two libraries see the same number of env steps.
        return -(-self.total_timesteps // self.batch_size)
