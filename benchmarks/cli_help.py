"""How long ``spatialvit --help`` and every sub-command's ``--help`` take: wall time of a fresh process each
(``python -m spatialvit ... --help``, the interpreter start included), the median of ``--repeats`` runs.

    python benchmarks/cli_help.py [--repeats 5]

Help should answer in well under a second: parsing imports no torch and no model (docs/architecture.md,
"Start-up time"). The table also gives ``python -c pass`` (the interpreter alone) and ``import torch`` for scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def commands() -> list[list[str]]:
    """``[]`` (the top level) and every sub-command and sub-action, in ``--help`` order, read from the parser."""
    sys.path.insert(0, str(SRC))
    from spatialvit.cli import help_pages

    return [path for path, _ in help_pages()]


def wall_time(argv: list[str], repeats: int) -> float:
    """Median seconds of ``repeats`` fresh ``python argv`` processes (stdout discarded; a failure raises)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *argv], env=env, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, metavar="N", help="processes per command (median)")
    args = parser.parse_args()
    rows = [("python -c pass", wall_time(["-c", "pass"], args.repeats))]
    rows.append(("python -c 'import torch'", wall_time(["-c", "import torch"], args.repeats)))
    for path in commands():
        rows.append(
            (" ".join(["spatialvit", *path, "--help"]), wall_time(["-m", "spatialvit", *path, "--help"], args.repeats))
        )
    width = max(len(name) for name, _ in rows)
    print(f"| {'command':{width}s} | wall s (median of {args.repeats}) |")
    print(f"| {'-' * width} | ---: |")
    for name, seconds in rows:
        print(f"| {name:{width}s} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
