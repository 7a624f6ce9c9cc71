"""The guard that keeps a command from overwriting earlier work.

Every command that writes a run or a result file calls :func:`claim_outputs` with the files it is about to write
before it writes any of them: when some already exist it refuses (naming the file and the ways on) unless the
user asked to continue (``--resume``, which the caller handles) or to start again (``--overwrite``, which removes
exactly those files first, so nothing of the old run lingers beside the new one).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path


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
