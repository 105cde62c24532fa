# Two commands for a new user: `make train` (a first MinAtar SpaceInvaders run, ~6 min of training on
# 2 cores; CONFIG=configs/breakout.yaml for Atari Breakout, the 10M-step recipe, or any other config) and
# `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/minatar_space_invaders_first_run.yaml
ARGS ?=

.PHONY: setup train test lint clean

setup: $(STAMP)

# Reinstalls only when a requirements file changed; pins are exact (see requirements*.txt).
# The project itself goes in editable (`from agents import PPO` from any directory, and the
# rl-train / rl-enjoy / rl-plot commands); its dependencies are already there, pinned.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

train: setup
	$(BIN)/python train.py --config $(CONFIG) $(ARGS)

# The layering contracts (import-linter) and ruff first: a broken dependency rule fails fast.
# Two workers (pytest-xdist): most tests train on one torch thread, so both cores are used;
# loadgroup keeps the torchrun tests (two ranks each) on one worker, one after another.
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=12 tests

lint: setup
	$(BIN)/lint-imports
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
