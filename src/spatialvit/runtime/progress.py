"""Progress on a terminal: a bar when standard error is one, and the time left."""

from __future__ import annotations

import sys
from typing import Any


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
