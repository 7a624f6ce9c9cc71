"""Grids and mask ratios of the block perturbations, as plain values (no torch): read by the configs, the
perturbations and the sweep."""

from __future__ import annotations

Grid = int | tuple[int, int]
FILLS = ("zero", "mean", "noise")


def to_grid(grid: Grid | str) -> tuple[int, int]:
    """``g``, ``(rows, cols)`` or the text ``"RxC"`` -> ``(rows, cols)``, checked to be positive ints."""
    if isinstance(grid, str) and "x" in grid.lower():
        grid = tuple(int(v) if v.strip().isdigit() else v for v in grid.lower().split("x"))
    rows, cols = (grid, grid) if isinstance(grid, int) else tuple(grid)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (rows, cols)):
        raise ValueError(f"grid must be a positive int or a (rows, cols) pair of positive ints, got {grid!r}")
    return rows, cols


def check_ratio(ratio: float) -> float:
    """A mask ratio, checked to lie in ``[0, 1]``."""
    if not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be a number in [0, 1], got {ratio!r}")
    return float(ratio)


def parse_grids(text: str) -> list[Grid]:
    """``"2,4,8"`` or ``"2x4,4x8"`` -> grids; ``""`` -> none."""
    out: list[Grid] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(tuple(int(v) for v in part.lower().split("x")) if "x" in part.lower() else int(part))
        except ValueError:
            raise ValueError(f"bad grid {part!r}: use G or RxC, comma-separated (e.g. 2,4,2x4)") from None
    return out
