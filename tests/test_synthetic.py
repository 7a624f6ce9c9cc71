"""Synthetic data model, image rendering, dataset registration, the simplified model (against a naive loop, with
float64 gradients) and tiny end-to-end runs of training, transfer and the CLI."""

import json
import math

import pytest
import torch

from spatialvit.cli import main
from spatialvit.data import load_dataset
from spatialvit.data.synthetic import (
    SyntheticConfig,
    make_features,
    make_partition,
    render_images,
    sample_synthetic,
)
from spatialvit.models import create_model
from spatialvit.study.claims import SINGLE_SEED
from spatialvit.synth.experiments import (
    TRANSFER_ARMS,
    FitSettings,
    bayes_accuracy,
    global_count_accuracy,
    summarise_transfer,
    train_association,
    transfer_claims,
    transfer_experiment,
)
from spatialvit.synth.model import ACTIVATIONS, SimplifiedViT
from spatialvit.train.checkpoint import save_checkpoint

TINY = SyntheticConfig(grid=(4, 4), d=16, group=(2, 2), patch_pixels=2, in_chans=4)


def test_defaults_follow_the_spec():
    cfg = SyntheticConfig()
    assert cfg.num_patches == 64 and cfg.group_size == 4 and cfg.num_groups == 16
    assert cfg.distractor_prob == pytest.approx(math.log(48) / 64)
    assert cfg.noise_std == pytest.approx(1 / math.sqrt(48))


@pytest.mark.parametrize("partition", ["local", "random"])
def test_partition_has_equal_groups(partition):
    cfg = SyntheticConfig(grid=(6, 6), group=(3, 2), partition=partition, task_seed=3)
    groups = make_partition(cfg)
    assert groups.shape == (36,) and torch.bincount(groups).tolist() == [6] * 6
    if partition == "local":  # group (r // 3, c // 2) on a 6x6 grid, row-major
        expect = torch.tensor([(r // 3) * 3 + c // 2 for r in range(6) for c in range(6)])
        assert torch.equal(groups, expect)
    else:
        assert torch.equal(groups, make_partition(cfg))  # seeded
        assert not torch.equal(groups, make_partition(SyntheticConfig(grid=(6, 6), group=(3, 2), partition=partition)))


def test_samples_follow_the_data_model():
    cfg = SyntheticConfig(grid=(4, 4), d=32, group=(2, 2), partition="random", q=0.3, sigma=0.2, task_seed=1)
    s = sample_synthetic(cfg, 4000, seed=0)
    w = make_features(cfg)[0]
    groups = make_partition(cfg)
    coef = s.x @ w  # noise is orthogonal to w*, so this is exactly the coefficient
    in_signal = groups[None, :] == s.signal_group[:, None]
    assert torch.allclose(coef[in_signal].view(-1, 4), s.signs[:, None].expand(-1, 4), atol=1e-5)
    off = coef[~in_signal]
    assert set(off.round().unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert off.round().abs().mean().item() == pytest.approx(0.3, abs=0.02)  # P(delta != 0) = q
    assert off.round().mean().item() == pytest.approx(0.0, abs=0.02)  # +-1 equally likely
    noise = s.x - coef[..., None] * w
    assert noise.pow(2).sum(-1).mean().item() == pytest.approx(0.04 * 31, rel=0.02)  # sigma^2 (d - 1)
    assert torch.equal(sample_synthetic(cfg, 5, seed=2).x, sample_synthetic(cfg, 5, seed=2).x)


def test_multiclass_and_transfer_features():
    cfg = SyntheticConfig(grid=(4, 4), d=16, num_classes=3, q=0.0, sigma=0.0)
    s = sample_synthetic(cfg, 50, seed=0)
    feats = make_features(cfg)
    assert feats.shape == (3, 16)
    onehot = (s.x @ feats.T).round().sum(1)  # exactly C copies of w_y, nothing else (q = 0, no noise)
    assert torch.equal(onehot.argmax(-1), s.labels) and onehot.max(-1).values.eq(4).all()
    task2 = cfg.transfer_task()
    assert torch.equal(make_partition(task2), make_partition(cfg))
    assert (make_features(task2) @ feats.T).abs().max() < 1e-6  # orthogonal new features


def test_render_images_exact_and_projected():
    s = sample_synthetic(TINY, 3, seed=0)
    img = render_images(s.x, TINY)  # d = 2*2*4: each patch vector reshaped into its 2x2x4 block
    assert img.shape == (3, 4, 8, 8) and img.min() >= 0 and img.max() <= 1
    block = img[1, :, 2:4, 4:6]  # patch at grid row 1, column 2
    assert torch.allclose(block, (0.5 + 0.25 * s.x[1, 1 * 4 + 2].view(4, 2, 2)).clamp(0, 1))
    small = SyntheticConfig(grid=(4, 4), d=10, patch_pixels=2, in_chans=4)
    x = sample_synthetic(small, 2, seed=0).x
    pix = (render_images(x * 0.1, small) - 0.5) / 0.25  # no clipping at this scale: the projection is linear
    vecs = pix.view(2, 4, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(2, 16, 16)
    assert torch.allclose(vecs.norm(dim=-1), (x * 0.1).norm(dim=-1), atol=1e-5)  # orthonormal columns keep norms


def test_dataset_registration_and_spec_string():
    ds = load_dataset("synthetic:grid=4,d=16,group=2x2,patch_pixels=2,in_chans=4", "test", n=10)
    assert len(ds) == 10 and ds.images.shape == (10, 4, 8, 8)
    assert ds.info.num_classes == 2 and ds.info.img_size == (8, 8) and ds.info.classes == ("-1", "+1")
    img, label = ds[0]
    assert img.dtype == torch.float32 and label in (0, 1)
    spec = "synthetic:grid=4,d=16,patch_pixels=2,in_chans=4,n=7,n_test=3,seed=5"  # sample keys beside task keys
    train, test = load_dataset(spec, "train"), load_dataset(spec, "test")
    assert (len(train), len(test)) == (7, 3) and train.info == test.info  # same normalisation for both splits
    assert not torch.equal(train.images[:3], test.images)  # disjoint draws
    with pytest.raises(ValueError, match="key=value"):
        load_dataset("synthetic:grid8")
    with pytest.raises(ValueError, match="must tile"):
        load_dataset("synthetic:grid=5,group=2")
    with pytest.raises(ValueError, match="partition"):
        SyntheticConfig(partition="blocks")


def naive_forward(model: SimplifiedViT, x: torch.Tensor) -> torch.Tensor:
    """F(X)_k = sum_i sum_r act(sum_j A_ij <v_kr, X_j>) with explicit loops."""
    out = torch.zeros(x.shape[0], model.values.shape[0], dtype=x.dtype)
    for b in range(x.shape[0]):
        A = model.attention(x[b : b + 1])[0] if model.attention_kind == "content" else model.attention()
        for k in range(model.values.shape[0]):
            for r in range(model.values.shape[1]):
                for i in range(x.shape[1]):
                    z = sum(A[i, j] * torch.dot(model.values[k, r], x[b, j]) for j in range(x.shape[1]))
                    out[b, k] = out[b, k] + model.act(z)
    return out[:, 0] if model.num_classes == 2 else out


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize(("attention", "classes"), [("positional", 2), ("positional", 3), ("content", 2)])
def test_simplified_model_matches_naive_loop_forward_and_gradient(activation, attention, classes):
    model = SimplifiedViT(
        6, 5, num_classes=classes, num_values=2, activation=activation, attention=attention, value_init_std=0.5
    ).double()
    if attention == "positional":
        model.q.data += 0.3 * torch.randn(6, 6, dtype=torch.float64)
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    fast, slow = model(x), naive_forward(model, x)
    assert torch.allclose(fast, slow, atol=1e-10)
    params = list(model.parameters())
    g_fast = torch.autograd.grad(fast.sum(), params)
    g_slow = torch.autograd.grad(slow.sum(), params)
    for a, b in zip(g_fast, g_slow):
        assert torch.allclose(a, b, atol=1e-10)


def test_model_details():
    model = SimplifiedViT(16, 16)
    assert torch.allclose(model.attention().sum(-1), torch.ones(16))
    assert model.q.diagonal().eq(math.log(math.log(16))).all()
    model.q.data.fill_(2.0)
    model.reset_diagonal()
    assert model.q.diagonal().eq(model.diag_init).all() and model.q[0, 1] == 2.0
    logits = torch.tensor([3.0, -2.0])
    expect = (math.log1p(math.exp(-3.0)) + math.log1p(math.exp(-2.0))) / 2  # log(1 + exp(-y F)), y = +1, -1
    assert model.loss(logits, torch.tensor([1, 0])).item() == pytest.approx(expect)
    with pytest.raises(ValueError, match="x must be"):
        model(torch.zeros(2, 15, 16))
    with pytest.raises(ValueError, match="activation"):
        SimplifiedViT(4, 4, activation="relu")


@pytest.mark.parametrize("classes", [2, 3])
def test_bayes_accuracy_matches_a_loop_over_groups(classes):
    cfg = SyntheticConfig(grid=(2, 4), d=12, group=(1, 2), q=0.6, num_classes=classes, partition="random")
    data = sample_synthetic(cfg, 300, seed=4)
    feats, groups = make_features(cfg), make_partition(cfg).tolist()
    total = 0.0
    for x, label in zip(data.x, data.labels.tolist()):
        coef = (x @ feats.T).round()
        cls = [-1.0, 1.0] if classes == 2 else list(range(classes))
        carries = [coef[:, 0] == k if classes == 2 else coef[:, k] == 1 for k in cls]  # [D] per class
        counts = [sum(all(c[j] for j in range(8) if groups[j] == g) for g in range(4)) for c in carries]
        best = [i for i, c in enumerate(counts) if c == max(counts)]
        total += (label in best) / len(best)
    assert bayes_accuracy(cfg, data) == pytest.approx(total / 300)
    clean = SyntheticConfig(grid=(2, 4), d=12, group=(1, 2), q=0.0, num_classes=classes)
    assert bayes_accuracy(clean, sample_synthetic(clean, 50, seed=0)) == 1.0  # no distractor: one coherent group


def test_tiny_training_learns_the_groups():
    cfg = SyntheticConfig(grid=(4, 4), d=16, group=(2, 2), partition="random", task_seed=2)
    res = train_association(
        cfg,
        n_train=2000,
        n_test=500,
        settings=FitSettings(steps=150, lr=0.5, attn_lr=300, eval_every=50),
        model_kwargs=dict(value_init_std=0.05),
        seed=0,
        cluster="agglomerative",
        progress=False,
    )
    first, last = res.history[0], res.final
    assert [r["step"] for r in res.history] == [0, 50, 100, 150]
    assert last["test_acc"] > 0.9 and last["cos_v_w"] > 0.9
    assert last["mass"] > first["mass"] + 0.1 and last["auc"] > 0.9
    assert 0.4 < global_count_accuracy(cfg, sample_synthetic(cfg, 500, seed=9)) <= 1.0


def test_tiny_transfer_runs_every_arm():
    cfg = SyntheticConfig(grid=(4, 4), d=16, group=(2, 2))
    fit = FitSettings(steps=20, lr=0.5, attn_lr=100, eval_every=20)
    run = dict(ns=(4, 8), pretrain_n=500, pretrain=fit, finetune=fit, n_test=200, model_kwargs={}, progress=False)
    rows, pre = transfer_experiment(cfg, arms=TRANSFER_ARMS, seeds=(0, 1), **run)
    assert len(rows) == 3 * 2 * 2 and {r["arm"] for r in rows} == {"frozen", "reinit", "content"}
    frozen = [r for r in rows if r["arm"] == "frozen"]
    pre_mass = pre.final["mass"]
    assert all(r["mass"] == pytest.approx(pre_mass) for r in frozen)  # frozen attention did not move
    summary = summarise_transfer(rows)
    assert len(summary) == 6 and all(s["seeds"] == 2 for s in summary)
    # Jelassi's synthetic claims with the study's verdict machinery: j1 on the re-initialised arm at the largest n,
    # j2 at every n, paired by seed
    claims = {c["id"]: c for c in transfer_claims(rows)}
    assert list(claims) == ["j1", "j2@n=4", "j2@n=8"] and all(c["n"] == 2 for c in claims.values())
    reinit8 = [r for r in rows if r["arm"] == "reinit" and r["n"] == 8]
    assert claims["j1"]["effect"] == pytest.approx(sum(r["mass"] - r["chance_mass"] for r in reinit8) / 2)
    acc = {(r["arm"], r["seed"]): r["test_acc"] for r in rows if r["n"] == 4}
    assert claims["j2@n=4"]["effect"] == pytest.approx(sum(acc["frozen", s] - acc["reinit", s] for s in (0, 1)) / 2)
    assert all(c["p_holm"] >= c["p"] and c["verdict"] for c in claims.values())
    with pytest.raises(ValueError, match="attn_lr must be > 0"):
        FitSettings(attn_lr=0.0)
    with pytest.raises(ValueError, match="arms"):
        transfer_experiment(cfg, arms=("frozen", "magic"), seeds=(0,), **run)


def test_cli_train_associate_transfer(tmp_path, capsys):
    data = "grid=4,d=16,group=2,patch_pixels=2,in_chans=4"
    common = ["--data", data, "--n-train", "500", "--n-test", "200", "--no-progress", "--eval-every", "5"]
    assert main(["synth", "train", *common, "--steps", "10", "--out", str(tmp_path / "t")]) == 0
    for f in ("history.csv", "summary.json", "attention.png", "association.png", "model.pt"):
        assert (tmp_path / "t" / f).is_file()
    assert main(["synth", "associate", str(tmp_path / "t" / "model.pt"), "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "association.md").is_file()
    # A ViT checkpoint trained (here: not trained) on the image rendering: one row per block.
    vit_kwargs = dict(img_size=8, patch_size=2, in_chans=4, num_classes=2, embed_dim=16, depth=2, num_heads=2)
    info = load_dataset(f"synthetic:{data}", "test", n=2).info
    state = {"model_name": "vit_micro_patch4", "model_kwargs": vit_kwargs, "data_info": info.to_dict()}
    state["model"] = create_model("vit_micro_patch4", **vit_kwargs).state_dict()
    save_checkpoint(tmp_path / "vit.pt", state)
    vit_args = ["synth", "associate", str(tmp_path / "vit.pt"), "--data", data, "--images", "4", "--per-head"]
    assert main([*vit_args, "--out", str(tmp_path / "v")]) == 0
    assert len(json.loads((tmp_path / "v" / "association.json").read_text())) == 2 * 3  # 2 blocks x (mean + 2 heads)
    args = ["synth", "transfer", *common, "--steps", "5", "--finetune-steps", "5", "--ns", "4,8", "--num-seeds", "1"]
    assert main([*args, "--out", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "transfer.png").is_file() and (tmp_path / "x" / "transfer.csv").is_file()
    assert (tmp_path / "x" / "claims.csv").is_file()  # one seed: the claims say so instead of deciding
    assert {c["verdict"] for c in json.loads((tmp_path / "x" / "claims.json").read_text())} == {SINGLE_SEED}
    assert main(["synth", "train", "--data", "grid=5,group=2", "--out", str(tmp_path / "bad")]) == 2
    assert "must tile" in capsys.readouterr().err
