"""What every command shares at run time: the device, whether this process is the one that writes, the
``Normalize`` + classifier pair, and the guard that keeps a command from overwriting earlier work.

Every command that writes a run or a result file calls :func:`claim_outputs` with the files it is about to write
before it writes any of them: when some already exist it refuses (naming the file and the ways on) unless the
user asked to continue (``--resume``, which the caller handles) or to start again (``--overwrite``, which removes
exactly those files first, so nothing of the old run lingers beside the new one).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data.base import Normalize


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'`` or ``'cuda:N'``; a CUDA device without CUDA raises."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(name)!r} requested but CUDA is not available")
    return device


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` job (or a single process): the one that writes files and reports."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def with_normalize(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Sequential:
    """``nn.Sequential(Normalize(mean, std), model)``: a classifier of ``[0, 1]`` pixel images."""
    return nn.Sequential(Normalize(mean, std), model)


def split_classifier(net: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(preprocessing, model)`` of a :func:`with_normalize` classifier; any other module is ``(Identity, net)``."""
    if isinstance(net, nn.Sequential) and len(net) > 1 and isinstance(net[0], Normalize):
        return net[:-1], net[-1]
    return nn.Identity(), net


class OutputExistsError(ValueError):
    """A command would overwrite files of an earlier run or result; nothing was written."""


def existing_outputs(out: str | Path, patterns: Iterable[str]) -> list[Path]:
    """The files (or folders) under ``out`` matching any of the glob ``patterns``, sorted, each once."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted({p for pattern in patterns for p in out.glob(pattern)})


def claim_outputs(
    out: str | Path,
    patterns: Iterable[str],
    *,
    overwrite: bool = False,
    resume_flag: str | None = None,
    out_flag: str = "--out",
) -> list[Path]:
    """Make sure writing ``patterns`` under ``out`` loses nothing; returns the paths removed by ``overwrite``.

    Existing matches raise :class:`OutputExistsError` (every file left as it was) unless ``overwrite``, which
    deletes them. ``resume_flag`` names the option that continues the existing run, for commands that have one.
    """
    found = existing_outputs(out, patterns)
    if not found:
        return []
    if not overwrite:
        shown = ", ".join(str(p) for p in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        ways = [f"continue it with {resume_flag}"] if resume_flag else []
        ways += ["start again with --overwrite (deletes those files first)", f"write elsewhere with another {out_flag}"]
        raise OutputExistsError(
            f"{str(Path(out))!r} already holds the output of an earlier run ({shown}); nothing was changed. "
            f"To go on: {'; '.join(ways)}."
        )
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return found


def describe_changes(saved: dict, current: dict, ignore: Iterable[str] = ()) -> str:
    """``"key: old in the checkpoint, new now; ..."`` for the keys whose values differ (empty when none do)."""
    skip = set(ignore)
    keys = [k for k in dict.fromkeys([*saved, *current]) if k not in skip and saved.get(k) != current.get(k)]
    return "; ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {current.get(k)!r} now" for k in keys)


INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it


def resume_command(argv: Sequence[str], flag: str = "--resume") -> str:
    """The command line that continues the run ``spatialvit argv`` started: ``argv`` without ``--overwrite`` (a
    resumed run must not start again) and with ``flag`` (unless already there), quoted for a POSIX shell."""
    import shlex

    kept = [a for a in argv if a not in ("--overwrite", "--no-resume")]
    if flag not in kept and not any(a.startswith(flag + "=") for a in kept):
        kept.append(flag)
    return shlex.join(["spatialvit", *kept])


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm progress bar over ``iterable`` when ``enabled`` and standard error is a terminal; otherwise a silent
    stand-in (no carriage returns in a redirected log: the commands write one line per epoch or stage there)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not (enabled and sys.stderr.isatty()), **kwargs)


def eta(seconds_so_far: float, done: int, total: int) -> str:
    """``"ETA 3 min 20 s"`` for the ``total - done`` steps left at the mean pace so far (``""`` when none are)."""
    if done <= 0 or done >= total:
        return ""
    left = round(seconds_so_far / done * (total - done))
    return f"ETA {left // 60} min {left % 60} s" if left >= 60 else f"ETA {left} s"
