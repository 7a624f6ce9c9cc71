"""No silently wrong numbers: a checkpoint is scored on its own data unless asked otherwise, reports state every
run's real training budget, the saved study config is the one that ran, evaluations are named and cleared with
their run, plots keep to the possible range, and the quick-study flags and hints a new user needs."""

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from tests.test_cli import TINY_ARGS
from tests.test_study import tiny

from spatialvit.cli import build_parser, main
from spatialvit.cli import study as study_cli
from spatialvit.data import load_dataset
from spatialvit.models import create_model
from spatialvit.study import StudyConfig, run_study
from spatialvit.study.provenance import failed_start
from spatialvit.train import TrainConfig, load_checkpoint, save_checkpoint
from spatialvit.train.checkpoint import ACCURACY_KEYS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fashion_checkpoint(tmp_path_factory) -> Path:
    """A 16x16 micro ViT checkpoint whose training config says Fashion-MNIST, 2 of 12 epochs, train_limit 500
    (untrained weights: only its provenance matters here)."""
    info = load_dataset("digits", "test", 16).info.to_dict() | {"name": "fashion_mnist"}
    kwargs = {"embed_dim": 16, "depth": 1, "num_heads": 2, "num_classes": 10, "in_chans": 1, "img_size": [16, 16]}
    config = TrainConfig(model="vit_micro_patch4", data="fashion_mnist", img_size=16, epochs=12, train_limit=500)
    path = tmp_path_factory.mktemp("fashion") / "last.pt"
    model = create_model("vit_micro_patch4", **kwargs)
    state = {"model_name": "vit_micro_patch4", "model_kwargs": kwargs, "model": model.state_dict(), "data_info": info}
    metrics = [{"epoch": k, "test_top1": 0.59, "epoch_time_s": 1.0, "img_per_s": 100.0} for k in (1, 2)]
    save_checkpoint(path, state | {"epoch": 2, "config": config.to_dict(), "metrics": metrics})
    return path


def test_a_checkpoint_of_other_data_is_refused_by_study_eval_and_sensitivity(fashion_checkpoint, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"trained on 'fashion_mnist', --data is 'digits'.*--other-data"):
        run_study(
            tiny(tmp_path / "s", models=["vit_micro_patch4"], checkpoints={"vit_micro_patch4": str(fashion_checkpoint)})
        )
    assert not (tmp_path / "s").exists()  # refused before writing anything
    for argv in (
        ["eval", "--checkpoint", str(fashion_checkpoint), "--data", "digits", "--out", str(tmp_path / "e")],
        ["sensitivity", "--checkpoint", str(fashion_checkpoint), "--data", "digits", "--img-size", "16",
         "--out", str(tmp_path / "x")],
    ):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "'fashion_mnist'" in err and "'digits'" in err and "--other-data" in err
    # a size other than the one it was trained at is named with the size to use
    with pytest.raises(ValueError, match=r"trained at 16x16, the data here is 32x32: .*use --img-size 16"):
        cfg = tiny(tmp_path / "s", models=["vit_micro_patch4"], img_size=32, data="digits")
        run_study(StudyConfig.from_dict({"checkpoints": {"vit_micro_patch4": str(fashion_checkpoint)}}, cfg))


def test_a_study_with_a_checkpoint_uses_its_data_unless_told(fashion_checkpoint):
    args = build_parser().parse_args(["study", "--checkpoint", f"vit_micro_patch4={fashion_checkpoint}",
                                      "--models", "vit_micro_patch4"])  # fmt: skip
    config = study_cli.build_config(args)
    assert (config.data, config.img_size) == ("fashion_mnist", 16)
    args = build_parser().parse_args(["study", "--checkpoint", f"vit_micro_patch4={fashion_checkpoint}",
                                      "--models", "vit_micro_patch4", "--data", "digits"])  # fmt: skip
    assert study_cli.build_config(args).data == "digits"  # named data is kept (and then refused by the run)


def test_other_data_on_purpose_the_report_says_so_and_states_every_budget(fashion_checkpoint, tmp_path):
    """One loaded checkpoint scored on other data, one model trained here on 100 images: the report header gives
    each run's real budget (2 of 12 epochs, train_limit) and says which model was scored on other data; the saved
    study_config.yaml is the configuration that ran, without the placeholder keys of train."""
    cfg = tiny(tmp_path, models=["resnet_small", "vit_micro_patch4"], img_size=16, other_data=True,
               checkpoints={"vit_micro_patch4": str(fashion_checkpoint)})  # fmt: skip
    cfg = StudyConfig.from_dict({"train": {"train_limit": 100}}, cfg)
    run_study(cfg)
    head = (tmp_path / "report.md").read_text().split("\n## ")[0]
    assert (
        f"loaded from {fashion_checkpoint}, trained for 2 of 12 epochs (stopped early) on a random subset of 500 "
        "training images (train_limit) of fashion_mnist at 16x16; scored here on digits (other_data" in head
    )
    assert (
        "`resnet_small`: trained for 1 epoch on a random subset of 100 training images (train_limit) of digits "
        "at 16x16" in head
    )
    # the loaded model's test top-1 (its own evaluation, on Fashion-MNIST) is not shown as a digits accuracy
    rows = {r["model"]: r for r in json.loads((tmp_path / "comparison_seeds.json").read_text())}
    assert rows["vit_micro_patch4"]["test_acc1"] is None and 0 <= rows["resnet_small"]["test_acc1"] <= 1
    saved = yaml.safe_load((tmp_path / "study_config.yaml").read_text())
    assert not {"model", "data", "img_size", "model_kwargs", "seed", "out", "resume"} & set(saved["train"])
    assert saved["train"]["train_limit"] == 100 and saved["data"] == "digits" and saved["other_data"] is True
    assert StudyConfig.from_dict(saved) == cfg  # it reads back as the configuration that ran


def test_a_study_that_failed_at_its_first_step_does_not_block_a_rerun(tmp_path):
    bad = tiny(tmp_path, models=["vit_micro_patch4"], model_kwargs={"vit_micro_patch4": {"no_such_arg": 1}})
    with pytest.raises(ValueError, match="does not take these arguments"):
        run_study(bad)
    assert (tmp_path / "study_config.yaml").is_file() and failed_start(tmp_path)
    good = tiny(tmp_path, models=["vit_micro_patch4"], img_size=8, sensitivity={"shuffle_grids": [2], "mask_ratios": [],
                "repeats": 1, "limit": 16}, claim_grids=[2])  # fmt: skip
    assert run_study(good).per_seed  # not refused as "already holds the output of an earlier run"
    assert not failed_start(tmp_path)  # a study with a finished run is protected again


def test_train_overwrite_clears_evaluations_and_eval_names_ema(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--ema-decay", "0.9", "--out", str(run)]) == 0
    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--no-progress"]) == 0
    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--ema", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "the model EMA of" in out and "| EMA |" in out and "the raw weights of" in out
    assert json.loads((run / "eval_ema.json").read_text())[0]["weights"] == "EMA"
    assert json.loads((run / "eval.json").read_text())[0]["weights"] == "raw"
    (run / "eval_ema").mkdir()  # a folder of evaluations (--out run/eval_ema)
    (run / "eval_ema" / "eval.csv").write_text("old")
    assert main(["train", *TINY_ARGS, "--out", str(run), "--overwrite"]) == 0
    left = sorted(p.name for p in run.iterdir())
    assert not [name for name in left if name.startswith("eval")], left


def test_quick_study_flags_and_the_misplaced_key_hint(tmp_path, capsys):
    args = build_parser().parse_args(
        ["study", "--train-limit", "100", "--sweep-limit", "50", "--repeats", "1", "--epochs", "1"]
    )
    config = study_cli.build_config(args)
    assert config.train.train_limit == 100 and config.sensitivity.limit == 50 and config.sensitivity.repeats == 1
    assert config.train.warmup_epochs == 0.5  # a warm-up, then a decay: never the whole schedule
    yml = tmp_path / "study.yaml"
    yml.write_text("models: [vit_micro_patch4]\nepochs: 1\n")
    assert main(["study", "--config", str(yml), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "'epochs' is a key of train: write it under train: (train: {epochs: ...})" in err
    assert not (tmp_path / "x").exists()


def test_resume_with_a_changed_setting_names_the_ways_on(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--out", str(run)]) == 0
    assert main(["train", *TINY_ARGS, "--epochs", "2", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "epochs: 1 in the checkpoint, 2 now" in err and "--overwrite" in err and "--out" in err


def test_warmup_over_the_whole_schedule_is_warned_and_bad_sizes_name_valid_ones(tmp_path, capsys, caplog):
    from spatialvit.train.loop import schedule_warning

    assert "covers the whole 1 epoch schedule" in schedule_warning(TrainConfig(epochs=1, warmup_epochs=1.0))
    argv = [a for a in TINY_ARGS if a != "0.2"]
    argv[argv.index("--warmup-epochs")] = "--warmup-epochs=1"
    with caplog.at_level("WARNING"):
        assert main(["train", *argv, "--out", str(tmp_path / "w")]) == 0
    assert any("never decays" in r.message for r in caplog.records)
    assert main(["train", "--model", "vit_micro_patch4", "--img-size", "30", "--out", str(tmp_path / "s")]) == 2
    assert "sizes near 30 that work: 24, 28, 32, 36" in capsys.readouterr().err


def test_models_flops_reports_progress(capsys):
    assert main(["models", "vit_micro_patch4", "--flops"]) == 0
    captured = capsys.readouterr()
    assert "measuring the GMACs of 1 model " in captured.err and "1/1 models measured" in captured.err
    assert "GMACs" in captured.out


def test_accuracies_are_fractions_everywhere_and_older_percent_checkpoints_are_converted(tmp_path, capsys, caplog):
    """One unit: train's console line, metrics table and checkpoint, eval's table and the study all give accuracy as
    a fraction in [0, 1]; a checkpoint written with percentages (no ``accuracy_unit``) reads back as fractions."""
    run = tmp_path / "run"
    caplog.set_level(logging.INFO)
    assert main(["train", *TINY_ARGS, "--out", str(run)]) == 0
    logged = json.loads((run / "metrics.json").read_text())[-1]
    assert 0 <= logged["train_acc"] <= 1 and 0 <= logged["test_top1"] <= logged["test_top5"] <= 1
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/"))
    assert f"top-1 {logged['test_top1']:.4f}" in line and "%" not in line
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["accuracy_unit"] == "fraction"
    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "as fractions" in out and f"| {logged['test_top1']:.4f} |" in out
    # an older checkpoint: the same metrics in percent, without the unit key
    old = {k: v for k, v in ckpt.items() if k != "accuracy_unit"}
    old["metrics"] = [{k: v * 100 if k in ACCURACY_KEYS and v is not None else v for k, v in row.items()}
                      for row in ckpt["metrics"]]  # fmt: skip
    torch.save(old, tmp_path / "old.pt")
    back = load_checkpoint(tmp_path / "old.pt")["metrics"][-1]
    assert back["test_top1"] == pytest.approx(logged["test_top1"]) and back["train_acc"] == pytest.approx(
        logged["train_acc"]
    )
