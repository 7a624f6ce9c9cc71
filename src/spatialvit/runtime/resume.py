"""After Ctrl-C: the exit status shells report, and the command line that continues the run."""

from __future__ import annotations

from collections.abc import Sequence

INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it


def resume_command(argv: Sequence[str], flag: str = "--resume") -> str:
    """The command line that continues the run ``spatialvit argv`` started: ``argv`` without ``--overwrite`` (a
    resumed run must not start again) and with ``flag`` (unless already there), quoted for a POSIX shell."""
    import shlex

    kept = [a for a in argv if a not in ("--overwrite", "--no-resume")]
    if flag not in kept and not any(a.startswith(flag + "=") for a in kept):
        kept.append(flag)
    return shlex.join(["spatialvit", *kept])
