"""The run options every command shares — ``device``, ``threads``, ``seed``, ``out``, ``overwrite``, ``progress``
(:data:`RUN_OPTIONS`) — one helper each, so that a run option has one type, one metavar and one help text in every
command's config (``from .. import run_options as run``; ``device: str = run.device()``), and their checks.
"""

from __future__ import annotations

from typing import Any

from .config import AUTO, DEVICES, option

RUN_OPTIONS = ("device", "threads", "seed", "out", "overwrite", "progress")


def device(default: str = AUTO) -> Any:
    """The ``device`` of a command: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    return option(default, "auto (CUDA when available), cpu, cuda or cuda:N", metavar="DEV")


def check_device(device: str) -> None:
    """Raise a ``ValueError`` naming ``device`` unless it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if device != AUTO and device.split(":")[0] not in DEVICES:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")


def threads(default: int | None = None) -> Any:
    """The CPU threads of torch (``None``: torch's choice)."""
    return option(default, "CPU threads of torch (none: torch's choice; 1 is steadier on a busy CPU)", metavar="N")


def check_threads(threads: int | None) -> None:
    """Raise a ``ValueError`` naming ``threads`` unless it is ``None`` or >= 1."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 (or none for torch's choice), got {threads}")


def seed(what: str) -> Any:
    """The random ``seed`` of a command; ``what`` says what it seeds."""
    return option(0, f"random seed of {what}")


def out(default: str | None, what: str) -> Any:
    """The output folder (or file) of a command; ``what`` says what goes there and what the default means."""
    return option(default, what, metavar="DIR")


def progress() -> Any:
    """Whether a command shows progress bars (on a terminal)."""
    return option(True, "progress bars on a terminal")


def overwrite(what: str) -> Any:
    """Whether a command replaces ``what`` of an earlier run in its output folder (deleting those files first)."""
    return option(False, f"replace {what} of an earlier run in the output folder, deleting those files first")


def check(config: Any) -> None:
    """Check the run options ``config`` has (``device``, ``threads``); a ``ValueError`` names the bad one."""
    if hasattr(config, "device"):
        check_device(config.device)
    if hasattr(config, "threads"):
        check_threads(config.threads)
