"""TokenGenerationEnv and its tasks: API checkers, reward placement, scores, truncation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs.token_generation  # noqa: F401  (registers the TokenGen/* ids)
from envs.token_generation import TokenGenerationEnv
from envs.token_tasks import EOS_ID, PAD_ID, DigitSortTask, SentimentTask, vader_analyzer, vader_lexicon

ENV_IDS = ["TokenGen/DigitSort-v0", "TokenGen/Sentiment-v0"]


@pytest.fixture
def one_torch_thread():
    # The machines are shared: two threads fighting other processes make small nets ~30× slower.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def digits(task: DigitSortTask, text: str) -> list[int]:
    return task.encode(" ".join(text))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_and_sb3_checkers_pass(env_id: str) -> None:
    env = gym.make(env_id)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_observation_layout_and_seeded_reset(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.int64 and obs.shape == (env.max_len,)
    assert isinstance(env.observation_space, gym.spaces.MultiDiscrete)
    n = info["prompt_len"]
    assert (obs[:n] != PAD_ID).all() and (obs[n:] == PAD_ID).all()
    assert np.array_equal(env.reset(seed=3)[0], obs)
    obs2, _, _, _, _ = env.step(7)
    assert obs2[n] == 7 and (obs2[n + 1 :] == PAD_ID).all()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reward_only_on_last_step_and_equals_task_score(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    rng = np.random.default_rng(0)
    for episode in range(20):
        obs, info = env.reset(seed=episode)
        prompt = obs[: info["prompt_len"]].tolist()
        completion, rewards, done = [], [], False
        while not done:
            # Favour non-EOS tokens so that both endings (EOS, truncation) occur.
            action = EOS_ID if rng.random() < 0.15 else int(rng.integers(2, env.vocab_size))
            obs, reward, terminated, truncated, info = env.step(action)
            rewards.append(reward)
            done = terminated or truncated
            if action != EOS_ID:
                completion.append(action)
        assert all(r == 0.0 for r in rewards[:-1])
        assert rewards[-1] == pytest.approx(env.task.score(prompt, completion))
        assert info["completion"] == completion and info["text"] == env.task.decode(completion)


@pytest.mark.parametrize(
    ("prompt", "completion", "expected"),
    [
        ("312", "123", 1.0),
        ("312", "132", 1 / 3),
        ("312", "12", 2 / 3),  # positions the completion does not reach are wrong
        ("312", "1233", 1.0),  # tokens after the k-th add nothing
        ("312", "", 0.0),
        ("312", "321", 1 / 3),
        ("5055", "0555", 1.0),
    ],
)
def test_digit_sort_score_hand_cases(prompt: str, completion: str, expected: float) -> None:
    task = DigitSortTask(k=len(prompt))
    prompt_ids = [*digits(task, prompt), task.sep_id]
    assert task.score(prompt_ids, digits(task, completion)) == pytest.approx(expected)
    # The same through the env: the completion excludes the EOS that ends it.
    env = TokenGenerationEnv(task, max_new_tokens=len(prompt) + 2)
    env.reset(options={"prompt": prompt_ids})
    rewards = [env.step(t)[1] for t in digits(task, completion)]
    _, reward, terminated, truncated, info = env.step(EOS_ID)
    assert terminated and not truncated and not any(rewards)
    assert reward == pytest.approx(expected) and info["text"] == " ".join(completion)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_render_modes(env_id: str) -> None:
    env = gym.make(env_id, render_mode="ansi").unwrapped
    obs, _ = env.reset(seed=0)
    assert env.render() == env.task.decode(obs.tolist())
    env = gym.make(env_id, render_mode="rgb_array").unwrapped
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (env.CELL, env.CELL * env.max_len, 3)


def test_digit_sort_registered_kwargs_and_defaults() -> None:
    env = gym.make("TokenGen/DigitSort-v0").unwrapped
    assert env.task.k == 5 and env.max_new_tokens == 6 and env.max_len == 12
    env = gym.make("TokenGen/DigitSort-v0", k=3, no_eos_penalty=-0.5).unwrapped
    assert env.task.k == 3 and env.max_new_tokens == 4 and env.no_eos_penalty == -0.5
    obs, _ = env.reset(seed=0)
    assert obs[3] == env.task.sep_id and (obs[4:] == PAD_ID).all()


def test_truncation_at_max_new_tokens_with_penalty() -> None:
    task = DigitSortTask(k=3)
    env = TokenGenerationEnv(task, max_new_tokens=4, no_eos_penalty=-0.25)
    prompt = [*digits(task, "312"), task.sep_id]
    env.reset(options={"prompt": prompt})
    for t in digits(task, "123"):
        _, reward, terminated, truncated, _ = env.step(t)
        assert reward == 0.0 and not terminated and not truncated
    obs, reward, terminated, truncated, info = env.step(digits(task, "9")[0])  # 4th token, no EOS
    assert truncated and not terminated
    assert info["score"] == 1.0 and reward == pytest.approx(1.0 - 0.25)
    assert (obs != PAD_ID).sum() == env.max_len
    with pytest.raises(RuntimeError):
        env.step(EOS_ID)
    # EOS as the very last allowed token is a termination: no penalty.
    env.reset(options={"prompt": prompt})
    for t in digits(task, "123"):
        env.step(t)
    _, reward, terminated, truncated, _ = env.step(EOS_ID)
    assert terminated and not truncated and reward == 1.0


def test_pad_action_ends_the_text_like_eos() -> None:
    env = gym.make("TokenGen/DigitSort-v0", k=2).unwrapped
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(PAD_ID)
    assert terminated and not truncated and info["completion"] == []
    prompt_len = 3  # k digits and the separator
    assert obs[prompt_len] == EOS_ID and (obs[prompt_len + 1 :] == PAD_ID).all()


def test_digit_sort_demonstration_is_prompt_random_digits_eos() -> None:
    task = DigitSortTask(k=4)
    rng = np.random.default_rng(0)
    demos = [task.demonstration(rng) for _ in range(200)]
    for demo in demos:
        assert len(demo) == task.max_demonstration_len and demo[-1] == EOS_ID
        assert task.prompt_length(demo) == 5 and demo[4] == task.sep_id
        assert set(demo[5:9]) <= set(task.digit_ids.tolist())
    # Random, not sorted: the warm start must not teach the task itself.
    mean_score = np.mean([task.score(d[:5], d[5:9]) for d in demos])
    assert mean_score < 0.35


def test_sentiment_vocabulary_comes_from_the_vader_lexicon() -> None:
    task = SentimentTask()
    lexicon = vader_lexicon()
    assert 200 <= len(task.vocab) <= 500 and task.vocab[:2] == ["<pad>", "<eos>"]
    for classes in (task.adjectives, task.nouns, task.verbs):
        assert classes["positive"] and classes["negative"] and classes["neutral"]
        assert all(lexicon[w] >= 1.0 for w in classes["positive"])
        assert all(lexicon[w] <= -1.0 for w in classes["negative"])
        assert all(w not in lexicon for w in classes["neutral"])
    # Prompts are neutral, so the reward is all the completion's doing.
    assert all(task.score(p, []) == 0.0 for p in task.prompts)


def test_sentiment_score_is_vader_compound_of_the_sentence() -> None:
    task = SentimentTask()
    prompt = task.encode("the movie was")
    for completion, sign in [("very good !", 1), ("awful and boring .", -1), ("not good", -1), ("long", 0)]:
        ids = task.encode(completion)
        expected = vader_analyzer().polarity_scores(f"the movie was {completion}")["compound"]
        assert task.score(prompt, ids) == pytest.approx(expected)
        assert np.sign(round(expected, 6)) == sign
    assert vader_analyzer() is vader_analyzer()  # one analyzer per process


def test_sentiment_demonstrations_are_mixed_and_fit_the_env() -> None:
    task = SentimentTask()
    env = gym.make("TokenGen/Sentiment-v0").unwrapped
    rng = np.random.default_rng(1)
    scores = []
    for _ in range(300):
        demo = task.demonstration(rng)
        n = task.prompt_length(demo)
        assert demo[-1] == EOS_ID and PAD_ID not in demo and EOS_ID not in demo[:-1]
        assert len(demo) - n <= env.max_new_tokens and len(demo) <= env.max_len
        assert task.encode(task.decode(demo)) == demo[:-1]
        scores.append(task.score(demo[:n], demo[n:-1]))
    scores = np.array(scores)
    assert (scores > 0.3).mean() > 0.2 and (scores < -0.3).mean() > 0.2


def test_sb3_ppo_runs_on_digit_sort_unchanged(one_torch_thread: None, tmp_path) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure

    model = PPO(
        "MlpPolicy", "TokenGen/DigitSort-v0", n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu"
    )
    model.set_logger(configure(str(tmp_path), ["csv"]))  # else SB3 leaves a log dir in /tmp
    model.learn(total_timesteps=256)
    env = gym.make("TokenGen/DigitSort-v0")
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))
