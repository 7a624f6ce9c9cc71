"""The simulated adaptive studies of tests/test_sequential.py, with their numbers printed: per claim kind, the
family-wise rate of wrong verdicts, and for the claim whose true effect is 2δ how often it resolves, after how many
seeds on average, and the seeds a fixed Student-t design of that power needs (docs/study.md quotes this output).

    python benchmarks/sequential_simulation.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.test_sequential
from tests.test_sequential import EFFECTS, STUDIES, adaptive_studies

from spatialvit.report.inference import seeds_for_power
from spatialvit.study.claims import ALPHA, KINDS, NOT_RESOLVED

DISTANCE = {"superiority": 2.0, "non-inferiority": 3.0, "equivalence": 1.0}  # 2δ from each kind's boundary, in sd


def main() -> None:
    print(f"{STUDIES:,} adaptive studies per kind; claims at {EFFECTS} δ, per-seed sd δ")
    for kind in KINDS:
        verdict, seeds, wrong = adaptive_studies(kind, np.random.default_rng(4))
        big = EFFECTS.index(2.0)
        power = ((verdict[:, big] != NOT_RESOLVED) & ~wrong[:, big]).mean()
        fixed = seeds_for_power(DISTANCE[kind], 1.0, ALPHA / 2 / len(EFFECTS), min(power, 0.999))
        print(f"{kind}: family-wise wrong verdicts {wrong.any(1).mean():.4f}; 2δ claim resolves {power:.3f}, "
              f"mean seeds {seeds[:, big].mean():.1f}, fixed design of that power {fixed}")


if __name__ == "__main__":
    main()
