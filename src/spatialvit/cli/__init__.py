"""The ``spatialvit`` command line. Each sub-command lives in its own module exposing ``add_parser(subparsers)``,
which registers its arguments and sets ``func`` to a callable taking the parsed namespace and returning an exit
code. Argument parsing and printing happen here and in those modules only."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..runtime.resume import INTERRUPTED

# Sub-commands, in the order ``--help`` lists them; each is the module of that name unless MODULES says otherwise.
COMMANDS = ["study", "train", "eval", "models", "sensitivity", "synth", "generate", "bench"]
MODULES = {"eval": "evaluate"}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every sub-command, or with the sub-command ``only`` alone (a command line that names
    one builds just its parser: its configs, not every command's)."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="spatialvit",
        description="Spatial structure in Vision Transformers: measure how much a classifier uses the layout of the "
        "image, train ViTs with spatial attention, and probe what they learn.",
        epilog="`spatialvit COMMAND --help` shows a command's options, their defaults and examples.",
    )
    parser.add_argument("--version", action="version", version=f"spatialvit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS if only is None else [only]:
        importlib.import_module(f".{MODULES.get(name, name)}", __name__).add_parser(sub)
    return parser


def help_pages() -> list[tuple[list[str], argparse.ArgumentParser]]:
    """``(path, parser)`` of every help page: the top level (``[]``), each command and each sub-action, in order."""
    pages: list[tuple[list[str], argparse.ArgumentParser]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        pages.append((path, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, [*path, name])

    walk(build_parser(), [])
    return pages


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``spatialvit`` and ``python -m spatialvit``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    named = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(named if named in COMMANDS else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        print(f"{getattr(args, 'prog', None) or 'spatialvit ' + args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nspatialvit {args.command}: interrupted. {_after_interrupt(args, argv)}", file=sys.stderr)
        return INTERRUPTED


def _after_interrupt(args: argparse.Namespace, argv: list[str]) -> str:
    """What is kept after Ctrl-C, and the exact command that goes on (a command sets ``resumable`` when it writes
    checkpoints atomically and can continue from them)."""
    from ..runtime.resume import resume_command

    if getattr(args, "resumable", False):
        return f"Completed checkpoints are intact (written atomically); continue with: {resume_command(argv)}"
    return "Nothing it wrote is half-finished; run the same command again (add --overwrite if it refuses)."
