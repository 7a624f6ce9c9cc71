"""Throughput/memory helpers and `spatialvit bench models` (tiny sizes: checks the plumbing, not the speed)."""

import json

import pytest
import torch

from spatialvit.bench import bench_models, family_models, peak_mib, time_call
from spatialvit.cli import main


def test_peak_mib_sees_a_known_allocation():
    def fn():
        a = torch.ones(1024, 1024)  # 4 MiB
        b = a * 2  # another 4 MiB while a is alive
        return float(b[0, 0])

    assert 7.9 <= peak_mib(fn) <= 8.5


def test_time_call_is_a_median_of_positive_times():
    calls = []
    assert time_call(lambda: calls.append(1), repeats=3, warmup=2) >= 0
    assert len(calls) == 5
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=0)


def test_family_models_starts_with_the_plain_vit():
    names = family_models("micro", 4)
    assert names[0] == "vit_micro_patch4"
    assert {"vit_convqkv_micro_patch4", "vit_posattn_micro_patch4", "vit_sdt_micro_patch4"} <= set(names)
    with pytest.raises(ValueError, match="size must be"):
        family_models("huge", 4)


def test_bench_models_rows_and_ratios():
    rows = bench_models(
        ["vit_micro_patch4", "vit_rmt_micro_patch4"],
        img_size=8,
        batch_size=2,
        repeats=1,
        timm_reference=False,
        progress=False,
    )
    assert [r["model"] for r in rows] == ["vit_micro_patch4", "vit_rmt_micro_patch4"]
    assert rows[0]["x_base_train"] == rows[0]["x_base_infer"] == 1.0
    for r in rows:
        assert r["params_m"] > 0 and r["train_img_s"] > 0 and r["infer_img_s"] > 0
        assert r["train_peak_mib"] > 0 and r["infer_peak_mib"] > 0
    with pytest.raises(ValueError, match="dtype"):
        bench_models(["vit_micro_patch4"], dtype="fp8")


def test_cli_bench_models(tmp_path, capsys):
    args = ["bench", "models", "--img-size", "8", "--batch-size", "2", "--repeats", "1", "--no-timm", "--no-progress"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "bench_models.json").read_text())
    assert [r["model"] for r in rows] == family_models("micro", 4)
    assert "x_base_train" in capsys.readouterr().out


def test_cli_study_help_and_flags(capsys):
    from spatialvit.cli import build_parser
    from spatialvit.cli.study import build_config

    with pytest.raises(SystemExit):
        main(["study", "--help"])
    assert "report.html" in capsys.readouterr().out
    args = build_parser().parse_args(
        [
            "study",
            "--models",
            "resnet_small, vit_micro_patch4",
            "--epochs",
            "2",
            "--checkpoint",
            "resnet_small=a.pt",
            "--out",
            "x",
        ]
    )
    config = build_config(args)
    assert config.models == ["resnet_small", "vit_micro_patch4"] and config.train["epochs"] == 2
    assert config.checkpoints == {"resnet_small": "a.pt"} and config.out == "x"
    bad = build_parser().parse_args(["study", "--checkpoint", "resnet_small"])
    with pytest.raises(ValueError, match="MODEL=PATH"):
        build_config(bad)
