"""The study end to end on a tiny configuration, its config validation and the recipes under configs/."""

import json
import re
from pathlib import Path

import pytest

from spatialvit.study import COLUMNS, WALL_CLOCK, StudyConfig, run_study
from spatialvit.study.claims import CONCLUSIVE, NOT_VALID
from spatialvit.study.runner import derive_tables

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "data": "digits",
    "img_size": 16,
    "models": ["resnet_small", "vit_micro_patch4", "vit_posattn_micro_patch4"],
    "model_kwargs": {
        "vit_micro_patch4": {"embed_dim": 16, "depth": 2, "num_heads": 2},
        "vit_posattn_micro_patch4": {"embed_dim": 16, "depth": 2, "num_heads": 2},
    },
    "train": {"epochs": 1, "batch_size": 128, "warmup_epochs": 0.2, "device": "cpu", "threads": 1},
    "sensitivity": {"shuffle_grids": [2, 4], "mask_ratios": [0.5], "repeats": 2, "limit": 64},
    "probes": {"images": 8, "example_images": 1},
    "claim_grids": [4, 2],
    "seeds": [0],
    "workers": 1,
    "progress": False,
}


def tiny(out: Path, **changes) -> StudyConfig:
    models = changes.get("models", TINY["models"])
    kwargs = {m: kw for m, kw in TINY["model_kwargs"].items() if m in models}
    return StudyConfig.from_dict({**TINY, "out": str(out), "model_kwargs": kwargs, **changes})


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return run_study(tiny(tmp_path_factory.mktemp("study")))


def test_study_writes_report_tables_and_plots(study):
    out = study.out
    for name in [
        "report.md",
        "report.html",
        "comparison.csv",
        "comparison.json",
        "comparison.md",
        "comparison_seeds.csv",
        "differences.csv",
        "claims.csv",
        "sweep.csv",
        "summary.csv",
        "attention_distance.csv",
        "attention_distance.json",
        "association.csv",
        "association.json",
        "association.md",
        "sensitivity.png",
        "attention_distance.png",
        "attention_maps.png",
        "study_config.yaml",
    ]:
        assert (out / name).is_file(), name
    for model in TINY["models"]:
        assert (out / "runs" / model / "seed0" / "last.pt").is_file()
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["model"] for r in rows] == TINY["models"]
    assert set(COLUMNS) | set(WALL_CLOCK) <= set(rows[0])
    assert all(r["seeds"] == 1 and r["clean_acc1_n"] == 1 and r["clean_acc1_ci"] is None for r in rows)
    for r in rows:
        assert 0.0 <= r["clean_acc1"] <= 1.0 and r["epochs"] == 1 and r["params"] > 0
        assert r["ssi_shuffle"] is not None and r["ssi_mask"] is not None and r["infer_img_s"] > 0
    assert rows[0]["attn_dist_px"] is None  # the CNN has no attention
    # chance-normalised drops at the claim grids, from the sweep rows; the plain ViT's prior is uniform attention
    from spatialvit.probes.attention_maps import token_distances

    per_seed = {r["model"]: r for r in json.loads((out / "comparison_seeds.json").read_text())}
    for model, row in per_seed.items():
        sweep = [r for r in json.loads((out / "sweep.json").read_text()) if r["model"] == model]
        clean = next(r["acc1"] for r in sweep if r["kind"] == "clean")
        shuffled = next(r["acc1"] for r in sweep if r["kind"] == "shuffle" and r["grid"] == "4x4")
        expected = (clean - shuffled) / (clean - 0.1) if clean > 0.1 else None  # at chance: no normalised drop
        assert row["chance_acc1"] == 0.1 and row["shuffle_drop_4x4"] == pytest.approx(expected)
        assert {"shuffle_drop_2x2", "mask_drop_4x4", "mask_drop_2x2"} <= set(row)
    vit = per_seed["vit_micro_patch4"]
    assert vit["prior_dist_px"] == pytest.approx(float(token_distances((4, 4), 4).mean()), rel=1e-5)
    assert [r["rate_spread"] for r in rows] == [None, None, None]  # no decay model here
    dist = [d for d in json.loads((out / "attention_distance.json").read_text()) if d["model"] == "vit_micro_patch4"]
    assert {(d["layer"], d["head"]) for d in dist} == {(la, h) for la in range(2) for h in range(2)}
    assert rows[1]["attn_dist_px"] == pytest.approx(sum(d["distance_px"] for d in dist) / len(dist))
    # patch association: only the positional model, one row per positional layer, against 2x2 blocks of a 4x4 grid
    assert rows[0]["assoc_mass"] is None and rows[1]["assoc_mass"] is None
    assoc = json.loads((out / "association.json").read_text())
    assert [(a["model"], a["layer"], a["mixer"]) for a in assoc] == [
        ("vit_posattn_micro_patch4", la, "positional") for la in range(2)
    ]
    assert all(a["chance_mass"] == pytest.approx(4 / 16) and 0 <= a["mass"] <= 1 for a in assoc)
    assert rows[2]["assoc_mass"] == pytest.approx(sum(a["mass"] for a in assoc) / 2)
    assert rows[2]["assoc_auc"] == pytest.approx(sum(a["auc"] for a in assoc) / 2)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "shuffle SSI" in html
    assert "one seed (0): no confidence interval" in html
    assert not re.search(r"\bnan\b", (out / "report.md").read_text())
    assert "(1 seed)" in html and "higher means more sensitive" in html and "SSI at chance" in html
    md = (out / "report.md").read_text()
    assert "](sensitivity.png)" in md and "vit_micro_patch4" in md and "## Patch association" in md


def test_same_seed_same_table_and_rerun_reuses_runs(study, tmp_path):
    again = run_study(tiny(tmp_path / "again"))
    keep = [c for c in COLUMNS if c != "source"]
    assert [{c: r[c] for c in keep} for r in again.comparison] == [{c: r[c] for c in keep} for r in study.comparison]
    # a second study into the same folder reuses the finished runs instead of training again
    mtime = (tmp_path / "again" / "runs" / "vit_micro_patch4" / "seed0" / "last.pt").stat().st_mtime_ns
    third = run_study(tiny(tmp_path / "again", models=["vit_micro_patch4"], resume=True))
    assert (tmp_path / "again" / "runs" / "vit_micro_patch4" / "seed0" / "last.pt").stat().st_mtime_ns == mtime
    assert third.comparison[0]["clean_acc1"] == study.comparison[1]["clean_acc1"]


def test_runs_trained_in_worker_processes_give_the_same_numbers(study, tmp_path, caplog):
    caplog.set_level("INFO", logger="spatialvit.study")
    parallel = run_study(tiny(tmp_path, workers=2))
    keep = [c for c in COLUMNS if c != "source"]
    assert [{c: r[c] for c in keep} for r in parallel.comparison] == [{c: r[c] for c in keep} for r in study.comparison]
    assert "in 2 worker processes" in caplog.text and "(3/3)" in caplog.text


def test_association_rows_match_the_probe_on_an_untrained_positional_vit():
    """The study's association step equals the probe applied by hand, against the stated reference partition."""
    import torch

    from spatialvit.data import Normalize
    from spatialvit.models import create_model
    from spatialvit.probes.association import association_report, vit_attention_matrix
    from spatialvit.study.runner import association_rows, reference_partition

    vit = create_model("vit_gpsa_micro_patch4", img_size=16, in_chans=1, num_classes=3, embed_dim=16, depth=2)
    clf = torch.nn.Sequential(Normalize((0.5,), (0.25,)), vit).eval()
    x = torch.rand(3, 1, 16, 16)
    groups, grid, reference = reference_partition("digits", (4, 4))
    assert grid == (4, 4) and groups.tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]
    rows = association_rows(clf, x, "digits", "m")
    assert [r["layer"] for r in rows] == [0, 1] and rows[0]["reference"] == reference
    want = association_report(vit_attention_matrix(vit, (x - 0.5) / 0.25, 1), groups)
    assert {k: rows[1][k] for k in want} == pytest.approx(want)
    assert (
        association_rows(torch.nn.Sequential(create_model("resnet_small", num_classes=3, in_chans=1)), x, "digits", "r")
        == []
    )
    # on synthetic data the task's own (here random) partition is the reference
    synth, grid, reference = reference_partition("synthetic:grid=4,partition=random,n=10", (4, 4))
    assert "random partition (4 groups of 4)" in reference and sorted(synth.bincount().tolist()) == [4, 4, 4, 4]


def test_checkpoint_is_loaded_instead_of_training(study, tmp_path):
    ckpt = study.out / "runs" / "vit_micro_patch4" / "seed0" / "last.pt"
    res = run_study(tiny(tmp_path, models=["vit_micro_patch4"], checkpoints={"vit_micro_patch4": str(ckpt)}))
    assert not (tmp_path / "runs").exists()
    assert res.comparison[0]["source"] == "checkpoint"
    assert res.comparison[0]["clean_acc1"] == study.comparison[1]["clean_acc1"]


@pytest.mark.parametrize(
    "values, match",
    [
        ({"models": ["vit_micro_patch5"]}, "vit_micro_patch4"),
        ({"modles": []}, "models"),
        ({"train": {"model": "x"}}, "must not set model"),
        ({"train": {"epochs": 0}}, "epochs must be positive"),
        ({"sensitivity": {"repeat": 2}}, "repeats"),
        ({"sensitivity": {"repeats": 1.5}}, "sensitivity.repeats must be an int"),
        ({"checkpoints": {"resnet18": "x.pt"}}, "not in models"),
        ({"workers": 0}, "workers must be >= 1"),
        ({"claim_grids": [16]}, "claim_grids: 16x16 is not among the sweep's shuffle and mask grids"),
        ({"claim_grids": [8], "sensitivity": {"mask_grids": [2, 4]}}, "not among the sweep's mask grids"),
        ({"executor": "slurm"}, "executor must be local or ray"),
        ({"address": "auto"}, "it needs executor ray"),
        ({"executor": "ray", "train": {"device": "cuda:1"}}, "train.device must be auto, cpu or cuda"),
    ],
)
def test_bad_config_is_explained(values, match):
    with pytest.raises((KeyError, ValueError), match=match):
        StudyConfig.from_dict(values)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_parses(path):
    """Study recipes load as StudyConfig, training recipes as TrainConfig."""
    from spatialvit.train.config import TrainConfig

    if path.name.startswith(("digits_micro", "imagenet_rmt_", "imagenet_sdt_")):  # one model: `train --config`
        TrainConfig.from_yaml(path)
    else:
        assert StudyConfig.from_yaml(path).models


def test_the_digits_recipe_is_the_embedded_default():
    assert StudyConfig.from_yaml(ROOT / "configs" / "study_digits.yaml") == StudyConfig()


def test_several_seeds_give_student_t_intervals_paired_differences_and_claims(tmp_path):
    from scipy import stats

    cfg = tiny(tmp_path, models=["resnet_small", "vit_micro_patch4"], seeds=[0, 1, 2])
    res = run_study(cfg)
    per_seed = res.per_seed
    assert sorted((r["model"], r["seed"]) for r in per_seed) == sorted(
        (m, s) for m in ["resnet_small", "vit_micro_patch4"] for s in [0, 1, 2]
    )
    for row in res.comparison:
        values = [r["clean_acc1"] for r in per_seed if r["model"] == row["model"]]
        mean = sum(values) / 3
        half = stats.t.ppf(0.975, 2) * stats.tstd(values) / 3**0.5
        assert row["seeds"] == 3 and row["clean_acc1"] == pytest.approx(mean)
        assert row["clean_acc1_ci"] == pytest.approx(half)
    for model in ["resnet_small", "vit_micro_patch4"]:
        for seed in [0, 1, 2]:
            assert (tmp_path / "runs" / model / f"seed{seed}" / "last.pt").is_file()
    diff = next(d for d in res.differences if d["model"] == "resnet_small" and d["reference"] == "vit_micro_patch4")
    per = {r["seed"]: r for r in per_seed}
    paired = [
        next(r for r in per_seed if r["model"] == "resnet_small" and r["seed"] == s)["ssi_shuffle"]
        - next(r for r in per_seed if r["model"] == "vit_micro_patch4" and r["seed"] == s)["ssi_shuffle"]
        for s in [0, 1, 2]
    ]
    assert per and diff["ssi_shuffle_diff"] == pytest.approx(sum(paired) / 3)
    claims = {c["id"]: c for c in res.claims}
    assert list(claims) == ["a@4x4", "a@2x2", "b@4x4", "b@2x2"]  # only the CNN and the plain ViT are in this study
    invalid = derive_tables(per_seed, cfg.models, cfg.claim_grid_labels)[3]
    for c in claims.values():
        column = c["measure"].split(":")[0]
        by_model = {m: {r["seed"] for r in per_seed if r["model"] == m and r[column] is not None} for m in cfg.models}
        assert c["n"] == len(by_model["resnet_small"] & by_model["vit_micro_patch4"])  # seeds with both measured
        if invalid:  # a 1-epoch model may not be above chance: then its claims are not valid, not decided
            assert c["verdict"].startswith(NOT_VALID) and c["p"] is None
        else:
            assert (c["verdict"] in CONCLUSIVE) == (c["p_holm"] <= 0.05)
    html = (tmp_path / "report.html").read_text()
    assert "3 seeds (0, 1, 2)" in html and " ± " in html and "## Claims" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("width", [1280, 1400])
def test_the_study_report_fits_the_window(study, width):
    """The real report.html (every table, the plots) in headless Chromium: nothing wider than the window; at 1400 px
    every table fits (no box scrolls sideways either); the Markdown is rendered, none of it shown raw."""
    from html_layout import find_chromium, layout_facts

    page = (study.out / "report.html").read_text()
    assert "<strong>higher means more sensitive" in page and "**" not in page and "<h2>Comparison</h2>" in page
    if find_chromium() is None:
        pytest.skip("chromium not installed (Debian package `chromium`): report.html layout unchecked")
    facts = layout_facts(study.out / "report.html", width, 900)
    assert facts["overflowing"] == [] and facts["scrollWidth"] <= facts["clientWidth"], facts
    if width >= 1400:
        assert facts["scrollers"] == [], facts


@pytest.mark.parametrize("folder", sorted((ROOT / "docs" / "data").glob("study_*")), ids=lambda p: p.name)
def test_the_docs_numbers_are_re_derived_from_the_committed_per_seed_tables(folder):
    """Every study a results doc quotes keeps its per-seed rows in docs/data/; the comparison and the claims
    (intervals, p-values, Holm, verdicts, seeds for power) are re-derived from them exactly."""
    import subprocess
    import sys

    script = ROOT / "benchmarks" / "study_tables.py"
    done = subprocess.run([sys.executable, str(script), str(folder), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "re-derived exactly" in done.stdout and "Holm p" in done.stdout


def test_the_budget_replay_gives_back_the_adaptive_study_it_replays():
    """benchmarks/budget_replay.py at the study's own budget plans the rounds the study ran (same runs, same order)
    and ends with its verdicts; at a smaller budget it stops earlier, never with more conclusive claims."""
    import importlib.util

    from spatialvit.study.adaptive import Ledger

    spec = importlib.util.spec_from_file_location("budget_replay", ROOT / "benchmarks" / "budget_replay.py")
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    folder = ROOT / "docs" / "data" / "study_fashion_mnist"
    ledger = Ledger.load(folder)
    own = StudyConfig.from_yaml(folder / "study_config.yaml").budget
    rounds, claims, _, _ = replay.replay(folder, own)
    ran = [", ".join(f"{m} {s}" for m, s in r.jobs) for r in ledger.rounds[1:]]
    assert [r["next"] for r in rounds[:-1]] == ran
    final = ledger.rounds[-1].state
    assert {c["id"]: [c["n"], c["verdict"]] for c in claims} == final
    smaller, _, stop, _ = replay.replay(folder, "150m")
    assert own != "150m" and len(smaller) < len(rounds) and "budget" in stop
    assert smaller[-1]["conclusive"] <= rounds[-1]["conclusive"]
