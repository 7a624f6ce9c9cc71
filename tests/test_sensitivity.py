"""The sensitivity sweep, its results object, plots and CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spatialvit.cli import main
from spatialvit.data import DatasetInfo, Normalize, TensorImageDataset, load_dataset
from spatialvit.models import VisionTransformer, create_model
from spatialvit.probes import Perturbation, compare, make_settings, save_comparison, sensitivity_sweep
from spatialvit.probes.plots import plot_examples, plot_sensitivity
from spatialvit.train import save_checkpoint

MEAN, STD = (0.3,), (0.4,)


def bag_of_patches_vit() -> VisionTransformer:
    """No positional information and mean pooling: provably invariant to shuffles of whole patches."""
    return VisionTransformer(
        img_size=16, patch_size=4, in_chans=1, num_classes=10, embed_dim=32, depth=2, num_heads=2,
        pos_embed="none", global_pool="avg",
    ).eval()  # fmt: skip


def own_label_loader(model: nn.Module, n: int = 96, batch_size: int = 32) -> DataLoader:
    """Random images labelled with the model's own clean predictions (clean accuracy 1)."""
    x = torch.rand(n, 1, 16, 16)
    with torch.no_grad():
        y = model(Normalize(MEAN, STD)(x)).argmax(-1)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def by_setting(result, kind: str) -> dict[str, dict]:
    return {r["grid"] if kind != "mask" else (r["grid"], r["ratio"]): r for r in result.rows() if r["kind"] == kind}


def test_bag_of_patches_vit_is_blind_to_aligned_shuffles_only():
    model = bag_of_patches_vit()
    result = sensitivity_sweep(
        model, own_label_loader(model), normalize=(MEAN, STD), shuffle_grids=(2, 4, 8), mask_ratios=(), repeats=2,
        progress=False,
    )  # fmt: skip
    assert result.clean_acc1 == 1.0
    rows = by_setting(result, "shuffle")
    for grid in ("2x2", "4x4"):  # 8x8- and 4x4-pixel blocks: unions of 4x4 patches
        assert rows[grid]["aligned"] == "yes"
        assert rows[grid]["sensitivity"] == 0.0 and rows[grid]["flip_rate"] == 0.0
        assert rows[grid]["kl"] < 1e-6  # float32 rounding of a different summation order
    assert rows["8x8"]["aligned"] == "no"  # 2x2-pixel blocks cut through patches
    assert rows["8x8"]["sensitivity"] > 0.1 and rows["8x8"]["flip_rate"] > 0.1 and rows["8x8"]["kl"] > 1e-5
    assert result.summary()["ssi_shuffle"] == pytest.approx(rows["8x8"]["sensitivity"] / 3)


def reference_metrics(model, x, y, setting: Perturbation, seed: int, repeats: int, mean, std):
    """Naive per-image loop: top-1, flip rate and KL(clean || perturbed) per repeat, in float64."""
    norm = Normalize(mean, std).double()
    model = model.double()
    out = []
    for r in range(repeats):
        hits = flips = kl = 0.0
        for i in range(len(x)):
            img = x[i : i + 1].double()
            pert = setting.apply(img, setting.seed(seed, r), torch.tensor([i]), mean=torch.tensor(mean),
                                 std=torch.tensor(std), exclude_identity=True)  # fmt: skip
            p = F.log_softmax(model(norm(img)), -1)[0]
            q = F.log_softmax(model(norm(pert)), -1)[0]
            hits += float(q.argmax() == y[i])
            flips += float(q.argmax() != p.argmax())
            kl += float((p.exp() * (p - q)).sum())
        out.append((hits / len(x), flips / len(x), kl / len(x)))
    return out


def test_sweep_metrics_match_a_naive_per_image_loop():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double()
    x = torch.rand(40, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (40,))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    mean, std = (0.5,), (0.25,)
    result = sensitivity_sweep(
        model, loader, normalize=(mean, std), shuffle_grids=(2,), mask_grids=(4,), mask_ratios=(0.5,),
        mask_fill="noise", rotate_grids=(4,), repeats=3, seed=11, progress=False,
    )  # fmt: skip
    with torch.no_grad():
        clean = (model(Normalize(mean, std).double()(x)).argmax(-1) == y).double().mean().item()
    assert result.clean_acc1 == pytest.approx(clean)
    assert result.settings[0].aligned is None  # no patches: "n/a"
    for s in result.settings:
        with torch.no_grad():
            ref = reference_metrics(model, x, y, s.perturbation, 11, 3, mean, std)
        assert s.acc1 == pytest.approx([r[0] for r in ref])
        assert s.flip == pytest.approx([r[1] for r in ref])
        assert s.kl == pytest.approx([r[2] for r in ref], rel=1e-4, abs=1e-7)
    row = next(r for r in result.rows() if r["kind"] == "mask")
    accs = result.settings[1].acc1
    mean_acc = sum(accs) / 3
    se = math.sqrt(sum((a - mean_acc) ** 2 for a in accs) / 2 / 3)
    assert row["acc1"] == pytest.approx(mean_acc) and row["acc1_se"] == pytest.approx(se)
    assert row["retained"] == pytest.approx(mean_acc / clean) and row["sensitivity"] == pytest.approx(
        1 - mean_acc / clean
    )
    assert "acc5" in row  # 10 classes: top-5 reported


def test_sweep_is_independent_of_batch_size_and_accepts_unlabeled_data():
    model = bag_of_patches_vit()
    x = torch.rand(50, 1, 16, 16)
    y = torch.randint(0, 10, (50,))
    kwargs = dict(normalize=(MEAN, STD), shuffle_grids=(8,), mask_grids=(4,), mask_ratios=(0.5,), repeats=2)
    a = sensitivity_sweep(model, DataLoader(TensorDataset(x, y), batch_size=7), progress=False, **kwargs)
    b = sensitivity_sweep(model, DataLoader(TensorDataset(x, y), batch_size=50), progress=False, **kwargs)
    for ra, rb in zip(a.rows(), b.rows()):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert (
                ra[k] == rb[k]
                or (isinstance(ra[k], float) and ra[k] == pytest.approx(rb[k], abs=1e-6))
                or (isinstance(ra[k], float) and math.isnan(ra[k]) and math.isnan(rb[k]))
            )
    unlabeled = sensitivity_sweep(model, DataLoader(x, batch_size=16), progress=False, **kwargs)
    assert math.isnan(unlabeled.clean_acc1) and math.isnan(unlabeled.summary()["ssi_shuffle"])
    assert [s.flip for s in unlabeled.settings] == [s.flip for s in a.settings]
    for su, sa in zip(unlabeled.settings, a.settings):
        assert su.kl == pytest.approx(sa.kl, rel=1e-4)  # float32 forward passes on other batch shapes


class Spy(nn.Module):
    """Records the (normalised) inputs it sees; constant logits."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return torch.zeros(len(x), 3) + self.w


def test_zero_fill_is_zero_after_normalisation_whichever_way_normalisation_is_given():
    x = torch.rand(8, 1, 8, 8) * 0.5 + 0.5
    loader = DataLoader(TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=8)
    kw = dict(shuffle_grids=(), mask_grids=(2,), mask_ratios=(1.0,), repeats=1, progress=False)
    explicit, wrapped = Spy(), Spy()
    sensitivity_sweep(explicit, loader, normalize=(MEAN, STD), **{**kw, "progress": True})
    sensitivity_sweep(nn.Sequential(Normalize(MEAN, STD), wrapped), loader, normalize=None, **kw)
    assert torch.equal(explicit.seen[1], torch.zeros_like(x))  # every block masked: all zero after normalisation
    assert torch.allclose(wrapped.seen[1], torch.zeros_like(x))
    assert torch.allclose(explicit.seen[0], (x - 0.3) / 0.4)  # clean pass: normalised, unperturbed
    result = sensitivity_sweep(Spy(), loader, normalize=(MEAN, STD), **kw)
    assert result.clean_acc5 is None  # fewer than 10 classes: no top-5


def test_mean_fill_uses_the_dataset_mean():
    info = DatasetInfo("toy", 3, 1, (8, 8), (0.7,), (0.2,))
    data = TensorImageDataset(torch.rand(4, 1, 8, 8), torch.zeros(4), info)
    spy = Spy()
    kw = dict(shuffle_grids=(), mask_grids=(1,), mask_ratios=(1.0,), mask_fill="mean", repeats=1, progress=False)
    sensitivity_sweep(spy, DataLoader(data, batch_size=4), normalize=((0.5,), (0.5,)), **kw)
    assert torch.allclose(spy.seen[1], torch.full_like(spy.seen[1], (0.7 - 0.5) / 0.5))
    spy.seen.clear()  # a loader without info: the mean is measured
    sensitivity_sweep(spy, DataLoader(data.images, batch_size=4), normalize=((0.5,), (0.5,)), **kw)
    assert torch.allclose(spy.seen[1], torch.full_like(spy.seen[1], (data.images.mean().item() - 0.5) / 0.5))


def test_bad_input_gives_clear_errors():
    model = bag_of_patches_vit()
    loader = own_label_loader(model, n=8)
    kw = dict(normalize=(MEAN, STD), progress=False)
    with pytest.raises(ValueError, match="grid 3x3 does not divide the 16x16 image"):
        sensitivity_sweep(model, loader, shuffle_grids=(3,), mask_ratios=(), **kw)
    with pytest.raises(ValueError, match=r"mask ratio must be a number in \[0, 1\], got 1.5"):
        sensitivity_sweep(model, loader, mask_ratios=(0.5, 1.5), **kw)
    big = DataLoader(TensorDataset(torch.rand(4, 1, 32, 32), torch.zeros(4, dtype=torch.long)), batch_size=4)
    model.train()
    with pytest.raises(ValueError, match="the model expects 16x16 images but the data is 32x32"):
        sensitivity_sweep(model, big, shuffle_grids=(2,), mask_ratios=(), **kw)
    assert model.training  # the caller's mode comes back, also after an error
    rgb = DataLoader(TensorDataset(torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)), batch_size=4)
    with pytest.raises(ValueError, match="takes 1-channel images but the data has 3 channels"):
        sensitivity_sweep(model, rgb, shuffle_grids=(2,), mask_ratios=(), **kw)
    bad_labels = DataLoader(TensorDataset(torch.rand(4, 1, 16, 16), torch.full((4,), 12)), batch_size=4)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        sensitivity_sweep(model, bad_labels, shuffle_grids=(2,), mask_ratios=(), **kw)
    with pytest.raises(ValueError, match="repeats must be a positive int"):
        sensitivity_sweep(model, loader, repeats=0, **kw)
    with pytest.raises(ValueError, match="normalize must be"):
        sensitivity_sweep(model, loader, normalize="imagenet", progress=False)
    with pytest.raises(ValueError, match="mask_fill must be one of"):
        make_settings(shuffle_grids=[2], mask_grids=None, mask_ratios=[0.5], mask_fill="grey", rotate_grids=[])


def test_results_save_and_compare(tmp_path):
    model = bag_of_patches_vit()
    loader = own_label_loader(model, n=16)
    kw = dict(normalize=(MEAN, STD), shuffle_grids=(2, 8), mask_grids=(4,), mask_ratios=(0.25, 0.75), repeats=2)
    a = sensitivity_sweep(model, loader, name="vit", progress=False, **kw)
    cnn = create_model("resnet_small", in_chans=1, img_size=16).eval()
    b = sensitivity_sweep(cnn, loader, name="cnn", progress=False, **kw)
    assert {r["aligned"] for r in b.rows()} == {"n/a"}
    paths = a.save(tmp_path / "one")
    assert json.loads(paths["json"].read_text())[0]["kind"] == "clean"
    assert paths["summary_md"].read_text().startswith("| model |")
    rows, summary = compare([a, b])
    assert [s["model"] for s in summary] == ["vit", "cnn"] and len(rows) == 2 * len(a.rows())
    mask_rows = [r for r in a.rows() if r["kind"] == "mask"]
    assert summary[0]["ssi_mask"] == pytest.approx(sum(r["sensitivity"] for r in mask_rows) / 2)
    assert summary[1]["flip_mask"] == pytest.approx(sum(r["flip_rate"] for r in b.rows() if r["kind"] == "mask") / 2)
    saved = save_comparison([a, b], tmp_path / "both")
    assert saved["sweep_csv"].read_text().count("\n") == 1 + len(rows)
    for kinds in (("shuffle", "mask"), ("shuffle",), ("mask",)):
        png = plot_sensitivity(rows, tmp_path / f"{'_'.join(kinds)}.png", kinds=kinds)
        assert png.read_bytes()[:4] == b"\x89PNG"
    x = torch.rand(3, 1, 16, 16)
    png = plot_examples({"clean": x, "shuffle": x.flip(-1)}, tmp_path / "examples.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Untrained tiny ViT and ResNet checkpoints for 16x16 digits."""
    out = tmp_path_factory.mktemp("ckpt")
    info = load_dataset("digits", "test", img_size=16).info
    paths = {}
    for name, kw in [
        ("vit_micro_patch4", dict(in_chans=1, img_size=16, depth=1)),
        ("resnet_small", dict(in_chans=1, img_size=16)),
    ]:
        model = create_model(name, **kw)
        state = {"model_name": name, "model_kwargs": kw, "model": model.state_dict(), "data_info": info.to_dict()}
        paths[name] = save_checkpoint(out / f"{name}.pt", state)
    return paths


def test_cli_compares_checkpoints(checkpoints, tmp_path, capsys):
    out = tmp_path / "res"
    code = main([
        "sensitivity", "--checkpoint", str(checkpoints["resnet_small"]), "--checkpoint",
        str(checkpoints["vit_micro_patch4"]), "--data", "digits", "--shuffle-grids", "2,4,8,2x4", "--mask-grids", "4",
        "--mask-ratios", "0.25,0.5", "--rotate-grids", "4", "--limit", "24", "--repeats", "2", "--out", str(out),
        "--no-progress", "--examples", "2",
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "ssi_shuffle" in printed and "vit_micro_patch4" in printed and "resnet_small" in printed
    for f in ("sweep.csv", "sweep.json", "sweep.md", "summary.csv", "summary.md", "sensitivity.png", "shuffle.png",
              "mask.png", "examples.png"):  # fmt: skip
        assert (out / f).is_file(), f
    rows = json.loads((out / "sweep.json").read_text())
    vit = {r["grid"]: r["aligned"] for r in rows if r["model"] == "vit_micro_patch4" and r["kind"] == "shuffle"}
    assert vit == {"2x2": "yes", "4x4": "yes", "8x8": "no", "2x4": "yes"}  # 16x16 images, 4x4 patches
    assert {r["kind"] for r in rows} == {"clean", "shuffle", "mask", "rotate"}
    assert all(r["blocks"] == 16 for r in rows if r["kind"] == "mask")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mask-ratios", "0.5,1.5"], "mask ratio must be a number in [0, 1], got 1.5"),
        (["--shuffle-grids", "3"], "grid 3x3 does not divide the 16x16 image"),
        (["--img-size", "32"], "was trained at 16x16, the data here is 32x32: use --img-size 16, or pass --other-data"),
    ],
)
def test_cli_bad_input(checkpoints, tmp_path, capsys, extra, message):
    args = ["sensitivity", "--checkpoint", str(checkpoints["vit_micro_patch4"]), "--limit", "4", "--no-progress"]
    assert main([*args, "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sweep.csv").exists()


def test_cli_needs_a_model(capsys):
    assert main(["sensitivity", "--data", "digits"]) == 2
    assert "give at least one --checkpoint" in capsys.readouterr().err


def test_cli_timm_model(tmp_path):
    pytest.importorskip("timm")
    code = main([
        "sensitivity", "--timm-model", "vit_tiny_patch16_224", "--timm-random-init", "--img-size", "32",
        "--shuffle-grids", "2", "--mask-ratios", "0.5", "--limit", "8", "--repeats", "1", "--no-progress",
        "--out", str(tmp_path),
    ])  # fmt: skip
    assert code == 0 and (tmp_path / "summary.csv").is_file()


def test_cli_takes_the_data_from_the_checkpoint(tmp_path, capsys):
    """A checkpoint trained on other data than the default (4-channel synthetic images) works without --data:
    the data, its size and normalisation come from the checkpoint's own config."""
    spec = "synthetic:grid=4,d=16,group=2,patch_pixels=2,in_chans=4,n=64"
    info = load_dataset(spec, "test").info
    kw = dict(img_size=8, patch_size=2, in_chans=4, num_classes=2, embed_dim=16, depth=1, num_heads=2)
    state = {"model_name": "vit_micro_patch4", "model_kwargs": kw, "data_info": info.to_dict()}
    state |= {"model": create_model("vit_micro_patch4", **kw).state_dict(), "config": {"data": spec}}
    ckpt = save_checkpoint(tmp_path / "synth.pt", state)
    args = ["sensitivity", "--checkpoint", str(ckpt), "--shuffle-grids", "2", "--mask-ratios", "0.5"]
    assert main([*args, "--repeats", "1", "--examples", "0", "--no-progress", "--out", str(tmp_path / "o")]) == 0
    rows = json.loads((tmp_path / "o" / "sweep.json").read_text())
    assert rows[0]["model"] == "vit_micro_patch4" and all("acc5" not in r for r in rows)  # 2 classes: no top-5
    assert main([*args, "--data", "digits", "--img-size", "8", "--out", str(tmp_path / "p")]) == 2
    assert f"was trained on {spec!r}, --data is 'digits'" in capsys.readouterr().err  # other data: refused
    assert main([*args, "--data", "digits", "--img-size", "8", "--other-data", "--out", str(tmp_path / "p")]) == 2
    assert "takes 4-channel images but the data has 1 channel" in capsys.readouterr().err  # ...and does not fit
