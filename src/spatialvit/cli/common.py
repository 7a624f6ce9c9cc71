"""What every sub-command's parser shares: one help format (defaults shown, metavars that say what to type,
examples at the end), and the repeatable-flag shape."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


_METAVARS = {int: "N", positive_int: "N", float: "X", Path: "PATH"}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions and examples as written; every option's default shown; metavars from the option's type."""

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        return _METAVARS.get(action.type, action.dest.upper())  # type: ignore[arg-type]

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or isinstance(action.default, bool) or "(default" in text:
            return text  # flags and options without a default say so in their own words
        return super()._get_help_string(action)


def command(
    sub: argparse._SubParsersAction,
    name: str,
    text: str,
    examples: str = "",
    func: Callable[[argparse.Namespace], int] | None = None,
) -> argparse.ArgumentParser:
    """A sub-command: ``text`` is its one-line summary (the help in the parent's list), a blank line and the
    description, shown as written; its ``--help`` ends with ``examples`` (one command line per line);
    ``func(args)`` runs it."""
    summary = text.split("\n", 1)[0]
    lines = [line for line in examples.splitlines() if line.strip()]
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in lines) if lines else None
    p = sub.add_parser(name, help=summary, description=text, epilog=epilog, formatter_class=HelpFormatter)
    if func is not None:
        p.set_defaults(func=func)
    return p


def repeatable(p: argparse.ArgumentParser, flag: str, *, dest: str, metavar: str, help: str) -> None:
    """A flag given once per value, collected into the list ``dest`` (absent when never given)."""
    p.add_argument(flag, dest=dest, action="append", default=argparse.SUPPRESS, metavar=metavar, help=help)
