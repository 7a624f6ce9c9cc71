"""Tests over seeds: one-sided Student-t p-values against a threshold, two one-sided tests (TOST) for equivalence,
Holm's step-down adjustment over a family of claims, and the seeds a one-sided t-test needs for a given power.

Every function takes a :class:`~spatialvit.report.stats.Interval` (mean, sd and n of per-seed values, e.g. paired
differences), so a p-value and the confidence interval beside it come from the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import nct, t

from .stats import Interval

MAX_SEEDS = 1000  # power searches stop here: beyond it "more than 1000 seeds" is the honest answer


def _one_sided(diff: ArrayLike, sd: ArrayLike, n: int, upper: bool) -> Any:
    """One-sided Student-t p-value of ``mean - value = diff`` (``upper``: against ``> 0``), elementwise; exact 0 or 1
    where ``sd`` is 0; ``NaN`` for ``n < 2``."""
    diff, sd = np.asarray(diff, dtype=float), np.asarray(sd, dtype=float)
    if n < 2:
        return np.full(np.broadcast(diff, sd).shape, np.nan)[()]
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = diff / (sd / math.sqrt(n))
    p = t.sf(stat, n - 1) if upper else t.cdf(stat, n - 1)
    exact = np.where(diff > 0 if upper else diff < 0, 0.0, 1.0)
    return np.where(sd == 0, exact, p)[()]


def p_greater(sample: Interval, value: float) -> Any:
    """p-value of ``H0: mean <= value`` against ``mean > value`` (one-sided Student-t, ``n - 1`` degrees of freedom).
    With ``n < 2`` there is no test: ``NaN``. A zero standard deviation gives 0 or 1 (the values are exact).
    ``sample.mean`` and ``sample.sd`` may be arrays (many samples of the same ``n`` at once)."""
    return _one_sided(np.asarray(sample.mean) - value, sample.sd, sample.n, upper=True)


def p_less(sample: Interval, value: float) -> Any:
    """p-value of ``H0: mean >= value`` against ``mean < value`` (one-sided Student-t; arrays as :func:`p_greater`)."""
    return _one_sided(np.asarray(sample.mean) - value, sample.sd, sample.n, upper=False)


def tost(sample: Interval, low: float, high: float) -> Any:
    """Two one-sided tests (Schuirmann 1987): p-value of ``H0: mean <= low or mean >= high`` against
    ``low < mean < high``, the larger of the two one-sided p-values."""
    return np.maximum(p_greater(sample, low), p_less(sample, high))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values, in the order given: sorted ascending, the k-th smallest (from 1)
    becomes ``max over j <= k of min(1, (m - j + 1) p_(j))``. Rejecting where the adjusted p is at most alpha controls
    the family-wise error rate at alpha. ``NaN`` entries (no test) are left out of the family and stay ``NaN``."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(tested)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out


def power_one_sided(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of the one-sided t-test at level ``alpha`` to show ``mean > 0`` when the true mean is ``effect`` and the
    per-seed standard deviation ``sd`` (noncentral t)."""
    if n < 2:
        return 0.0
    df = n - 1
    return float(nct.sf(t.ppf(1 - alpha, df), df, effect * math.sqrt(n) / sd))


def seeds_for_power(effect: float, sd: float, alpha: float, power: float = 0.8) -> int | None:
    """The fewest seeds (at least 2) for which a one-sided t-test at level ``alpha`` shows ``mean > 0`` with
    probability ``power`` when the true mean is ``effect`` > 0 and the per-seed sd is ``sd``; ``None`` when no
    positive effect is given or more than :data:`MAX_SEEDS` would be needed. An ``sd`` of 0 needs 2 seeds."""
    if not effect > 0 or math.isnan(sd):
        return None
    if sd == 0:
        return 2
    if power_one_sided(effect, sd, MAX_SEEDS, alpha) < power:
        return None
    low, high = 2, MAX_SEEDS  # power grows with n: bisect for the first n that reaches it
    while low < high:
        mid = (low + high) // 2
        if power_one_sided(effect, sd, mid, alpha) >= power:
            high = mid
        else:
            low = mid + 1
    return low


# Anytime-valid tests: the scale-invariant normal-mixture e-value (the sequential t-test of Lai 1976; Wang and Ramdas,
# "Anytime-valid t-tests and confidence sequences for Gaussian means with unknown variance", Sequential Analysis
# 2025; Pérez-Ortiz, Lardy, de Heide and Grünwald, "E-statistics, group invariance and anytime-valid testing",
# Annals of Statistics 2024). Under H0 (mean = value, any variance) it is a nonnegative martingale in the number of
# values, so by Ville's inequality P(it ever reaches 1/u) <= u: 1 / its running maximum is a p-value that stays valid
# however the decision to add values or to stop depends on what was seen.
MIXTURE_G = 10.0  # prior variance of the standardised effect (mean - value) / sd in the mixture: see docs/study.md


def log_e_value(diff: ArrayLike, sd: ArrayLike, n: int, g: float = MIXTURE_G) -> Any:
    """log of the mixture e-value against ``mean = value`` from ``n`` values whose mean minus ``value`` is ``diff``
    and whose standard deviation is ``sd`` (elementwise): with ``t`` the one-sample t statistic and ``ν = n − 1``,
    ``E = (1 + n g)^(-1/2) · ((1 + t²/ν) / (1 + t²/(ν (1 + n g))))^(n/2)`` (the Bayes factor of a N(0, g) prior on the
    standardised effect, with the scale integrated out under dσ/σ). Needs ``n >= 2`` (``NaN`` otherwise); ``sd`` 0
    gives its limit ``(1 + n g)^((n − 1)/2)`` (``diff`` 0 and ``sd`` 0: no evidence)."""
    diff, sd = np.asarray(diff, dtype=float), np.asarray(sd, dtype=float)
    if n < 2:
        return np.full(np.broadcast(diff, sd).shape, np.nan)[()]
    nu = n - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        t2 = np.where(diff == 0, 0.0, n * diff**2 / sd**2)
        grow = np.where(np.isinf(t2), np.log1p(n * g), np.log1p(t2 / nu) - np.log1p(t2 / (nu * (1 + n * g))))
    return (-0.5 * np.log1p(n * g) + n / 2 * grow)[()]


def _anytime(diff: ArrayLike, sd: ArrayLike, n: int, upper: bool) -> Any:
    """Anytime-valid p-value of ``mean > value`` (``upper``) or ``mean < value`` from the e-value at ``value``:
    ``min(1, 1/E)`` where the mean lies on that side, else 1 (the nulls ``mean <= value`` hold the values nearest
    the data at ``value``, where E is smallest)."""
    diff = np.asarray(diff, dtype=float)
    p = np.minimum(1.0, np.exp(-log_e_value(diff, sd, n)))
    return np.where(diff > 0 if upper else diff < 0, p, 1.0)[()] if n >= 2 else p


def av_p_greater(sample: Interval, value: float) -> Any:
    """Anytime-valid p-value of ``H0: mean <= value`` against ``mean > value`` at one look (arrays as
    :func:`p_greater`); the running minimum over the looks is the sequential p-value."""
    return _anytime(np.asarray(sample.mean) - value, sample.sd, sample.n, upper=True)


def av_p_less(sample: Interval, value: float) -> Any:
    """Anytime-valid p-value of ``H0: mean >= value`` against ``mean < value`` at one look."""
    return _anytime(np.asarray(sample.mean) - value, sample.sd, sample.n, upper=False)


def av_tost(sample: Interval, low: float, high: float) -> Any:
    """Anytime-valid p-value of ``H0: mean <= low or mean >= high`` (the larger of the two one-sided ones)."""
    return np.maximum(av_p_greater(sample, low), av_p_less(sample, high))


def prefix_samples(values: np.ndarray) -> list[Interval]:
    """The samples of the looks: for ``values`` ``[..., N]`` (per-seed values in the order they were added, any
    leading batch shape), the mean and sd of the first ``k`` values for ``k = 2..N`` as :class:`Interval` s of
    arrays (``low``/``high``/``half_width`` not filled: the tests read mean, sd and n)."""
    values = np.asarray(values, dtype=float)
    out = []
    for k in range(2, values.shape[-1] + 1):
        head = values[..., :k]
        mean, sd = head.mean(-1), head.std(-1, ddof=1)
        out.append(Interval(mean=mean, low=math.nan, high=math.nan, half_width=math.nan, n=k, sd=sd))  # type: ignore[arg-type]
    return out
