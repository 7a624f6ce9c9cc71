"""The command line: --help of every command, a tiny `python -m spatialvit train` end to end, eval, and errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spatialvit.cli import COMMANDS, main

TINY_ARGS = [
    "--model", "vit_micro_patch4", "--data", "digits", "--img-size", "8",
    "--model-arg", "embed_dim=32", "--model-arg", "depth=2", "--model-arg", "num_heads=2",
    "--epochs", "1", "--batch-size", "64", "--lr", "3e-3", "--warmup-epochs", "0.2", "--crop-padding", "0",
    "--device", "cpu", "--threads", "1", "--no-progress",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: spatialvit" in capsys.readouterr().out


@pytest.mark.slow
def test_python_m_spatialvit_train_then_eval(tmp_path, capsys):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path("src").resolve()), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "spatialvit", "train", *TINY_ARGS, "--out", str(run)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/1" in proc.stderr and "| final (epoch 1) |" in proc.stdout
    for name in ("config.yaml", "metrics.csv", "summary.csv", "last.pt", "best.pt"):
        assert (run / name).is_file(), name
    header, row = (run / "metrics.csv").read_text().strip().splitlines()
    assert header.split(",")[:7] == ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_top1", "test_top5"]

    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| checkpoint | weights | data |" in out and "| split | loss | top1 | top5 | n |" in out
    top1 = float(row.split(",")[5])
    assert f"| {top1:.4f} |" in out  # eval of the checkpoint reproduces the top-1 logged by training
    assert (run / "eval.csv").is_file()


def test_eval_ema_scores_the_model_ema_and_refuses_a_checkpoint_without_one(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--ema-decay", "0.9", "--ema-warmup", "--out", str(run)]) == 0
    logged = json.loads((run / "metrics.json").read_text())[-1]
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--ema", "--out", str(tmp_path / "ema")]) == 0
    assert f"| {logged['test_top1_ema']:.4f} |" in capsys.readouterr().out
    plain = tmp_path / "plain"
    assert main(["train", *TINY_ARGS, "--out", str(plain)]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(plain / "last.pt"), "--ema", "--out", str(tmp_path / "x")]) == 2
    assert "holds no model EMA" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "vit_mikro_patch4"], "unknown model 'vit_mikro_patch4'"),
        (["train", "--model", "vit_micro_patch16", "--data", "digits"], "registered for 224x224 images"),
        (["train", "--data", "nodata"], "unknown dataset 'nodata'"),
        (["train", "--data", "cifar10:no/such/dir", "--img-size", "32"], "folder no/such/dir not found"),
        (["train", "--config", "missing.yaml"], "config file 'missing.yaml' does not exist"),
        (["train", "--resume", "missing.pt", "--out", "x"], "checkpoint to resume 'missing.pt' does not exist"),
        (["eval", "--checkpoint", "missing.pt"], "checkpoint 'missing.pt' does not exist"),
    ],
)
def test_bad_input_gives_clean_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spatialvit {argv[0]}: error: ") and message in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00garbage", "is corrupt or not a PyTorch checkpoint"),
        (b"PK\x03\x04broken zip", "is corrupt or not a PyTorch checkpoint"),
        (b"root:x:0:0:root:/root:/bin/bash\n", "is not a spatialvit checkpoint (it looks like a text file, starting "),
        (b"", "is not a spatialvit checkpoint (it looks like an empty file;"),
    ],
)
def test_corrupt_checkpoint_error(tmp_path, capsys, content, message):
    bad = tmp_path / "last.pt"
    bad.write_bytes(content)
    assert main(["eval", "--checkpoint", str(bad)]) == 2
    assert message in capsys.readouterr().err
