"""The PPO update: several epochs of shuffled minibatch gradient steps on one rollout batch."""

from __future__ import annotations

import math
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

from agents.config import PPOConfig
from agents.core.batch import Batch
from agents.core.loss import LossTerms, explained_variance, ppo_loss
from agents.core.loss_gradients import ppo_loss_gradients
from agents.networks.actor_critic import ActorCritic, accumulate_gradient

LOGGED_TERMS = ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")


class MinibatchSampler(Protocol):
    """Splits a batch into minibatches (index tensors) for one epoch; every sample once."""

    def __call__(self, batch: Batch, num_minibatches: int) -> list[torch.Tensor]: ...


class GradientSync(Protocol):
    """What data-parallel training (agents/run/distributed.py) changes in an update so that N ranks,
    each with its share of every minibatch, take the step one process would take on all of it."""

    def normalize_advantages(self, minibatches: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each minibatch's (Â − mean) / (std + 1e-8) with the mean and std of that whole
        minibatch over all ranks; every minibatch of an epoch at once (one collective, not one
        per step: on gloo a collective's latency alone is 0.25–1 ms)."""
        ...

    def backward(self, backward: Callable[[], None], parameters: list[torch.Tensor]) -> None:
        """backward(), which fills the parameters' .grad; when it returns, each parameter's .grad
        is its mean over the ranks."""
        ...

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value's mean over the ranks."""
        ...


class NonFiniteGradient(ArithmeticError):
    """A gradient holding NaN or ±inf, found before the optimizer step that would spread it into
    every weight; `parameter` names the first such parameter in module order."""

    def __init__(self, parameter: str) -> None:
        super().__init__(f"non-finite gradient in {parameter}")
        self.parameter = parameter


def clip_gradients(named_parameters: list[tuple[str, nn.Parameter]], max_norm: float) -> None:
    """Global-norm clipping, g ← g · min(1, c / (‖g‖₂ + 1e-6)) with ‖g‖₂ over all gradients, after
    checking that norm is finite: one NaN makes c / ‖g‖₂ NaN and with it every gradient, hiding
    where it came from, so NonFiniteGradient is raised first, naming the culprit. (A finite norm
    that overflows float32 to inf scales every gradient to 0 instead, as clip_grad_norm_ does.)"""
    gradients = [p.grad for _, p in named_parameters if p.grad is not None]
    if not gradients:
        return
    # The same numbers as nn.utils.get_total_norm + clip_grads_with_norm_, without their
    # per-call grouping of tensors by device and dtype: that costs 50 µs a step, a twentieth of
    # CartPole's whole update step. (The gradients of one optimizer share a device here.)
    total_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gradients))).item()
    if not math.isfinite(total_norm):
        for name, parameter in named_parameters:
            if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
                raise NonFiniteGradient(name)
    # The scale in float32 arithmetic, as torch's `max_norm / (norm + 1e-6)` computes it on a float32
    # tensor (a reciprocal, then a product), but on numpy scalars: each tensor op costs microseconds.
    norm = np.float32(total_norm) + np.float32(1e-6)
    scale = (np.float32(1.0) / norm) * np.float32(max_norm)
    if scale < 1:
        torch._foreach_mul_(gradients, float(scale))


def clear_gradients(parameters: list[torch.Tensor]) -> None:
    """optimizer.zero_grad(set_to_none=True) for the optimizer's `parameters`, without its per-call
    bookkeeping (a profiler scope, a dynamo guard): 40 µs, a thirtieth of CartPole's update step."""
    for parameter in parameters:
        parameter.grad = None


def backpropagate(
    backward: Callable[[], None], sync: GradientSync | None, parameters: list[torch.Tensor]
) -> None:
    """backward(), which fills the parameters' .grad; with `sync`, each .grad ends as its mean over
    the ranks."""
    if sync is not None:
        sync.backward(backward, parameters)
    else:
        backward()


def normalize_advantages(advantages: torch.Tensor) -> torch.Tensor:
    """(Â − mean(Â)) / (std(Â) + 1e-8) over the minibatch (std with Bessel's correction)."""
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def minibatch_advantages(
    advantages: torch.Tensor, splits: list[torch.Tensor], normalize: bool, sync: GradientSync | None
) -> list[torch.Tensor]:
    """Â of each minibatch in `splits` (index tensors), normalised per minibatch when `normalize`
    (a single sample is left as it is: it has no std)."""
    parts = [advantages[idx] for idx in splits]
    if not normalize:
        return parts
    if sync is not None:
        return sync.normalize_advantages(parts)
    return [normalize_advantages(part) if part.numel() > 1 else part for part in parts]


class ShuffledMinibatches:
    """A fresh random split per epoch, drawn from `generator` (checkpointed by the trainer), of
    samples, or of whole episodes when the batch has episode ids."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def __call__(self, batch: Batch, num_minibatches: int) -> list[torch.Tensor]:
        if batch.episode is None:
            order = torch.randperm(len(batch), generator=self.generator)
            # tensor_split covers every sample even when the batch does not divide evenly.
            return list(torch.tensor_split(order, num_minibatches))
        episode_ids, episode_of_sample = torch.unique(batch.episode, return_inverse=True)
        episode_order = torch.randperm(len(episode_ids), generator=self.generator)
        minibatch_of_episode = torch.empty_like(episode_order)
        for number, chunk in enumerate(torch.tensor_split(episode_order, num_minibatches)):
            minibatch_of_episode[chunk] = number
        minibatch_of_sample = minibatch_of_episode[episode_of_sample]
        minibatches = [torch.nonzero(minibatch_of_sample == n).squeeze(1) for n in range(num_minibatches)]
        return [idx for idx in minibatches if len(idx)]


def uses_closed_form_gradients(
    agent: ActorCritic, batch: Batch, extra_loss: Callable[[], torch.Tensor] | None
) -> bool:
    """Whether a step differentiates its loss by hand down to the network's outputs
    (agents/core/loss_gradients.py) and the network backpropagates from there
    (ActorCritic.outputs_for_update): when the action distribution
    has a closed form (all of ours do), the network's evaluate_actions is the standard one (the
    transformer scores whole sequences its own way), and there is no reference-policy KL and no
    extra loss term. Anything else differentiates ppo_loss with autograd."""
    return (
        agent.distribution.closed_form
        and type(agent).evaluate_actions is ActorCritic.evaluate_actions
        and batch.ref_logp is None
        and extra_loss is None
    )


def minibatch_objective(
    agent: ActorCritic,
    batch: Batch,
    idx: torch.Tensor | slice,
    advantages: torch.Tensor,
    closed_form: bool,
    loss_coefs: dict,
    ref_kl_coef: float,
    extra_loss: Callable[[], torch.Tensor] | None,
) -> tuple[LossTerms, Callable[[], None], float | None]:
    """One step's loss for the samples `idx`: (the loss terms, a function that adds ∂L/∂θ into
    every parameter's .grad, the extra loss's value). In closed form that function hands ∂L/∂head
    and ∂L/∂V to the network's backprop (ActorCritic.outputs_for_update) and adds the
    distribution's own parameters' gradients itself; otherwise it runs autograd from the loss."""
    masks = batch.action_masks[idx] if batch.action_masks is not None else None
    if closed_form:
        head, new_values, backprop = agent.outputs_for_update(batch.obs[idx])
        scores = agent.distribution.scores(head, batch.actions[idx], masks)
        terms, d_logp, d_entropy, d_values = ppo_loss_gradients(
            scores.logp, batch.logp[idx], advantages, new_values, batch.values[idx],
            batch.returns[idx], scores.entropy, **loss_coefs,
        )
        # The distribution's own parameters (a Gaussian's log σ), unless frozen.
        own = [(p, g) for p, g in scores.parameter_gradients(d_logp, d_entropy) if p.requires_grad]
        head_gradient = scores.head_gradient(d_logp, d_entropy)

        def backward() -> None:
            backprop(head_gradient, d_values)
            for parameter, gradient in own:
                accumulate_gradient(parameter, gradient)

        return terms, backward, None
    new_logp, entropy, new_values = agent.evaluate_actions(batch.obs[idx], batch.actions[idx], masks)
    terms = ppo_loss(
        new_logp, batch.logp[idx], advantages, new_values, batch.values[idx], batch.returns[idx], entropy,
        **loss_coefs, ref_logp=batch.ref_logp[idx] if batch.ref_logp is not None else None,
        ref_kl_coef=ref_kl_coef,
    )
    extra = extra_loss() if extra_loss is not None else None
    loss = terms.loss if extra is None else terms.loss + extra
    return terms, loss.backward, None if extra is None else extra.item()


def ppo_update(
    agent: ActorCritic,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    config: PPOConfig,
    clip_coef: float,
    kl_coef: float | None,
    minibatches: MinibatchSampler,
    ref_kl_coef: float = 0.0,
    extra_loss: Callable[[], torch.Tensor] | None = None,
    sync: GradientSync | None = None,
) -> dict[str, float]:
    """`config.update_epochs` passes over `batch`, one Adam step per minibatch of `minibatches`.

    Each step minimises ppo_loss (agents/core/loss.py) with advantages normalised per minibatch,
    then clips the global gradient norm (raising NonFiniteGradient before any weight moves if a
    gradient is NaN or ±inf); with `target_kl`, the epochs stop early once the
    approximate KL passes it. `kl_coef`: β of the KL-penalty loss (None: clipped surrogate);
    `ref_kl_coef`: weight of the KL-to-reference term, when the batch has ref_logp.
    `extra_loss`, if given, is called once per minibatch and its value added to that minibatch's
    loss before the backward pass (PPO-ptx: agents/rlhf/ptx.py); its mean is returned as
    "extra_loss". Returns the mean of each logged quantity over the minibatches, and
    "approx_kl_last_epoch": the mean approximate KL over the last epoch's minibatches only, which
    is what Stable-Baselines3 logs as train/approx_kl. In training the KL grows over the epochs
    from 0 at the first minibatch, so the all-epoch mean "approx_kl" is typically the smaller
    number (about half on Pong).
    `sync` (data-parallel training): advantages normalised over the whole minibatch of all ranks,
    gradients averaged over the ranks before the norm is clipped, the target-KL decision and the
    returned metrics taken on the ranks' mean.
    """
    # Listed once: walking the module tree at every step costs as much as a small layer.
    named_parameters = [(name, p) for name, p in agent.named_parameters() if p.requires_grad]
    parameters = [p for _, p in named_parameters]
    optimized = [p for group in optimizer.param_groups for p in group["params"]]
    sums: dict[str, float] = {}
    count = 0
    stop = False
    closed_form = uses_closed_form_gradients(agent, batch, extra_loss)
    loss_coefs = dict(clip_coef=clip_coef, vf_coef=config.vf_coef, ent_coef=config.ent_coef,
                      clip_value_loss=config.clip_value_loss, kl_coef=kl_coef)
    # With one minibatch per epoch every epoch takes the whole batch, and with it the same mean
    # and std: normalised once per update (under torchrun, one collective instead of one per epoch).
    whole_batch = (
        minibatch_advantages(batch.advantages, [torch.arange(len(batch))], config.norm_adv, sync)[0]
        if config.num_minibatches == 1
        else None
    )
    for _ in range(config.update_epochs):
        epoch_kls: list[float] = []
        # One minibatch per epoch: every step takes the whole batch in its stored order; a shuffle
        # would change only the float rounding of the sums, and its gathers cost 40 µs of a 1 ms
        # CartPole step. (The sampler's generator then draws nothing.)
        splits = [slice(None)] if config.num_minibatches == 1 else minibatches(batch, config.num_minibatches)
        if whole_batch is not None:
            advantages_of = [whole_batch[idx] for idx in splits]
        else:
            advantages_of = minibatch_advantages(batch.advantages, splits, config.norm_adv, sync)
        for idx, advantages in zip(splits, advantages_of):
            terms, backward, extra = minibatch_objective(
                agent, batch, idx, advantages, closed_form, loss_coefs, ref_kl_coef, extra_loss
            )
            if extra is not None:
                sums["extra_loss"] = sums.get("extra_loss", 0.0) + extra
            clear_gradients(optimized)
            backpropagate(backward, sync, parameters)
            clip_gradients(named_parameters, config.max_grad_norm)
            optimizer.step()

            for name in LOGGED_TERMS:
                sums[name] = sums.get(name, 0.0) + getattr(terms, name).item()
            epoch_kls.append(terms.approx_kl.item())
            count += 1
            kl = float(terms.approx_kl)
            if sync is not None and config.target_kl is not None:
                kl = sync.mean({"kl": kl})["kl"]  # every rank stops at the same step
            if config.target_kl is not None and kl > config.target_kl:
                stop = True
                break
        if stop:
            break
    metrics = {name: total / count for name, total in sums.items()}
    metrics["approx_kl_last_epoch"] = sum(epoch_kls) / len(epoch_kls)
    metrics["explained_variance"] = explained_variance(batch.values, batch.returns)
    metrics["epochs_run"] = float(count) / config.num_minibatches
    return sync.mean(metrics) if sync is not None else metrics
