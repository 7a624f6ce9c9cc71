"""``spatialvit generate train|sample|evaluate`` end to end on a tiny run (seconds)."""

import json

import pytest
import torch

from spatialvit.cli import main
from spatialvit.data import load_dataset
from spatialvit.generation import load_denoiser_checkpoint
from spatialvit.models import create_model
from spatialvit.train import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


TRAIN = ["generate", "train", "--img-size", "8", "--patch-size", "2", "--batch-size", "8", "--per-class", "2"]
FAST = ["--sample-steps", "2", "--no-progress"]


def test_train_sample_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--steps", "3", "--checkpoint-every", "2", "--out", str(out), *FAST]) == 0
    for name in ("denoiser.pt", "samples.png", "losses.csv", "losses.json", "losses.md"):
        assert (out / name).is_file(), name
    assert load_denoiser_checkpoint(out / "denoiser.pt")["step"] == 3

    # resume to a longer run
    assert main([*TRAIN, "--steps", "5", "--checkpoint-every", "2", "--out", str(out), "--resume", *FAST]) == 0
    ckpt = load_denoiser_checkpoint(out / "denoiser.pt")
    assert ckpt["step"] == 5 and len(ckpt["losses"]) == 5

    png, pt = tmp_path / "s.png", tmp_path / "s.pt"
    args = ["generate", "sample", str(out / "denoiser.pt"), "--out", str(png), "--save-tensor", str(pt), *FAST]
    assert main(args) == 0
    saved = torch.load(pt, weights_only=True)
    assert saved["images"].shape == (80, 1, 8, 8) and png.is_file()
    assert main([*args, "--out", str(tmp_path / "t.png"), "--overwrite"]) == 0
    again = torch.load(pt, weights_only=True)
    assert torch.equal(saved["images"], again["images"])  # same seed, same samples

    info = load_dataset("digits", img_size=8).info
    clf = create_model("vit_micro_patch4", img_size=8, in_chans=1, num_classes=10)
    kwargs = {"img_size": 8, "in_chans": 1, "num_classes": 10}
    state = {"model_name": "vit_micro_patch4", "model_kwargs": kwargs, "model": clf.state_dict()}
    save_checkpoint(tmp_path / "clf.pt", {**state, "data_info": info.to_dict()})
    ev = tmp_path / "eval"
    args = ["generate", "evaluate", str(out / "denoiser.pt"), "--classifier", str(tmp_path / "clf.pt")]
    assert main([*args, "--per-class", "5", "--out", str(ev), *FAST]) == 0
    rows = json.loads((ev / "generation_metrics.json").read_text())
    assert [r["run"] for r in rows] == ["real digits test split", "run"]
    assert rows[1]["mixer"] == "softmax" and rows[1]["samples"] == 50 and rows[1]["train_steps"] == 5
    assert all(0 <= r[m] <= 1 for r in rows for m in ("precision", "recall", "accuracy")) and rows[1]["fid"] > 0
    assert (ev / "run_samples.png").is_file() and "not Inception-FID" in capsys.readouterr().out


def test_clean_errors(tmp_path, capsys):
    assert main([*TRAIN, "--steps", "1", "--mixer", "sofmax", "--out", str(tmp_path), *FAST]) == 2
    assert "softmax" in capsys.readouterr().err
    assert main(["generate", "sample", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    same = [str(tmp_path / "run" / "denoiser.pt")] * 2
    assert main(["generate", "evaluate", *same, "--classifier", "c.pt", "--out", str(tmp_path)]) == 2
    assert "repeat" in capsys.readouterr().err


def test_mixer_family_names_sample_into_the_run_folder_and_named_losses(tmp_path, capsys, caplog, monkeypatch):
    from spatialvit.cli.generate import mixer_of

    assert [mixer_of(n) for n in ("sdt", "vit_sdt", "rmt", "posattn", "convqkv", "vit", "cag")] == [
        "cag", "cag", "decay", "positional", "conv_qkv", "softmax", "cag"
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"--mixer 'sdx' is neither a token mixer .* nor a model family"):
        mixer_of("sdx")
    out = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert (
            main([*TRAIN, "--mixer", "sdt", "--steps", "2", "--checkpoint-every", "2", "--out", str(out), *FAST]) == 0
        )
    printed = capsys.readouterr().out
    assert load_denoiser_checkpoint(out / "denoiser.pt")["model_kwargs"]["attn_layer"] == "cag"
    assert "mixer cag (sdt)" in printed and "mean training loss of the last 2 steps" in printed
    assert any("mean loss of the last 2 steps" in r.getMessage() for r in caplog.records)
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["generate", "sample", str(out / "denoiser.pt"), "--per-class", "1", *FAST]) == 0
    assert (out / "sample_seed0.png").is_file() and not list(here.iterdir())  # nothing in the current folder
