"""The whole RLHF pipeline offline, as resumable stages in one run dir (issue 6).

Stages, each writing its outputs and then a `done` marker into run_dir/stages/<name>/:
1. corpus        distinct grammar sentences of mixed sentiment, train / held-out split
                 (envs/sentiment_corpus.py); a seeded split of the prompts kept for evaluation.
2. sft           the transformer trained by cross-entropy on the train sentences (agents/sft.py).
3. reward_model  preference pairs: two SFT samples per prompt, the higher gold score (VADER
                 compound) preferred, optional label noise; Bradley–Terry training
                 (agents/reward_model.py); pairwise accuracy on pairs of held-out prompts.
4. ppo           PPO-ptx against the reward model: the env's reward is replaced by r_θ at the end
                 of each completion (`RewardModelEnv`), the per-token KL to the SFT policy is the
                 trainer's, the ptx term γ_ptx·LL(corpus) is added per minibatch (agents/ptx.py).
5. eval          held-out prompts, SFT vs PPO policy: gold reward, RM score, KL to SFT, fluency
                 (grammar acceptance and SFT perplexity of samples), as TensorBoard scalars
                 eval/* and a printed table.

A rerun skips every stage whose `done` marker exists; a stage without one starts over from an
empty directory (its partial outputs may be from a crash), except the PPO stage, which resumes
its training run from the newest good checkpoint.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from agents.checkpoint import CHECKPOINT_DIR if False else None  # noqa: F401  (placeholder, replaced below)
