"""Statistics over seeds (report/stats.py): Student-t intervals, paired differences, summaries and formatting."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from spatialvit.report.stats import (
    Interval,
    by_seed,
    differences,
    format_ci,
    mean_ci,
    model_difference,
    paired_difference,
    summarise,
)


def rows_of(values: dict[str, dict[str, list[float | None]]]) -> list[dict]:
    """Per-seed study rows from ``{model: {column: [value per seed]}}``."""
    return [
        {"model": model, "seed": seed, **{col: vals[seed] for col, vals in cols.items()}}
        for model, cols in values.items()
        for seed in range(len(next(iter(cols.values()))))
    ]


# --- intervals ---------------------------------------------------------------------------------------------------


def test_mean_ci_matches_scipy_t():
    iv = mean_ci([1, 2, 3, 4])
    sd = math.sqrt(5 / 3)
    assert (iv.mean, iv.n) == (2.5, 4)
    assert iv.sd == pytest.approx(sd)
    assert iv.half_width == pytest.approx(sps.t.ppf(0.975, 3) * sd / 2)
    low, high = sps.t.interval(0.95, 3, loc=2.5, scale=sd / 2)
    assert (iv.low, iv.high) == (pytest.approx(low), pytest.approx(high))
    assert mean_ci([1, 2, 3, 4], confidence=0.9).half_width == pytest.approx(sps.t.ppf(0.95, 3) * sd / 2)


def test_mean_ci_single_value_has_no_interval():
    iv = mean_ci([0.823])
    assert iv.single_seed and iv.mean == 0.823 and iv.n == 1
    assert all(math.isnan(x) for x in (iv.low, iv.high, iv.half_width, iv.sd))


def test_mean_ci_of_equal_values_is_a_point():
    iv = mean_ci([0.8, 0.8, 0.8])
    assert (iv.mean, iv.low, iv.high, iv.half_width) == (0.8, 0.8, 0.8, 0.0)


@pytest.mark.parametrize(
    ("values", "confidence", "message"),
    [
        ([0.5, None], 0.95, "value 1 is None"),
        ([0.5, math.nan], 0.95, "value 1 is nan"),
        ([math.inf], 0.95, "value 0 is inf"),
        ([], 0.95, "no values"),
        ([1.0, 2.0], 1.0, "confidence"),
    ],
)
def test_mean_ci_rejects_bad_input(values, confidence, message):
    with pytest.raises(ValueError, match=message):
        mean_ci(values, confidence)


@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=8),
    st.floats(0.5, 0.98),
    st.floats(0.0, 0.019),
)
def test_mean_ci_properties(values, confidence, more):
    iv = mean_ci(values, confidence)
    wider = mean_ci(values, confidence + more)
    assert iv.low <= iv.mean <= iv.high
    assert iv.high - iv.mean == pytest.approx(iv.mean - iv.low, abs=1e-9)
    assert wider.half_width >= iv.half_width
    assert wider.mean == iv.mean
    if iv.sd > 0:
        low, high = sps.t.interval(confidence, len(values) - 1, loc=iv.mean, scale=iv.sd / math.sqrt(len(values)))
        assert (iv.low, iv.high) == (pytest.approx(low), pytest.approx(high))


def test_paired_difference_pairs_by_seed():
    a = {0: 0.90, 1: 0.80, 2: 0.70, 7: 0.0}
    b = {2: 0.60, 1: 0.75, 0: 0.84, 9: 1.0}  # differences 0.06, 0.05, 0.10 at seeds 0, 1, 2
    iv = paired_difference(a, b)
    expected = mean_ci([0.06, 0.05, 0.10])
    assert iv.n == 3
    assert iv.mean == pytest.approx(0.07)
    assert iv.half_width == pytest.approx(expected.half_width)
    assert iv.sd == pytest.approx(math.sqrt(((0.01**2) + (0.02**2) + (0.03**2)) / 2))


def test_paired_difference_removes_the_shared_seed_effect():
    """Seed effects common to both models cancel: an unpaired interval would contain 0, the paired one does not."""
    shared = [0.0, 0.2, -0.15, 0.1]
    a = {s: 0.7 + e + 0.02 + 0.001 * s for s, e in enumerate(shared)}
    b = {s: 0.7 + e for s, e in enumerate(shared)}
    assert mean_ci(a.values()).low < mean_ci(b.values()).high
    assert paired_difference(a, b).low > 0


def test_paired_difference_needs_a_common_seed():
    with pytest.raises(ValueError, match="no common seed"):
        paired_difference({0: 1.0}, {1: 1.0})
    with pytest.raises(ValueError, match="b at seed 0 is None"):
        paired_difference({0: 1.0}, {0: None})


# --- tables ------------------------------------------------------------------------------------------------------


def test_by_seed_drops_none_and_rejects_nan():
    rows = rows_of({"cnn": {"attn_dist_px": [None, None]}, "vit": {"attn_dist_px": [3.0, None]}})
    assert by_seed(rows, "attn_dist_px") == {"cnn": {}, "vit": {0: 3.0}}
    rows[0]["attn_dist_px"] = math.nan
    with pytest.raises(ValueError, match="attn_dist_px of model 'cnn' at seed 0 is nan"):
        by_seed(rows, "attn_dist_px")


def test_rows_need_unique_seeds():
    with pytest.raises(ValueError, match="two rows for model 'vit' at seed 0"):
        by_seed([{"model": "vit", "seed": 0, "x": 1.0}, {"model": "vit", "seed": 0, "x": 2.0}], "x")
    with pytest.raises(ValueError, match="without 'model' or 'seed'"):
        by_seed([{"model": "vit", "x": 1.0}], "x")


def test_summarise():
    rows = [
        {"model": "vit", "seed": s, "source": "trained", "params": 10, "acc": acc, "dist": 2.0 + s, "time": 5.0 + s}
        for s, acc in enumerate([1.0, 2.0, 3.0, 4.0])
    ] + [{"model": "cnn", "seed": 0, "source": "trained", "params": 20, "acc": 0.5, "dist": None, "time": 1.0}]
    vit, cnn = summarise(rows, ["acc", "dist"])
    assert list(vit) == ["model", "source", "params", "acc", "acc_ci", "acc_n", "dist", "dist_ci", "dist_n"]
    assert vit["acc"] == 2.5 and vit["acc_n"] == 4
    assert vit["acc_ci"] == pytest.approx(mean_ci([1, 2, 3, 4]).half_width)
    assert "time" in cnn and "time" not in vit  # kept only where it is the same in all of the model's rows
    assert cnn | {"time": None} == {
        "model": "cnn", "source": "trained", "params": 20, "time": None,
        "acc": 0.5, "acc_ci": None, "acc_n": 1, "dist": None, "dist_ci": None, "dist_n": 0,
    }  # fmt: skip


def test_differences_against_a_reference():
    rows = rows_of(
        {
            "vit": {"acc": [0.80, 0.82, 0.84], "dist": [4.0, 4.2, 4.1]},
            "cnn": {"acc": [0.85, 0.86, 0.90], "dist": [None, None, None]},
            "pos": {"acc": [0.81, 0.83, 0.85], "dist": [3.0, 3.1, 3.3]},
        }
    )
    cnn, pos = differences(rows, ["acc", "dist"], "vit")
    assert (cnn["model"], cnn["reference"], pos["model"]) == ("cnn", "vit", "pos")
    expected = paired_difference({0: 0.85, 1: 0.86, 2: 0.90}, {0: 0.80, 1: 0.82, 2: 0.84})
    assert cnn["acc_diff"] == pytest.approx(expected.mean)
    assert cnn["acc_diff_ci"] == pytest.approx(expected.half_width)
    assert (cnn["acc_diff_low"], cnn["acc_diff_high"]) == (pytest.approx(expected.low), pytest.approx(expected.high))
    assert cnn["acc_diff_n"] == 3
    assert [cnn[f"dist_diff{k}"] for k in ("", "_ci", "_low", "_high", "_n")] == [None, None, None, None, 0]
    assert pos["dist_diff"] == pytest.approx(-0.9666666, abs=1e-6)
    with pytest.raises(ValueError, match="no rows for reference model 'sdt'"):
        differences(rows, ["acc"], "sdt")
    with pytest.raises(ValueError, match="no rows for model 'sdt'"):
        model_difference(rows, "acc", "sdt", "vit")


def test_format_ci():
    assert format_ci(0.8234, 0.0121) == "0.823 ± 0.012"
    assert format_ci(Interval(0.8234, 0.81, 0.83, 0.0121, 3, 0.01), digits=2) == "0.82 ± 0.01"
    assert format_ci(mean_ci([0.823])) == "0.823 (1 seed)"
    assert format_ci(0.823, None) == format_ci(0.823, math.nan) == "0.823 (1 seed)"
    assert format_ci(None, None) == format_ci(math.nan, None) == ""
    with pytest.raises(TypeError):
        format_ci(mean_ci([1.0, 2.0]), 0.1)


def test_single_seed_summary_formats_without_nan():
    (row,) = summarise([{"model": "vit", "seed": 0, "acc": 0.823}], ["acc"])
    text = format_ci(row["acc"], row["acc_ci"])
    assert text == "0.823 (1 seed)" and "nan" not in text
