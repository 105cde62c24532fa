"""Command-line plumbing shared by the entry scripts (train.py, enjoy.py, plot.py)."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from agents.config import MAX_SEED


class _StoreOnce(argparse._StoreAction):
    """The `store` action, refusing a second occurrence of its option: argparse keeps the last
    value silently, so `--config a.yaml ... --config b.yaml` would train on b alone."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given = getattr(parser, "_options_given", None)
        if given is not None:  # None: called outside ArgumentParser.parse_known_args
            if self.dest in given:
                parser.error(f"argument {'/'.join(self.option_strings)}: given twice; give it once")
            given.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line like every other bad input of the toolkit:
    one `error:` line on stderr and exit status 2 (no usage block). An option that takes one value
    (argparse's default `store` action) may be given once: a repeat is refused, not overwritten.
    Flags (store_true) may repeat, which changes nothing; `append` options are meant to."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        optional = bool(args) and isinstance(args[0], str) and args[0][:1] in self.prefix_chars
        if optional and kwargs.get("action", "store") == "store":
            kwargs["action"] = _StoreOnce
        return super().add_argument(*args, **kwargs)

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._options_given: set[str] | None = set()  # dests of the _StoreOnce options seen so far
        try:
            return super().parse_known_args(args, namespace)
        finally:
            self._options_given = None

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}\n")


def _int_in_range(text: str, minimum: int, maximum: int | None, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_in_range(text, 1, None, "a positive integer")


def seed_int(text: str) -> int:
    """argparse type: a seed in 0..MAX_SEED (gymnasium refuses negative seeds, numpy larger ones)."""
    return _int_in_range(text, 0, MAX_SEED, f"a seed in 0..{MAX_SEED}")


def add_override_option(parser: argparse.ArgumentParser, applies_to: str) -> None:
    """`--set KEY=VALUE` (repeatable): a config override, as train.py's dotted.key=value."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"config override applied to {applies_to}, e.g. --set precision=fp32 (repeatable)",
    )
