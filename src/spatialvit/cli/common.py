"""What every sub-command's parser shares: one help format (defaults shown, metavars that say what to type,
examples at the end), and the repeatable-flag shape."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from pathlib import Path

from ..config import AUTO


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


_METAVARS = {int: "N", positive_int: "N", float: "X", Path: "PATH"}
# What to type for a text option, by its key (a config key's flag has the generic metavar TEXT).
KEY_METAVARS = {"data": "SPEC", "device": "DEV", "model": "NAME", "out": "DIR", "config": "FILE"}
GENERIC = "TEXT"


def _key(action: argparse.Action) -> str:
    return action.dest.rsplit(".", 1)[-1]  # "train.device" -> "device"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions and examples as written; every option's default shown once; metavars that say what to type
    (from the option's type, else its key: SPEC, DIR, DEV, NAME, FILE)."""

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        return _METAVARS.get(action.type, KEY_METAVARS.get(_key(action), GENERIC))  # type: ignore[arg-type]

    def _metavar_formatter(self, action: argparse.Action, default_metavar: str):  # type: ignore[no-untyped-def]
        if action.metavar == GENERIC and _key(action) in KEY_METAVARS:
            action = copy.copy(action)
            action.metavar = KEY_METAVARS[_key(action)]
        return super()._metavar_formatter(action, default_metavar)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        head, generated, _ = text.rpartition(" (default: ")
        if generated and "(default" in head:  # a config key that says its default in its own words already
            text = head
        if action.default is None or isinstance(action.default, bool) or "(default" in text:
            return text  # flags and options without a default say so in their own words
        return super()._get_help_string(action)


def explain_default(parser: argparse.ArgumentParser, dest: str, meaning: str) -> None:
    """Say what the default of option ``dest`` means: ``(default: none)`` -> ``(default: none, MEANING)``."""
    for action in parser._actions:
        if action.dest == dest and action.help:
            head, sep, tail = action.help.rpartition("(default: ")
            value = tail[:-1] if tail.endswith(")") else tail
            action.help = f"{head}{sep}{value}, {meaning})" if sep else f"{action.help} (default: {meaning})"
            return
    raise KeyError(f"no option with dest {dest!r}")


def command(
    sub: argparse._SubParsersAction,
    name: str,
    text: str,
    examples: str = "",
    func: Callable[[argparse.Namespace], int] | None = None,
    *,
    resumable: bool = False,
) -> argparse.ArgumentParser:
    """A sub-command: ``text`` is its one-line summary (the help in the parent's list), a blank line and the
    description, shown as written; its ``--help`` ends with ``examples`` (one command line per line);
    ``func(args)`` runs it. A ``resumable`` command writes checkpoints atomically and continues from them: after
    Ctrl-C the command line prints the exact command that goes on."""
    summary = text.split("\n", 1)[0]
    lines = [line for line in examples.splitlines() if line.strip()]
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in lines) if lines else None
    p = sub.add_parser(name, help=summary, description=text, epilog=epilog, formatter_class=HelpFormatter)
    if func is not None:
        p.set_defaults(func=func, prog=p.prog, resumable=resumable)  # prog: the prefix of its errors
    return p


def config_file(p: argparse.ArgumentParser, what: str) -> None:
    """The ``--config FILE`` option: a YAML file of ``what``'s keys, under the flags given."""
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"YAML file of {what} keys, under the flags given (default: none, the defaults shown below)",
    )


def repeatable(p: argparse.ArgumentParser, flag: str, *, dest: str, metavar: str, help: str, default: str) -> None:
    """A flag given once per value, collected into the list ``dest`` (absent when never given); ``default`` says
    what happens without it."""
    help = f"{help} (repeatable; default: {default})"
    p.add_argument(flag, dest=dest, action="append", default=argparse.SUPPRESS, metavar=metavar, help=help)


def resume_flag(p: argparse.ArgumentParser, help: str) -> None:
    """``--resume [PATH]``: alone it continues the run in the output folder (``auto``), with a PATH that checkpoint."""
    p.add_argument("--resume", nargs="?", const=AUTO, metavar="PATH", default=argparse.SUPPRESS, help=help)
