"""How much of one PPO update's gradient comes from the value loss, in our loss and in SB3's:

    python -m bench.grad_share CHECKPOINT [--segments 3] [--seed 7]

Plays `--segments` rollouts with the checkpoint's policy (the last one is the batch), then runs one
update as ppo_update does (our loss, clipped global gradient norm, the checkpoint's Adam state and
learning rate; float32). Use a checkpoint from mid-training: a final one has its learning rate
annealed to about 0. At every minibatch it also takes, without stepping, the gradient of each term
separately: the policy term −L_clip − c_e·H, and c_v times three value losses on the same
prediction V, old value V_old, return R and ε:
  ours (PPO2, max form)  mean(max((V − R)², (V_clip − R)²)), V_clip = V_old + clip(V − V_old, −ε, ε)
  SB3 (clip_range_vf)    mean((V_clip − R)²): no gradient where |V − V_old| > ε
  plain                  mean((V − R)²)
Printed per epoch (mean over its minibatches): the gradient norms, the factor the global clip
(max_grad_norm) would scale the summed gradient by, and the share of samples whose value moved
more than ε. With a shared trunk and one global clip, a larger value gradient leaves the policy
a smaller share of each step.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from agents.core.loss import ppo_loss
from agents.core.update import ShuffledMinibatches
from agents.run.cli import ArgumentParser, positive_int, seed_int

FORMS = ("ours", "sb3", "plain")


def value_losses(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float) -> dict:
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return {
        "ours": torch.max((values - returns) ** 2, (clipped - returns) ** 2).mean(),
        "sb3": ((clipped - returns) ** 2).mean(),
        "plain": ((values - returns) ** 2).mean(),
    }


def gradient(loss: torch.Tensor, parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, parameters)]
    return torch.cat([g.flatten() for g in grads])


def main(argv: list[str] | None = None) -> int:
    from agents.run.checkpoint import CheckpointError, load_agent, load_checkpoint
    from agents.run.collectors import SegmentCollector
    from envs.vector import make_vector_env

    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint of a CNN or MLP run (e.g. RUN/checkpoints/final.pt)")
    parser.add_argument(
        "--segments", type=positive_int, default=3, help="rollouts played; the last is the batch"
    )
    parser.add_argument("--seed", type=seed_int, default=7, help="env and shuffling seed")
    args = parser.parse_args(argv)
    try:
        agent, config = load_agent(args.checkpoint)
        optimizer_state = load_checkpoint(args.checkpoint)["optimizer"]
    except (OSError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    ppo = config.ppo
    envs = make_vector_env(config)
    collector = SegmentCollector(agent, envs, config, torch.device("cpu"))
    collector.restart(args.seed)
    for _ in range(args.segments):
        batch = collector.collect().batch
    envs.close()

    parameters = list(agent.parameters())
    optimizer = torch.optim.Adam(parameters, lr=ppo.learning_rate, eps=ppo.adam_eps)
    optimizer.load_state_dict(optimizer_state)  # the moments and learning rate of that moment
    minibatches = ShuffledMinibatches(torch.Generator().manual_seed(args.seed))
    rows = []
    for epoch in range(ppo.update_epochs):
        for idx in minibatches(batch, ppo.num_minibatches):
            logp, entropy, values = agent.evaluate_actions(batch.obs[idx], batch.actions[idx])
            advantages = batch.advantages[idx]
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            old_values, returns = batch.values[idx], batch.returns[idx]
            terms = ppo_loss(logp, batch.logp[idx], advantages, values, old_values, returns, entropy,
                             clip_coef=ppo.clip_coef, vf_coef=ppo.vf_coef, ent_coef=ppo.ent_coef,
                             clip_value_loss=ppo.clip_value_loss)
            policy_grad = gradient(terms.policy_loss - ppo.ent_coef * terms.entropy, parameters)
            losses = value_losses(values, old_values, returns, ppo.clip_coef)
            value_grads = {form: gradient(ppo.vf_coef * losses[form], parameters) for form in FORMS}
            row = [epoch, policy_grad.norm().item()] + [value_grads[f].norm().item() for f in FORMS]
            row += [min(1.0, ppo.max_grad_norm / (policy_grad + value_grads[f]).norm().item()) for f in FORMS]
            row.append(((values - old_values).abs() > ppo.clip_coef).float().mean().item())
            rows.append(row)
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()  # the step our trainer takes
            torch.nn.utils.clip_grad_norm_(parameters, ppo.max_grad_norm)
            optimizer.step()

    table = np.array(rows)
    learning_rate = optimizer.param_groups[0]["lr"]
    print(f"{config.env_id}, {args.checkpoint}: one update on a batch of {len(batch)}, "
          f"learning rate {learning_rate:.3g}")
    print("| epoch | ‖g policy‖ | ‖g value‖ ours | ‖g value‖ SB3 | ‖g value‖ plain "
          "| clip factor ours | clip factor SB3 | clip factor plain | share |V − V_old| > ε |")
    print("|---" * 9 + "|")
    for epoch in range(ppo.update_epochs):
        means = table[table[:, 0] == epoch].mean(axis=0)[1:]
        print(f"| {epoch + 1} | " + " | ".join(f"{value:.3f}" for value in means) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
