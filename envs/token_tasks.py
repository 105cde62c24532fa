"""Tasks for the token-generation environment: a vocabulary, a prompt sampler and a scorer.

A task is the "game" behind `envs.token_generation.TokenGenerationEnv`: it owns a word-level
tokenizer, samples prompts, scores completions (the only reward of an episode) and provides
demonstrations for a supervised warm start (`agents/rlhf/sft.py`).

Token ids shared by every task: PAD = 0 (right padding of observations; never inside a sequence)
and EOS = 1 (the agent emits it to end its completion).
"""

from __future__ import annotations

import functools
import os
from typing import Protocol, Sequence

import numpy as np

PAD_ID = 0
EOS_ID = 1
PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"


class WordTokenizer:
    """A fixed word-level vocabulary: one token per whitespace-separated word.

    Ids 0 and 1 are PAD and EOS; `decode` drops both, so a decoded text holds only real words.
    """

    def __init__(self, words: Sequence[str], separator: str = " ") -> None:
        vocab = [PAD_TOKEN, EOS_TOKEN, *words]
        if len(set(vocab)) != len(vocab):
            duplicates = sorted({w for w in vocab if vocab.count(w) > 1})
            raise ValueError(f"duplicate tokens in vocabulary: {duplicates}")
        self.vocab: list[str] = vocab
        self.separator = separator
        self._ids = {word: i for i, word in enumerate(vocab)}

    def encode(self, text: str) -> list[int]:
        """Ids of the whitespace-separated words of `text`; unknown words raise KeyError."""
        try:
            return [self._ids[word] for word in text.split()]
        except KeyError as exc:
            raise KeyError(f"word {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Sequence[int]) -> str:
        return self.separator.join(self.vocab[int(i)] for i in ids if int(i) not in (PAD_ID, EOS_ID))


class TokenTask(Protocol):
    """What `TokenGenerationEnv` and `sft_train` need from a task."""

    vocab: list[str]
    pad_id: int
    eos_id: int
    max_prompt_len: int  # longest prompt `sample_prompt` can return
    max_demonstration_len: int  # longest sequence `demonstration` can return (EOS included)

    def sample_prompt(self, rng: np.random.Generator) -> list[int]: ...

    def score(self, prompt: Sequence[int], completion: Sequence[int]) -> float: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def demonstration(self, rng: np.random.Generator) -> list[int]: ...

    def prompt_length(self, sequence: Sequence[int]) -> int: ...


class _TaskBase:
    """Shared plumbing: vocabulary attributes delegated to a `WordTokenizer`."""

    pad_id = PAD_ID
    eos_id = EOS_ID

    def __init__(self, tokenizer: WordTokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab = tokenizer.vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)


# --------------------------------------------------------------------------------------------
# DigitSort: a rule-scored task with a known optimum (score 1.0), for testing the RL loop.
# --------------------------------------------------------------------------------------------


class DigitSortTask(_TaskBase):
    """Prompt: k random digits then a separator "|"; the completion should be the digits sorted.

    score = (1/k) · Σ_{i<k} [i < len(c) and c_i = sorted(prompt digits)_i]: positions the
    completion does not reach count as wrong, tokens after the k-th add nothing.
    """

    SEPARATOR = "|"

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        super().__init__(WordTokenizer([self.SEPARATOR, *"0123456789"]))
        self.k = k
        self.sep_id = self.tokenizer.encode(self.SEPARATOR)[0]
        self.digit_ids = np.array(self.tokenizer.encode(" ".join("0123456789")))
        self.max_prompt_len = k + 1
        self.max_demonstration_len = 2 * k + 2

    def sample_prompt(self, rng: np.random.Generator) -> list[int]:
        digits = rng.integers(0, 10, size=self.k)
        return [*self.digit_ids[digits].tolist(), self.sep_id]

    def target(self, prompt: Sequence[int]) -> list[int]:
        """The sorted digits of a prompt: the completion that scores 1.0 (then EOS)."""
        # Digit ids are increasing in the digit value, so sorting ids sorts digits.
        return sorted(int(t) for t in prompt if int(t) != self.sep_id)

    def score(self, prompt: Sequence[int], completion: Sequence[int]) -> float:
        target = self.target(prompt)
        hits = sum(int(c) == t for c, t in zip(completion, target))
        return hits / len(target)

    def demonstration(self, rng: np.random.Generator) -> list[int]:
        """Prompt, k RANDOM digits, EOS: teaches the format (k digits then stop), not sorting."""
        prompt = self.sample_prompt(rng)
        completion = self.digit_ids[rng.integers(0, 10, size=self.k)].tolist()
        return [*prompt, *completion, self.eos_id]

    def prompt_length(self, sequence: Sequence[int]) -> int:
        return [int(t) for t in sequence].index(self.sep_id) + 1


# --------------------------------------------------------------------------------------------
# Sentiment: generate the end of a sentence; the reward is VADER's compound score.
# --------------------------------------------------------------------------------------------

# The VADER lexicon has no part-of-speech tags, so the candidate words are listed here by part of
# speech; whether a word is kept, and as positive, negative or neutral, is read from the lexicon
# file (see `_classify`). Past-tense verbs fit every subject of the prompts ("i", "they", ...).
_ADJECTIVES = """
good great excellent amazing wonderful fantastic awesome brilliant beautiful lovely nice perfect
fun funny happy delightful enjoyable pleasant charming superb outstanding impressive fresh
friendly helpful clever exciting glorious gorgeous cool sweet calm interesting inspiring
magnificent marvelous splendid terrific hilarious elegant comfortable adorable satisfying smart
generous brave cheerful joyful fabulous remarkable
bad terrible awful horrible boring dull ugly sad stupid disappointing poor annoying painful weak
disgusting dreadful miserable pathetic lame rude nasty gross tragic angry unpleasant frustrating
messy dirty cruel dumb broken useless sick lonely scary bitter depressing hopeless
long short new old big small red blue quiet loud early late simple normal different green dark
large tall round usual whole local modern young busy
"""
_SUPERLATIVES = "best worst"  # only after "the"
_NOUNS = """
joy love success delight treasure masterpiece gift hope hero friend peace win smile beauty paradise
blessing pleasure comfort triumph winner party kiss laugh hug
disaster mess failure waste pain mistake problem trouble loss tragedy crime fear hate horror insult
damage war disgrace shame loser error fraud accident
movie film book food story plot ending service music day trip game show hotel room meal weather
actor acting song city car phone class teacher price place staff team night house dinner coffee
cast concert audience
"""
_VERBS = """
loved liked enjoyed adored admired appreciated praised cherished thanked celebrated treasured
respected welcomed trusted laughed smiled won
hated disliked despised regretted hurt ruined failed destroyed ignored rejected feared missed lost
wasted complained abandoned blamed cried lied broke
saw watched read visited tried bought ate finished left found started cooked heard made
remembered called opened walked
"""
# Words that carry no sentiment of their own (VADER treats some as negations or boosters).
_FUNCTION_WORDS = """
the a an this that it i we you they he she my our your their was is were are be been and but or
not so very really too quite just with of to in on at for about all some never always again also
then extremely totally incredibly absolutely slightly somewhat , . !
"""
_BOOSTERS = "very really so quite extremely totally incredibly absolutely".split()
_PUNCTUATION = [".", "!"]

# Sentence starts, grouped by what grammatically follows them (see `SentimentTask.demonstration`).
# Copula prompts are "the <noun> was" / "the <noun> is" for every neutral noun (built in
# SentimentTask), plus these few: many prompts, so that an RL policy has to learn what a positive
# continuation is, not one per prompt (held-out prompts then test that it generalised).
_COPULA_VERBS = ["was", "is"]
_EXTRA_COPULA_PROMPTS = ["this book is", "my day was", "our trip was", "this place is"]
_SUBJECT_PROMPTS = [
    "i", "we", "they", "everyone", "my family", "my parents", "the kids", "the guests", "my brother",
    "my sister", "the actor", "the teacher", "the staff", "the team", "the cast", "the audience",
]
_ARTICLE_PROMPTS = [
    f"{subject} {verb} the" for subject in ("it", "this", "that", "he", "she") for verb in _COPULA_VERBS
]
PROMPT_KINDS = ("copula", "subject", "article")

# |valence| below this is too weak to call a word positive or negative; such words are dropped.
_MIN_VALENCE = 1.0


@functools.lru_cache(maxsize=1)
def vader_lexicon() -> dict[str, float]:
    """word → mean valence (−4..4), read from the lexicon file that vaderSentiment ships."""
    import vaderSentiment

    path = os.path.join(os.path.dirname(vaderSentiment.__file__), "vader_lexicon.txt")
    lexicon: dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 2:
                lexicon[fields[0]] = float(fields[1])
    return lexicon


@functools.lru_cache(maxsize=1)
def vader_analyzer():  # -> SentimentIntensityAnalyzer (imported lazily)
    """One SentimentIntensityAnalyzer per process: building it parses the lexicon (~50 ms)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def _classify(words: str, lexicon: dict[str, float]) -> dict[str, list[str]]:
    """Split candidate words into positive / negative / neutral by their lexicon valence."""
    classes: dict[str, list[str]] = {"positive": [], "negative": [], "neutral": []}
    for word in words.split():
        valence = lexicon.get(word, 0.0)
        if valence >= _MIN_VALENCE:
            classes["positive"].append(word)
        elif valence <= -_MIN_VALENCE:
            classes["negative"].append(word)
        elif valence == 0.0:
            classes["neutral"].append(word)
    return classes


class SentimentTask(_TaskBase):
    """Finish a sentence such as "the movie was"; reward = VADER compound ∈ [−1, 1].

    Scored text: the decoded prompt + completion, i.e. the whole sentence. Why the whole sentence:
    VADER's rules look back up to three words (negation "was not good", boosters "was very
    good"), so a completion is judged in the context it continues; the prompts themselves are
    neutral (compound 0), so an empty completion scores 0.
    compound = x / sqrt(x² + 15), x = sum of the rule-adjusted valences of the words (Hutto &
    Gilbert 2014).
    """

    def __init__(self) -> None:
        lexicon = vader_lexicon()
        self.adjectives = _classify(_ADJECTIVES, lexicon)
        self.nouns = _classify(_NOUNS, lexicon)
        self.verbs = _classify(_VERBS, lexicon)
        self.superlatives = _SUPERLATIVES.split()
        words: list[str] = []
        for group in (
            _FUNCTION_WORDS.split(),
            self.superlatives,
            *self.adjectives.values(),
            *self.nouns.values(),
            *self.verbs.values(),
            # Prompt words not listed above ("family"); prompts are checked to be neutral in tests.
            " ".join(_EXTRA_COPULA_PROMPTS + _SUBJECT_PROMPTS + _ARTICLE_PROMPTS).split(),
        ):
            words += [w for w in group if w not in words]
        super().__init__(WordTokenizer(words))
        copula = [f"the {noun} {verb}" for noun in self.nouns["neutral"] for verb in _COPULA_VERBS]
        texts = {
            "copula": copula + _EXTRA_COPULA_PROMPTS,
            "subject": _SUBJECT_PROMPTS,
            "article": _ARTICLE_PROMPTS,
        }
        # prompts_by_kind[kind]: the sentence starts after which a completion of that kind follows.
        self.prompts_by_kind = {kind: [self.encode(t) for t in texts[kind]] for kind in PROMPT_KINDS}
        self.prompts = [p for kind in PROMPT_KINDS for p in self.prompts_by_kind[kind]]
        self.max_prompt_len = max(len(p) for p in self.prompts)
        self.max_completion_len = 9  # longest demonstration completion, without EOS
        self.max_demonstration_len = self.max_prompt_len + self.max_completion_len + 1

    def _sample_kind_and_prompt(self, rng: np.random.Generator) -> tuple[str, list[int]]:
        """A prompt kind uniformly, then a prompt of that kind: the three sentence shapes stay
        equally common however many prompts each kind has."""
        kind = PROMPT_KINDS[int(rng.integers(len(PROMPT_KINDS)))]
        prompts = self.prompts_by_kind[kind]
        return kind, list(prompts[int(rng.integers(len(prompts)))])

    def sample_prompt(self, rng: np.random.Generator) -> list[int]:
        return self._sample_kind_and_prompt(rng)[1]

    def score(self, prompt: Sequence[int], completion: Sequence[int]) -> float:
        return float(vader_analyzer().polarity_scores(self.decode([*prompt, *completion]))["compound"])

    def prompt_length(self, sequence: Sequence[int]) -> int:
        """Length of the longest built-in prompt that starts `sequence`."""
        sequence = [int(t) for t in sequence]
        matches = [len(p) for p in self.prompts if sequence[: len(p)] == p]
        if not matches:
            raise ValueError(f"sequence does not start with a known prompt: {self.decode(sequence)!r}")
        return max(matches)

    # Demonstrations: short grammatical sentences whose sentiment slots draw positive, negative
    # or neutral words uniformly, so the SFT policy covers both polarities (RL then picks).
    def _pick(self, rng: np.random.Generator, words: Sequence[str]) -> str:
        return words[int(rng.integers(len(words)))]

    def _pick_class(self, rng: np.random.Generator, classes: dict[str, list[str]]) -> str:
        names = [name for name, words in classes.items() if words]
        return self._pick(rng, classes[self._pick(rng, names)])

    def _adjective_phrase(self, rng: np.random.Generator) -> list[str]:
        booster = [self._pick(rng, _BOOSTERS)] if rng.random() < 0.3 else []
        return [*booster, self._pick_class(rng, self.adjectives)]

    def _completion(self, kind: str, rng: np.random.Generator) -> list[str]:
        shape = int(rng.integers(3))
        if kind == "copula":  # "the movie was" + ...
            words = self._adjective_phrase(rng)  # "very good"
            if shape == 1:  # "very good but dull"
                words += [self._pick(rng, ["and", "but"]), *self._adjective_phrase(rng)]
            elif shape == 2:  # "good , but the ending was awful"
                words += [",", "but", "the", self._pick(rng, self.nouns["neutral"]), "was"]
                words.append(self._pick_class(rng, self.adjectives))
        elif kind == "subject":  # "i" + ...
            noun = self._pick_class(rng, self.nouns)
            words = [self._pick_class(rng, self.verbs), "the"]
            if shape == 1:  # "loved the cheerful music"
                words.append(self._pick_class(rng, self.adjectives))
            words.append(noun)
            if shape == 2:  # "loved the food but hated the service"
                words += ["but", self._pick_class(rng, self.verbs), "the", self._pick_class(rng, self.nouns)]
        else:  # "it was the" + ...
            first = (
                self._pick(rng, self.superlatives) if shape == 0 else self._pick_class(rng, self.adjectives)
            )
            words = [first, self._pick_class(rng, self.nouns)]
        if rng.random() < 0.7:
            words.append(self._pick(rng, _PUNCTUATION))
        return words

    def demonstration(self, rng: np.random.Generator) -> list[int]:
        kind, prompt = self._sample_kind_and_prompt(rng)
        completion = self.encode(" ".join(self._completion(kind, rng)))
        assert len(completion) <= self.max_completion_len
        return [*prompt, *completion, self.eos_id]
