"""Command-line plumbing shared by the entry scripts (train.py, enjoy.py, plot.py)."""

from __future__ import annotations

import argparse


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line like every other bad input of the toolkit:
    one `error:` line on stderr and exit status 2 (no usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}\n")


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def seed_int(text: str) -> int:
    """argparse type: an integer >= 0 (gymnasium refuses negative seeds)."""
    return _int_at_least(text, 0, "a seed (integer >= 0)")


def add_override_option(parser: argparse.ArgumentParser, applies_to: str) -> None:
    """`--set KEY=VALUE` (repeatable): a config override, as train.py's dotted.key=value."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"config override applied to {applies_to}, e.g. --set precision=fp32 (repeatable)",
    )
