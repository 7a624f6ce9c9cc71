"""Statistics over seeds: Student-t confidence intervals of a mean and of paired (same-seed) differences, per-model
summaries and differences of the study's per-seed rows, and ``"0.823 ± 0.012"`` formatting.

Missing and broken values are kept apart. ``None`` means *not measured* (the CNN has no ``attn_dist_px``):
:func:`by_seed`, where rows become numbers, drops it; :func:`mean_ci` and :func:`paired_difference` reject it.
NaN and infinities are broken measurements: everything rejects them with a ``ValueError`` naming the value, so one
is never averaged away. Summary and difference rows hold ``None`` where there is no number (no value, or no
interval from a single seed): their CSV cells are empty and their JSON is valid.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from scipy.stats import t

from .tables import Row, columns_of


@dataclass(frozen=True)
class Interval:
    """A mean with its Student-t confidence interval ``[low, high] = mean ± half_width`` over ``n`` values.

    With ``n == 1`` there is no interval: ``sd``, ``half_width``, ``low`` and ``high`` are NaN (see ``single_seed``).
    """

    mean: float
    low: float
    high: float
    half_width: float
    n: int
    sd: float

    @property
    def single_seed(self) -> bool:
        """One value only, hence no interval."""
        return self.n == 1


def _finite(value: float | None, what: str) -> float:
    if value is None:
        raise ValueError(f"{what} is None (not measured): drop missing values first, e.g. with by_seed")
    if not math.isfinite(value):
        raise ValueError(f"{what} is {value}: a broken measurement, not a missing one")
    return float(value)


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> Interval:
    """Mean of ``values`` (one per seed) with the Student-t interval ``t_{1-(1-c)/2, n-1} · sd / √n``.

    Raises ``ValueError`` on no values, on a ``None``/NaN/infinite value, or on ``confidence`` outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    xs = [_finite(v, f"value {i}") for i, v in enumerate(values)]
    if not xs:
        raise ValueError("no values to average")
    mean, n = statistics.mean(xs), len(xs)
    if n == 1:
        return Interval(mean=mean, low=math.nan, high=math.nan, half_width=math.nan, n=1, sd=math.nan)
    sd = statistics.stdev(xs)
    half = float(t.ppf(1 - (1 - confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean=mean, low=mean - half, high=mean + half, half_width=half, n=n, sd=sd)


def paired_difference(
    a_by_seed: Mapping[Hashable, float], b_by_seed: Mapping[Hashable, float], confidence: float = 0.95
) -> Interval:
    """:func:`mean_ci` of the per-seed differences ``a - b`` over the seeds both have (paired by seed).

    Raises ``ValueError`` when no seed is common, or on a ``None``/NaN/infinite value of a common seed.
    """
    seeds = [s for s in a_by_seed if s in b_by_seed]
    if not seeds:
        raise ValueError(f"no common seed: a has {sorted(a_by_seed, key=str)}, b has {sorted(b_by_seed, key=str)}")
    return mean_ci(
        (_finite(a_by_seed[s], f"a at seed {s}") - _finite(b_by_seed[s], f"b at seed {s}") for s in seeds), confidence
    )


def _groups(rows: Iterable[Row], by: str, seed_key: str) -> dict[Hashable, list[Row]]:
    """Rows per ``by`` value, in order of first appearance; each row must have a ``seed_key`` unique in its group."""
    groups: dict[Hashable, list[Row]] = {}
    for row in rows:
        if by not in row or seed_key not in row:
            raise ValueError(f"row without {by!r} or {seed_key!r}: {row}")
        group = groups.setdefault(row[by], [])
        if any(r[seed_key] == row[seed_key] for r in group):
            raise ValueError(f"two rows for {by} {row[by]!r} at {seed_key} {row[seed_key]!r}")
        group.append(row)
    return groups


def by_seed(
    rows: Iterable[Row], column: str, by: str = "model", seed_key: str = "seed"
) -> dict[Hashable, dict[Hashable, float]]:
    """``{model: {seed: value}}`` of ``column``, models in order of first appearance. ``None`` (not measured) values
    are dropped, so a model that never has one maps to ``{}``; a NaN or infinite one raises ``ValueError``."""
    return {
        key: {
            r[seed_key]: _finite(r[column], f"{column} of {by} {key!r} at {seed_key} {r[seed_key]!r}")
            for r in group
            if r.get(column) is not None
        }
        for key, group in _groups(rows, by, seed_key).items()
    }


def model_difference(
    rows: Sequence[Row],
    column: str,
    model: Hashable,
    reference: Hashable,
    by: str = "model",
    seed_key: str = "seed",
    confidence: float = 0.95,
) -> Interval | None:
    """:func:`paired_difference` of ``column`` between ``model`` and ``reference`` (``model - reference``) over the
    seeds where both were measured; ``None`` if there is no such seed. ``ValueError`` if a model has no rows."""
    values = by_seed(rows, column, by, seed_key)
    for name in (model, reference):
        if name not in values:
            raise ValueError(f"no rows for {by} {name!r}; have {list(values)}")
    a, b = values[model], values[reference]
    return paired_difference(a, b, confidence) if a.keys() & b.keys() else None


def _cells(name: str, interval: Interval | None, bounds: bool) -> Row:
    """``name`` (mean), ``name_ci`` (half-width), with ``bounds`` also ``name_low`` and ``name_high``, then
    ``name_n``; ``None`` where there is no number."""
    mean = None if interval is None else interval.mean
    ci = None if interval is None or interval.single_seed else interval
    cells: Row = {name: mean, f"{name}_ci": None if ci is None else ci.half_width}
    if bounds:
        cells[f"{name}_low"] = None if ci is None else ci.low
        cells[f"{name}_high"] = None if ci is None else ci.high
    cells[f"{name}_n"] = 0 if interval is None else interval.n
    return cells


def _constant(rows: Sequence[Row], column: str) -> bool:
    return all(r.get(column) == rows[0].get(column) for r in rows)


def summarise(
    rows: Sequence[Row],
    columns: Sequence[str],
    by: str = "model",
    seed_key: str = "seed",
    confidence: float = 0.95,
) -> list[Row]:
    """One row per model (in order of first appearance): ``by``, then every other column whose value is the same in
    all of the model's rows (``source``, ``params``, ...), then per ``col`` in ``columns``: ``col`` (mean over
    seeds), ``col_ci`` (half-width of the ``confidence`` interval) and ``col_n`` (seeds measured)."""
    groups = _groups(rows, by, seed_key)
    values = {col: by_seed(rows, col, by, seed_key) for col in columns}
    skip = {by, seed_key, *columns}
    out = []
    for key, group in groups.items():
        row: Row = {by: key}
        row |= {c: group[0].get(c) for c in columns_of(group) if c not in skip and _constant(group, c)}
        for col in columns:
            seeds = values[col][key]
            row |= _cells(col, mean_ci(seeds.values(), confidence) if seeds else None, bounds=False)
        out.append(row)
    return out


def differences(
    rows: Sequence[Row],
    columns: Sequence[str],
    reference_model: Hashable,
    by: str = "model",
    seed_key: str = "seed",
    confidence: float = 0.95,
) -> list[Row]:
    """One row per model other than ``reference_model`` (in order of first appearance): ``by``, ``reference``, then
    per ``col`` in ``columns`` the paired difference ``model - reference`` (:func:`model_difference`) as
    ``col_diff``, ``col_diff_ci`` (half-width), ``col_diff_low``, ``col_diff_high`` and ``col_diff_n``."""
    models = _groups(rows, by, seed_key)
    if reference_model not in models:
        raise ValueError(f"no rows for reference {by} {reference_model!r}; have {list(models)}")
    out = []
    for model in models:
        if model == reference_model:
            continue
        row: Row = {by: model, "reference": reference_model}
        for col in columns:
            diff = model_difference(
                rows, col, model, reference=reference_model, by=by, seed_key=seed_key, confidence=confidence
            )
            row |= _cells(f"{col}_diff", diff, bounds=True)
        out.append(row)
    return out


def format_ci(value: Interval | float | None, half_width: float | None = None, digits: int = 3) -> str:
    """``"0.823 ± 0.012"`` from an :class:`Interval`, or from a summary row's ``col`` and ``col_ci``;
    ``"0.823 (1 seed)"`` when there is no interval (a single-seed :class:`Interval`, or a ``half_width`` of
    ``None``/NaN); ``""`` when there is no value (``None``/NaN). Never ``"nan"``."""
    if isinstance(value, Interval):
        if half_width is not None:
            raise TypeError("give an Interval or a mean and a half-width, not both")
        value, half_width = value.mean, value.half_width
    if value is None or math.isnan(value):
        return ""
    if half_width is None or math.isnan(half_width):
        return f"{value:.{digits}f} (1 seed)"
    return f"{value:.{digits}f} ± {half_width:.{digits}f}"
