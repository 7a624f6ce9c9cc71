"""Throughput/memory helpers and `spatialvit bench models` (tiny sizes: checks the plumbing, not the speed)."""

import json
from dataclasses import replace

import pytest
import torch

from spatialvit.bench import bench_models, family_models, peak_mib, time_call
from spatialvit.bench.config import BenchConfig
from spatialvit.cli import main


def test_peak_mib_sees_a_known_allocation():
    def fn():
        a = torch.ones(1024, 1024)  # 4 MiB
        b = a * 2  # another 4 MiB while a is alive
        return float(b[0, 0])

    assert 8.0 <= peak_mib(fn) <= 8.01


def test_peak_mib_reports_the_max_of_sequential_allocations_not_their_sum():
    def fn():
        for mib in (1, 3, 2):
            t = torch.ones(mib * 2**18)  # mib MiB, freed before the next one
            del t

    assert 3.0 <= peak_mib(fn) <= 3.01
    assert peak_mib(lambda: None) == 0.0


def _linear_stack(width: int = 64, depth: int = 8) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(depth)])


def test_peak_mib_of_an_inference_is_two_activations_of_a_linear_stack():
    net = _linear_stack(width=256)
    x = torch.randn(1024, 256)  # each activation: 1 MiB

    @torch.no_grad()
    def infer():
        net(x)

    assert 2.0 <= peak_mib(infer) <= 2.01  # a layer's input and output are alive together, the earlier ones freed


def test_peak_mib_of_a_training_step_is_known_and_scales_with_the_batch():
    net = _linear_stack()  # 8 x Linear(64, 64)
    grad_mib = 64 * 64 * 4 / 2**20  # the last layer's weight gradient

    def peak(batch: int) -> float:
        x = torch.randn(batch, 64)

        def step():
            net(x).sum().backward()
            net.zero_grad(set_to_none=True)

        return peak_mib(step)

    small, large = peak(1024), peak(4096)  # one activation: 0.25 MiB, 1 MiB
    # at the last layer's backward: the 7 saved inputs of layers 2-8, sum's expanded gradient copied to a dense buffer
    # by the matmul (scratch freed inside that op, which the old per-op replay missed: it said 8 activations), the
    # gradient of the layer's input and its weight gradient
    assert 9 * 1.0 + grad_mib <= large <= 9 * 1.0 + grad_mib + 0.01
    assert 0.95 * 4 <= large / small <= 4.0


def _vit_train_peak(name: str, batch: int) -> tuple[float, float]:
    """Parameters (MiB of float32) and peak MiB of a training step (after a first step, like ``bench_models``)."""
    from spatialvit.models import create_model

    torch.manual_seed(0)
    model = create_model(name, img_size=32, in_chans=3, num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.rand(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def step():
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    return sum(p.numel() for p in model.parameters()) * 4 / 2**20, peak_mib(step)


def test_peak_mib_sees_the_larger_gradients_of_a_bigger_model():
    # at batch 2 the gradients and AdamW's update buffers set the peak, and conv-Q/K/V has 3x the parameters; at
    # batch 64 the saved activations, which are the same in the two models, set it and the peaks are equal
    plain_mib, plain_peak = _vit_train_peak("vit_micro_patch4", 2)
    conv_mib, conv_peak = _vit_train_peak("vit_convqkv_micro_patch4", 2)
    assert conv_mib > 3 * plain_mib
    assert plain_peak >= plain_mib and conv_peak - plain_peak >= conv_mib - plain_mib


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
    config = BenchConfig(img_size=8, batch_size=2, repeats=1, timm=False, progress=False)
    rows = bench_models(["vit_micro_patch4", "vit_rmt_micro_patch4"], config)
    assert [r["model"] for r in rows] == ["vit_micro_patch4", "vit_rmt_micro_patch4"]
    assert rows[0]["x_base_train"] == rows[0]["x_base_infer"] == 1.0
    for r in rows:
        assert r["params_m"] > 0 and r["train_img_s"] > 0 and r["infer_img_s"] > 0
        assert r["train_peak_mib"] > 0 and r["infer_peak_mib"] > 0
    with pytest.raises(ValueError, match="dtype"):
        bench_models(["vit_micro_patch4"], replace(config, dtype="fp8"))


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
            "--data",
            "digits",
            "--out",
            "x",
        ]
    )
    config = build_config(args)
    assert config.models == ["resnet_small", "vit_micro_patch4"] and config.train.epochs == 2
    assert config.checkpoints == {"resnet_small": "a.pt"} and config.out == "x"
    bad = build_parser().parse_args(["study", "--checkpoint", "resnet_small"])
    with pytest.raises(ValueError, match="MODEL=PATH"):
        build_config(bad)
