"""Range checks of a well-typed config: values that parse but mean nothing (negative rates,
empty batches...)."""

from __future__ import annotations

from agents.config.sections import TrainConfig
from envs.options import ConfigError

# The largest seed: numpy's global seeding (np.random.seed) and its legacy generators take
# 0..2**32 - 1, and gymnasium refuses negative seeds.
MAX_SEED = 2**32 - 1


def validate(config: TrainConfig) -> None:
    """Refuse values that are well-typed but meaningless (negative rates, empty batches...)."""
    ppo, env = config.ppo, config.env

    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    require(0 <= config.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED} (2**32 - 1), got {config.seed}")
    require(config.total_timesteps > 0, "total_timesteps must be > 0")
    require(config.checkpoint_interval >= 0, "checkpoint_interval must be >= 0 (0: only at the end)")
    require(config.keep_checkpoints >= 0, "keep_checkpoints must be >= 0 (0: keep all)")
    require(config.stats_window > 0, "stats_window must be > 0")
    require(config.video_interval > 0, "video_interval must be > 0")
    require(config.eval_interval >= 0, "eval_interval must be >= 0 (0: no periodic evaluation)")
    require(config.eval_episodes > 0, "eval_episodes must be > 0")
    require(config.log_interval > 0, "log_interval must be > 0")
    require(config.dist_timeout > 0, "dist_timeout must be > 0 (seconds)")
    require(config.torch_threads >= 0, "torch_threads must be >= 0 (0: one per core)")
    require(env.num_envs > 0, "env.num_envs must be > 0")
    env.check_workers()
    require(env.screen_size > 0, "env.screen_size must be > 0")
    require(env.frame_stack > 0, "env.frame_stack must be > 0")
    require(env.atari.noop_max >= 0, "env.atari.noop_max must be >= 0")
    require(env.atari.frame_skip > 0, "env.atari.frame_skip must be > 0")
    if env.vector_backend != "envpool":  # envpool takes <Game>NoFrameskip-v4 ids only, and says so
        env.atari.check_game(config.env_id)
    require(all(h > 0 for h in config.network.hidden_sizes), "network.hidden_sizes must be > 0")
    require(ppo.learning_rate > 0, "ppo.learning_rate must be > 0")
    require(ppo.adam_eps > 0, "ppo.adam_eps must be > 0")
    require(ppo.num_steps > 0, "ppo.num_steps must be > 0")
    require(ppo.update_epochs > 0, "ppo.update_epochs must be > 0")
    require(ppo.num_minibatches > 0, "ppo.num_minibatches must be > 0")
    require(
        ppo.num_minibatches <= config.batch_size,
        f"ppo.num_minibatches ({ppo.num_minibatches}) exceeds the batch size "
        f"env.num_envs × ppo.num_steps = {config.batch_size}",
    )
    require(0 <= ppo.gamma <= 1, "ppo.gamma must be in [0, 1]")
    require(0 <= ppo.gae_lambda <= 1, "ppo.gae_lambda must be in [0, 1]")
    require(ppo.clip_coef > 0, "ppo.clip_coef must be > 0")
    require(ppo.vf_coef >= 0, "ppo.vf_coef must be >= 0")
    require(ppo.ent_coef >= 0, "ppo.ent_coef must be >= 0")
    require(ppo.max_grad_norm > 0, "ppo.max_grad_norm must be > 0")
    require(ppo.target_kl is None or ppo.target_kl > 0, "ppo.target_kl must be > 0 or null")
    require(ppo.kl_penalty_coef >= 0, "ppo.kl_penalty_coef must be >= 0")
    require(ppo.kl_penalty_target > 0, "ppo.kl_penalty_target must be > 0")
    rlhf = config.rlhf
    require(rlhf.kl_coef >= 0, "rlhf.kl_coef must be >= 0")
    require(rlhf.kl_target > 0, "rlhf.kl_target must be > 0")
    require(rlhf.kl_horizon > 0, "rlhf.kl_horizon must be > 0")
    require(rlhf.sft_steps >= 0, "rlhf.sft_steps must be >= 0")
    require(rlhf.sft_learning_rate > 0, "rlhf.sft_learning_rate must be > 0")
    require(rlhf.sft_batch_size > 0, "rlhf.sft_batch_size must be > 0")
    require(rlhf.sample_interval > 0, "rlhf.sample_interval must be > 0")
    require(rlhf.ptx_coef >= 0, "rlhf.ptx_coef must be >= 0")
    require(rlhf.ptx_batch_size > 0, "rlhf.ptx_batch_size must be > 0")
    require(
        rlhf.ptx_coef == 0 or rlhf.ptx_corpus is not None or config.pipeline.enabled,
        "rlhf.ptx_coef > 0 needs rlhf.ptx_corpus (the RLHF pipeline brings its own corpus)",
    )
    pipe = config.pipeline
    require(pipe.corpus_size >= 2, "pipeline.corpus_size must be >= 2")
    require(0 < pipe.held_out_fraction < 1, "pipeline.held_out_fraction must be in (0, 1)")
    require(0 < pipe.eval_prompt_fraction < 1, "pipeline.eval_prompt_fraction must be in (0, 1)")
    require(
        min(pipe.rm_pairs, pipe.rm_held_out_pairs, pipe.rm_steps, pipe.rm_batch_size) > 0,
        "pipeline.rm_* counts must be > 0",
    )
    require(pipe.rm_learning_rate > 0, "pipeline.rm_learning_rate must be > 0")
    require(0 <= pipe.label_noise < 0.5, "pipeline.label_noise must be in [0, 0.5)")
    require(pipe.eval_samples_per_prompt > 0, "pipeline.eval_samples_per_prompt must be > 0")
    require(rlhf.group_size > 1, "rlhf.group_size must be > 1 (advantages compare completions of a group)")
    if config.algo == "grpo":
        # GRPO's batch has no critic targets (values and returns are zeros): a value loss would
        # pull V to 0 through the shared trunk.
        require(ppo.vf_coef == 0, "algo grpo has no critic: set ppo.vf_coef: 0")
        require(
            not (env.normalize_obs or env.normalize_reward),
            "algo grpo plays plain envs: env.normalize_obs and env.normalize_reward are for algo ppo",
        )
        require(
            env.num_envs % rlhf.group_size == 0,
            f"algo grpo: env.num_envs ({env.num_envs}) must be a multiple of "
            f"rlhf.group_size ({rlhf.group_size})",
        )
    net = config.network
    require(min(net.d_model, net.n_layers, net.n_heads) > 0, "network.d_model, n_layers, n_heads must be > 0")
    require(net.d_model % net.n_heads == 0, "network.n_heads must divide network.d_model")
    require(0 <= net.value_grad_scale <= 1, "network.value_grad_scale must be in [0, 1]")
