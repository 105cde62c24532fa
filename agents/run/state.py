"""TrainState: exactly what a checkpoint holds besides the networks and the optimizer.

Where the run is (update, env steps), the two βs, every random generator training draws from,
the episode window behind rollout/ep_rew_mean and the latest texts. The trainer captures one after
every completed update (what a checkpoint written between two updates must hold: a rollout in
progress has already advanced the generators) and applies one when it resumes.

On disk its fields keep the keys checkpoints had before this class existed ("kl_coef" for the
reference β, "penalty_kl_coef", a "resume" section), so run dirs of earlier versions resume.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class TrainState:
    update: int = 0  # updates completed
    global_step: int = 0  # env steps (tokens, for token envs) over all envs
    ref_kl_coef: float = 0.0  # β of the KL to the reference policy (RLHF), adapted or fixed
    kl_penalty_coef: float | None = None  # β of the KL-penalty PPO loss; None with the clipped loss
    rng: dict = field(default_factory=dict)  # every generator, as capture_rng returns them
    episodes: dict = field(default_factory=dict)  # TrainingLogger.state_dict(): the episode window
    texts: list[str] = field(default_factory=list)  # latest completions (token envs)
    normalization: dict | None = None  # NormalizeVectorEnv.state_dict() (env.normalize_obs / _reward)

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "update": self.update,
            "global_step": self.global_step,
            "kl_coef": self.ref_kl_coef,
            "penalty_kl_coef": self.kl_penalty_coef,
            "resume": {"rng": self.rng, "logger": self.episodes, "texts": list(self.texts)},
            "normalization": self.normalization,
        }

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "TrainState":
        """Raises KeyError, TypeError or ValueError on a malformed state."""
        resume = state["resume"]
        episodes = resume["logger"]
        penalty = state.get("penalty_kl_coef")
        return cls(
            update=int(state["update"]),
            global_step=int(state["global_step"]),
            ref_kl_coef=float(state.get("kl_coef") or 0.0),
            kl_penalty_coef=float(penalty) if penalty is not None else None,
            rng=dict(resume["rng"]),
            episodes={
                "returns": [float(r) for r in episodes["returns"]],
                "lengths": [int(n) for n in episodes["lengths"]],
                "episodes": int(episodes["episodes"]),
            },
            texts=[str(text) for text in resume.get("texts", [])],
            normalization=state.get("normalization"),
        )



def capture_rng(minibatch: torch.Generator, prompts: np.random.Generator, device: torch.device) -> dict:
    """Every generator training draws from, as data torch.load(weights_only=True) accepts
    (tensors, lists, ints, floats, strings: no pickled numpy or Python objects)."""
    version, mt_state, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(mt_state), "gauss_next": gauss_next},
        "numpy": {
            "name": name,
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "minibatch": minibatch.get_state(),
        # PCG64: {"bit_generator": "PCG64", "state": {"state": int, "inc": int}, "has_uint32": int, ...}
        "prompts": prompts.bit_generator.state,
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, minibatch: torch.Generator, prompts: np.random.Generator) -> None:
    python, numpy_state = state["python"], state["numpy"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    np.random.set_state(
        (
            numpy_state["name"],
            np.asarray(numpy_state["keys"], dtype=np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    minibatch.set_state(state["minibatch"])
    prompts.bit_generator.state = state["prompts"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
