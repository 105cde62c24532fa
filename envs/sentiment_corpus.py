"""An offline corpus of short review-like sentences for the RLHF pipeline, and its grammar.

Generation reuses `SentimentTask.demonstration`: a sentence start from the task's prompts
("the movie was", "i", "it was the") and a completion whose adjective / noun / verb slots draw
positive, negative or neutral words of the VADER lexicon uniformly, so the corpus has mixed
sentiment. This module adds what the pipeline needs around it:

- `build_corpus`: distinct sentences, deterministic from a seed, split into train and held-out
  parts by sentence (a held-out sentence never appears in train);
- `grammar_accepts`: an acceptor for the same grammar, written as slot templates, used for the
  fluency metric (share of policy samples the grammar accepts). It is an independent description
  of the sentence shapes of `SentimentTask._completion`; tests check that it accepts every
  generated sentence, which pins the two together;
- `CorpusTask`: the task with `demonstration` drawing from a fixed list of sentences, so
  `agents.rlhf.sft.sft_train` / `demonstration_batch` train on the corpus unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

# The grammar's closed word lists live in token_tasks (private there); imported, not copied.
from envs.token_tasks import _BOOSTERS, _PUNCTUATION, EOS_ID, PAD_ID, PROMPT_KINDS, SentimentTask

# One template slot: the token ids allowed there, and whether the slot may be skipped.
Slot = tuple[frozenset[int], bool]


@dataclass(frozen=True)
class SentimentCorpus:
    """Token-id sentences (prompt + completion + EOS) and the prompts kept for evaluation."""

    train: list[list[int]]
    held_out: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        return {"train": self.train, "held_out": self.held_out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SentimentCorpus":
        return cls([list(map(int, s)) for s in data["train"]], [list(map(int, s)) for s in data["held_out"]])


def build_corpus(
    task: SentimentTask,
    size: int,
    held_out_fraction: float = 0.1,
    seed: int = 0,
    max_draws_per_sentence: int = 20,
) -> SentimentCorpus:
    """`size` distinct demonstration sentences from `seed`, shuffled, the last
    round(held_out_fraction · size) of them held out. Same (size, fraction, seed) → same corpus."""
    if size < 2 or not 0 < held_out_fraction < 1:
        raise ValueError(f"need size >= 2 and 0 < held_out_fraction < 1, got {size}, {held_out_fraction}")
    rng = np.random.default_rng(seed)
    seen: dict[tuple[int, ...], None] = {}  # insertion-ordered set: keeps the draw order deterministic
    for _ in range(size * max_draws_per_sentence):
        seen.setdefault(tuple(task.demonstration(rng)), None)
        if len(seen) == size:
            break
    else:
        raise ValueError(
            f"the grammar gave only {len(seen)} distinct sentences in {size * max_draws_per_sentence} draws"
        )
    sentences = [list(s) for s in seen]
    order = rng.permutation(len(sentences))
    sentences = [sentences[i] for i in order]
    n_held_out = max(1, round(held_out_fraction * size))
    return SentimentCorpus(train=sentences[:-n_held_out], held_out=sentences[-n_held_out:])


class SentimentGrammar:
    """The sentence shapes of the sentiment demonstrations as slot templates, per prompt kind.

    Completions (AP = optional booster + adjective; a final "." or "!" is optional everywhere):
      copula prompt ("the movie was"):  AP | AP (and|but) AP | AP , but the NEUTRAL_NOUN was ADJ
      subject prompt ("i"):             VERB the NOUN | VERB the ADJ NOUN | VERB the NOUN but VERB the NOUN
      article prompt ("it was the"):    (SUPERLATIVE | ADJ) NOUN
    A sentence is accepted iff it is one of the task's prompts followed by a completion of that
    prompt's kind, optionally ended by EOS (then only PAD).
    """

    def __init__(self, task: SentimentTask) -> None:
        self.task = task

        def ids(words: Sequence[str]) -> frozenset[int]:
            return frozenset(task.encode(" ".join(words)))

        def all_words(classes: dict[str, list[str]]) -> list[str]:
            return [w for words in classes.values() for w in words]

        adjective = (ids(all_words(task.adjectives)), False)
        booster = (ids(_BOOSTERS), True)
        noun = (ids(all_words(task.nouns)), False)
        verb = (ids(all_words(task.verbs)), False)

        def word(*words: str) -> Slot:
            return (ids(words), False)

        self.templates: dict[str, list[list[Slot]]] = {
            "copula": [
                [booster, adjective],
                [booster, adjective, word("and", "but"), booster, adjective],
                [booster, adjective, word(","), word("but"), word("the"), (ids(task.nouns["neutral"]), False),
                 word("was"), adjective],
            ],
            "subject": [
                [verb, word("the"), noun],
                [verb, word("the"), adjective, noun],
                [verb, word("the"), noun, word("but"), verb, word("the"), noun],
            ],
            "article": [[(ids(task.superlatives) | adjective[0], False), noun]],
        }
        self.punctuation: Slot = (ids(_PUNCTUATION), True)
        self.prompts: list[tuple[list[int], str]] = [
            (list(prompt), kind) for kind in PROMPT_KINDS for prompt in task.prompts_by_kind[kind]
        ]

    @staticmethod
    def _matches(slots: Sequence[Slot], tokens: Sequence[int]) -> bool:
        """Does `tokens` fill `slots` exactly? Backtracking over optional slots (templates are short)."""
        if not slots:
            return not tokens
        allowed, optional = slots[0]
        if tokens and tokens[0] in allowed and SentimentGrammar._matches(slots[1:], tokens[1:]):
            return True
        return optional and SentimentGrammar._matches(slots[1:], tokens)

    def completion_accepts(self, kind: str, completion: Sequence[int]) -> bool:
        """Is `completion` (no EOS) a grammatical continuation of a prompt of `kind`?"""
        return any(self._matches([*t, self.punctuation], list(completion)) for t in self.templates[kind])

    def accepts(self, tokens: Sequence[int]) -> bool:
        """Is `tokens` (prompt + completion, optional EOS, optional PAD after it) a grammatical sentence?"""
        tokens = [int(t) for t in tokens]
        while tokens and tokens[-1] == PAD_ID:
            tokens.pop()
        if tokens and tokens[-1] == EOS_ID:
            tokens.pop()
        if PAD_ID in tokens or EOS_ID in tokens:
            return False
        return any(
            tokens[: len(prompt)] == prompt and self.completion_accepts(kind, tokens[len(prompt):])
            for prompt, kind in self.prompts
        )


_default_grammar: SentimentGrammar | None = None


def grammar_accepts(tokens: Sequence[int], grammar: SentimentGrammar | None = None) -> bool:
    """`SentimentGrammar.accepts` with one grammar per process for the default `SentimentTask`."""
    global _default_grammar
    if grammar is None:
        if _default_grammar is None:
            _default_grammar = SentimentGrammar(SentimentTask())
        grammar = _default_grammar
    return grammar.accepts(tokens)


class CorpusTask:
    """`task` whose demonstrations are drawn uniformly from fixed `sentences` (everything else
    delegates to `task`), so that SFT and the ptx term train on the corpus through
    `agents.rlhf.sft.demonstration_batch` unchanged."""

    def __init__(self, task: SentimentTask, sentences: Sequence[Sequence[int]]) -> None:
        if not sentences:
            raise ValueError("CorpusTask needs at least one sentence")
        self.task = task
        self.sentences = [list(map(int, s)) for s in sentences]
        self.max_demonstration_len = max(task.max_demonstration_len, max(len(s) for s in self.sentences))

    def demonstration(self, rng: np.random.Generator) -> list[int]:
        return list(self.sentences[int(rng.integers(len(self.sentences)))])

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found above: vocab, pad_id, prompt_length, score, ...
        if name == "task":  # not set yet (copy / unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.task, name)


def split_prompts(
    task: SentimentTask, eval_fraction: float = 0.2, seed: int = 0
) -> tuple[list[list[int]], list[list[int]]]:
    """(train prompts, evaluation prompts): from each prompt kind, round(eval_fraction · n) but at
    least one prompt is held out, so evaluation covers every sentence shape; seeded."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    rng = np.random.default_rng(seed)
    grammar = SentimentGrammar(task)
    train: list[list[int]] = []
    held_out: list[list[int]] = []
    for kind in PROMPT_KINDS:
        prompts = [p for p, k in grammar.prompts if k == kind]
        order = rng.permutation(len(prompts))
        n_eval = min(len(prompts) - 1, max(1, round(eval_fraction * len(prompts))))
        held_out += [prompts[i] for i in order[:n_eval]]
        train += [prompts[i] for i in order[n_eval:]]
    return train, held_out
