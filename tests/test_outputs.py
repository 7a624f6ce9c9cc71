"""No command overwrites an earlier run or result unasked: a second run on the same output exits with an error and
leaves every file byte-identical; ``--resume`` continues, ``--overwrite`` starts again."""

from pathlib import Path

import pytest
from tests.test_cli import TINY_ARGS

from spatialvit.cli import main
from spatialvit.runtime import OutputExistsError, claim_outputs, describe_changes
from spatialvit.train import TrainConfig, fit, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused_twice(argv: list[str], out: Path, capsys) -> str:
    """Run ``argv`` once (it must succeed), then again: the second run must fail and change nothing under ``out``."""
    assert main(argv) == 0
    before = snapshot(out)
    assert before
    capsys.readouterr()
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert snapshot(out) == before
    assert "already holds the output of an earlier run" in err and "--overwrite" in err and "--out" in err
    return err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clf")
    args = {"model_kwargs": {"embed_dim": 32, "depth": 2, "num_heads": 2}, "img_size": 8, "epochs": 1}
    cfg = TrainConfig.from_dict({**args, "batch_size": 256, "out": str(out), "progress": False, "device": "cpu"})
    return fit(cfg).last_checkpoint


def test_claim_outputs_refuses_then_overwrites(tmp_path):
    assert claim_outputs(tmp_path / "missing", ["*.csv"]) == []
    (tmp_path / "a.csv").write_text("x")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "b.pt").write_text("y")
    (tmp_path / "keep.txt").write_text("z")
    with pytest.raises(OutputExistsError, match=r"a\.csv.*continue it with --resume.*--overwrite.*--out"):
        claim_outputs(tmp_path, ["*.csv", "runs"], resume_flag="--resume")
    assert (tmp_path / "a.csv").read_text() == "x"
    removed = claim_outputs(tmp_path, ["*.csv", "runs"], overwrite=True)
    assert removed == [tmp_path / "a.csv", tmp_path / "runs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_describe_changes_lists_only_the_differing_keys():
    text = describe_changes({"lr": 0.1, "steps": 5, "seed": 0}, {"lr": 0.2, "steps": 9, "seed": 0}, ignore=["steps"])
    assert text == "lr: 0.1 in the checkpoint, 0.2 now"


def test_train(tmp_path, capsys):
    out = tmp_path / "run"
    err = refused_twice(["train", *TINY_ARGS, "--out", str(out)], out, capsys)
    assert "--resume" in err
    longer = [*TINY_ARGS, "--epochs", "2", "--out", str(out)]
    assert main(["train", *longer, "--stop-after", "1", "--overwrite"]) == 0
    assert main(["train", *longer, "--resume"]) == 0
    assert [r["epoch"] for r in load_checkpoint(out / "last.pt")["metrics"]] == [1, 2]


def test_train_resume_and_overwrite_exclude_each_other(tmp_path, capsys):
    assert main(["train", *TINY_ARGS, "--out", str(tmp_path), "--resume", "--overwrite"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_eval(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    refused_twice(["eval", "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress"], out, capsys)
    assert main(["eval", "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress", "--overwrite"]) == 0


def test_sensitivity(checkpoint, tmp_path, capsys):
    out = tmp_path / "sens"
    argv = ["sensitivity", "--checkpoint", str(checkpoint), "--limit", "16", "--shuffle-grids", "2"]
    argv += ["--mask-ratios", "0.5", "--repeats", "1", "--examples", "1", "--no-progress", "--out", str(out)]
    refused_twice(argv, out, capsys)
    page = (out / "report.html").read_text()  # a report like the study's: data, budgets, SSI, plots
    assert "<h2>Spatial Sensitivity Index</h2>" in page and "1 epoch on every training image of digits" in page
    assert "<strong>higher means" in page and "data:image/png;base64," in page and "**" not in page


def test_generate_train_sample_evaluate(checkpoint, tmp_path, capsys):
    out = tmp_path / "gen"
    argv = ["generate", "train", "--img-size", "8", "--patch-size", "2", "--batch-size", "8", "--per-class", "1"]
    argv += ["--steps", "2", "--sample-steps", "1", "--no-progress", "--out", str(out)]
    err = refused_twice(argv, out, capsys)
    assert "--resume" in err
    assert main([*argv, "--resume", "--steps", "3"]) == 0
    png = tmp_path / "samples" / "s.png"
    sample = ["generate", "sample", str(out / "denoiser.pt"), "--per-class", "1", "--sample-steps", "1"]
    refused_twice([*sample, "--no-progress", "--out", str(png)], png.parent, capsys)
    ev = tmp_path / "ev"
    evaluate = ["generate", "evaluate", str(out / "denoiser.pt"), "--classifier", str(checkpoint), "--per-class", "2"]
    refused_twice([*evaluate, "--sample-steps", "1", "--no-progress", "--out", str(ev)], ev, capsys)


def test_synth_train_associate_transfer(tmp_path, capsys):
    common = ["--data", "grid=4,d=16,group=2,patch_pixels=2", "--n-train", "200", "--n-test", "50", "--no-progress"]
    out = tmp_path / "t"
    refused_twice(["synth", "train", *common, "--steps", "3", "--eval-every", "3", "--out", str(out)], out, capsys)
    assoc = tmp_path / "a"
    refused_twice(["synth", "associate", str(out / "model.pt"), "--out", str(assoc)], assoc, capsys)
    transfer = tmp_path / "x"
    argv = ["synth", "transfer", *common, "--steps", "2", "--finetune-steps", "2", "--ns", "4", "--seeds", "1"]
    refused_twice([*argv, "--out", str(transfer)], transfer, capsys)


def test_study(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["study", "--models", "vit_micro_patch4", "--epochs", "1", "--img-size", "8", "--no-progress"]
    argv += ["--seeds", "0", "--out", str(out)]
    err = refused_twice(argv, out, capsys)
    assert "--resume" in err
    mtime = (out / "runs" / "vit_micro_patch4" / "seed0" / "last.pt").stat().st_mtime_ns
    assert main([*argv, "--resume"]) == 0  # reuses the finished run
    assert (out / "runs" / "vit_micro_patch4" / "seed0" / "last.pt").stat().st_mtime_ns == mtime
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "runs" / "vit_micro_patch4" / "seed0" / "last.pt").stat().st_mtime_ns != mtime


def test_bench_models(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "models", "--batch-size", "2", "--repeats", "1", "--no-timm", "--no-progress", "--out", str(out)]
    refused_twice(argv, out, capsys)


def test_checkpoint_of_a_resumed_run_is_not_overwritten_by_a_refused_one(tmp_path):
    state = {"model_name": "vit_micro_patch4", "model_kwargs": {}, "model": {}, "data_info": {}}
    path = save_checkpoint(tmp_path / "last.pt", state)
    before = path.read_bytes()
    cfg = TrainConfig.from_dict({"out": str(tmp_path), "progress": False, "device": "cpu", "img_size": 8})
    with pytest.raises(OutputExistsError):
        fit(cfg)
    assert path.read_bytes() == before
