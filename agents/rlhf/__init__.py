"""RLHF on the PPO core: reference policy and its KL, SFT, reward model, PPO-ptx, GRPO."""
