"""Generation: the DiT denoiser (every registered mixer), the flow-matching objective and EMA, the ODE samplers
against closed-form solutions, exact resume, and the FID / precision / recall metrics against naive references."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from spatialvit.attention import list_attention
from spatialvit.data import DatasetInfo, Normalize, load_dataset
from spatialvit.generation import (
    EMA,
    DenoiserConfig,
    DiT,
    class_labels,
    classifier_features,
    denoiser_from_checkpoint,
    flow_matching_loss,
    frechet_distance,
    generation_metrics,
    image_grid,
    interpolate,
    load_denoiser_checkpoint,
    precision_recall,
    sample,
    save_image_grid,
    train_denoiser,
)
from spatialvit.models import create_model
from spatialvit.train import save_checkpoint

TINY = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=2, num_heads=2)


def tiny_dit(**kw) -> DiT:
    return DiT(**{**TINY, **kw})


def randomise_zero_init(model: DiT) -> DiT:
    """adaLN-Zero makes the fresh model output zeros; give the zero-initialised layers weights to test the wiring."""
    with torch.no_grad():
        for lin in [blk.ada[-1] for blk in model.blocks] + [model.final_ada[-1], model.final]:
            lin.weight.normal_(std=0.1)
            lin.bias.normal_(std=0.1)
    return model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits8():
    ds = load_dataset("digits", img_size=8)
    return ds.images, ds.labels, ds.info


# ---- model ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mixer", list_attention())
def test_denoiser_shapes_and_gradients_for_every_mixer(mixer):
    model = randomise_zero_init(tiny_dit(attn_layer=mixer))
    x = torch.randn(3, 1, 8, 8)
    out = model(x, torch.rand(3), torch.tensor([0, 4, 10]))
    assert out.shape == x.shape
    out.square().mean().backward()
    for name, p in model.named_parameters():
        if name.startswith("blocks.0.attn") or name.startswith("final"):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_adaln_zero_starts_at_zero_and_blocks_start_as_identity():
    model = tiny_dit()
    x, t, y = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([1, 2])
    assert torch.equal(model(x, t, y), torch.zeros_like(x))
    tokens = torch.randn(2, model.grid[0] * model.grid[1], 32)
    c = torch.randn(2, 32)
    assert torch.equal(model.blocks[0](tokens, c, model.grid), tokens)


def test_unpatchify_matches_naive_patch_layout():
    model = tiny_dit(in_chans=3, patch_size=2)
    gh, gw, p, C = *model.grid, 2, 3
    tokens = torch.randn(2, gh * gw, p * p * C)
    img = model.unpatchify(tokens)
    ref = torch.empty(2, C, gh * p, gw * p)
    for n in range(gh * gw):
        r, c = divmod(n, gw)  # row-major token order
        for i in range(p):
            for j in range(p):
                for ch in range(C):
                    ref[:, ch, r * p + i, c * p + j] = tokens[:, n, (i * p + j) * C + ch]
    assert torch.equal(img, ref)


def test_conditioning_changes_the_prediction():
    model = randomise_zero_init(tiny_dit())
    x, t = torch.randn(1, 1, 8, 8).expand(2, -1, -1, -1), torch.full((2,), 0.5)
    out = model(x, t, torch.tensor([3, 10]))
    assert not torch.allclose(out[0], out[1])
    out_t = model(x, torch.tensor([0.1, 0.9]), torch.tensor([3, 3]))
    assert not torch.allclose(out_t[0], out_t[1])


def test_denoiser_bad_input_errors():
    model = tiny_dit()
    with pytest.raises(ValueError, match="x must be"):
        model(torch.randn(2, 1, 16, 16), torch.rand(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must lie"):
        model(torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 11]))
    with pytest.raises(ValueError, match="t and y"):
        model(torch.randn(2, 1, 8, 8), torch.rand(3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        DiT(img_size=9, patch_size=2)
    with pytest.raises(KeyError, match="softmax"):
        tiny_dit(attn_layer="sofmax")


# ---- objective and EMA ------------------------------------------------------------------------------------------


class Recorder(nn.Module):
    """Returns a fixed prediction and records its inputs."""

    null_class = 10

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y):
        self.seen = (x, t, y)
        return torch.zeros_like(x) + self.w


def test_flow_matching_loss_matches_its_definition():
    model = Recorder()
    x0 = torch.rand(64, 1, 4, 4) * 2 - 1
    y = torch.randint(0, 10, (64,))
    loss = flow_matching_loss(model, x0, y, torch.Generator().manual_seed(1), label_dropout=0.25, t_sampling="uniform")
    g = torch.Generator().manual_seed(1)
    t = torch.rand(64, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    drop = torch.rand(64, generator=g) < 0.25
    xt, tt, yy = model.seen
    assert torch.allclose(tt, t)
    assert torch.allclose(xt, (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * noise)
    assert torch.equal(yy, torch.where(drop, torch.tensor(10), y)) and drop.any() and not drop.all()
    assert torch.allclose(loss, (noise - x0).square().mean())


def test_interpolate_endpoints():
    x0, noise = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(interpolate(x0, noise, torch.zeros(2)), x0)
    assert torch.equal(interpolate(x0, noise, torch.ones(2)), noise)


def test_ema_follows_the_reference_average():
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    start = model.weight.detach().clone()
    ref = start.clone()
    for n in range(5):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update(model)
        d = min(0.9, (1 + n) / (10 + n))
        ref = d * ref + (1 - d) * model.weight.detach()
    assert torch.allclose(ema.module.weight, ref)
    assert not ema.module.weight.requires_grad and int(ema.num_updates) == 5


# ---- samplers ---------------------------------------------------------------------------------------------------


class LinearField(nn.Module):
    """Velocity ``a x`` for labelled samples, ``b x`` for the unconditional label: the ODE has a closed form."""

    in_chans, img_size, null_class = 1, 4, 10

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, x, t, y):
        self.calls += 1
        rate = torch.where(y == self.null_class, self.b, self.a).view(-1, 1, 1, 1).to(x)
        return rate * x


@pytest.mark.parametrize(("method", "tol"), [("euler", 2e-2), ("heun", 1e-4)])
def test_samplers_integrate_a_known_ode(method, tol):
    # dx/dt = a x from t=1 to t=0 gives x(0) = x(1) exp(-a); with guidance w the rate is b + w (a - b).
    a, b, w = 0.3, -0.2, 2.0
    model = LinearField(a, b)
    y = torch.zeros(8, dtype=torch.long)
    noise = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    for cfg, rate in [(1.0, a), (w, b + w * (a - b))]:
        out = sample(model, y, steps=100, method=method, cfg_scale=cfg, generator=torch.Generator().manual_seed(5))
        exact = (noise * math.exp(-rate)).clamp(-1, 1)
        assert torch.allclose(out, exact, atol=tol), (cfg, (out - exact).abs().max())


def test_heun_is_second_order_and_counts_evaluations():
    model = LinearField(1.0, 1.0)
    y = torch.zeros(4, dtype=torch.long)
    errs = []
    for steps in (10, 20):
        x1 = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        model.calls = 0
        out = sample(model, y, steps=steps, method="heun", cfg_scale=1.0, generator=torch.Generator().manual_seed(0))
        assert model.calls == 2 * steps - 1
        errs.append((out - (x1 * math.exp(-1.0)).clamp(-1, 1)).abs().max().item())
    assert errs[0] / errs[1] > 3.0  # halving the step divides a second-order error by ~4


def test_sampling_is_deterministic_for_a_seed():
    model = randomise_zero_init(tiny_dit()).eval()
    y = class_labels(10, 2)
    one = sample(model, y, steps=3, generator=torch.Generator().manual_seed(7))
    two = sample(model, y, steps=3, generator=torch.Generator().manual_seed(7))
    other = sample(model, y, steps=3, generator=torch.Generator().manual_seed(8))
    assert one.shape == (20, 1, 8, 8) and torch.equal(one, two) and not torch.equal(one, other)
    assert one.min() >= -1 and one.max() <= 1


def test_sampler_bad_arguments():
    model = tiny_dit()
    with pytest.raises(ValueError, match="method"):
        sample(model, torch.zeros(2, dtype=torch.long), method="ddim")
    with pytest.raises(ValueError, match="steps"):
        sample(model, torch.zeros(2, dtype=torch.long), steps=0)


def test_image_grid_layout_and_png(tmp_path):
    images = torch.rand(5, 1, 3, 3)
    grid = image_grid(images, ncol=2, pad=1)
    assert grid.shape == (1, 3 * 4 + 1, 2 * 4 + 1)
    assert torch.equal(grid[:, 1:4, 5:8], images[1]) and torch.equal(grid[:, 9:12, 1:4], images[4])
    path = save_image_grid(images, tmp_path / "g.png", ncol=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- training and resume ----------------------------------------------------------------------------------------


def fixed_loss(model: DiT, x0: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return flow_matching_loss(model, x0, y, torch.Generator().manual_seed(123), label_dropout=0.0).item()


def test_tiny_denoiser_loss_falls(digits8, tmp_path):
    images, labels, info = digits8
    images, labels = images[:64], labels[:64]
    model = tiny_dit()
    x0 = images * 2 - 1
    before = fixed_loss(model, x0, labels)
    cfg = DenoiserConfig(steps=40, batch_size=32, lr=3e-3, warmup=5, checkpoint_every=40)
    ckpt = train_denoiser(model, images, labels, info, cfg, tmp_path / "d.pt", progress=False)
    after = fixed_loss(model, x0, labels)
    assert after < 0.7 * before, (before, after)
    assert len(ckpt["losses"]) == 40 and ckpt["step"] == 40
    assert np.mean(ckpt["losses"][-10:]) < np.mean(ckpt["losses"][:10])


def test_resume_continues_exactly(digits8, tmp_path):
    images, labels, info = digits8
    images, labels = images[:32], labels[:32]
    cfg = DenoiserConfig(steps=6, batch_size=8, warmup=2, checkpoint_every=3, seed=3)
    torch.manual_seed(0)
    straight = tiny_dit()
    train_denoiser(straight, images, labels, info, cfg, tmp_path / "a.pt", progress=False)
    torch.manual_seed(0)
    first = tiny_dit()
    half = DenoiserConfig(**{**cfg.__dict__, "steps": 3})
    train_denoiser(first, images, labels, info, half, tmp_path / "b.pt", progress=False)
    torch.manual_seed(1)  # the resumed model starts from other weights: everything must come from the checkpoint
    resumed = tiny_dit()
    train_denoiser(resumed, images, labels, info, cfg, tmp_path / "b.pt", resume=True, progress=False)
    a, b = load_denoiser_checkpoint(tmp_path / "a.pt"), load_denoiser_checkpoint(tmp_path / "b.pt")
    assert a["losses"] == b["losses"] and b["step"] == 6
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    model, info_back, _ = denoiser_from_checkpoint(tmp_path / "b.pt")
    assert info_back == info and not model.training
    assert torch.equal(model.final.weight, a["ema"]["module.final.weight"])


def test_resume_refuses_another_model(digits8, tmp_path):
    images, labels, info = digits8
    cfg = DenoiserConfig(steps=1, batch_size=4, checkpoint_every=1)
    train_denoiser(tiny_dit(), images[:8], labels[:8], info, cfg, tmp_path / "d.pt", progress=False)
    with pytest.raises(ValueError, match="cannot resume"):
        train_denoiser(tiny_dit(depth=1), images[:8], labels[:8], info, cfg, tmp_path / "d.pt", resume=True)
    other = DatasetInfo("other", 10, 1, (8, 8), (0.5,), (0.5,))
    with pytest.raises(ValueError, match="cannot resume"):
        train_denoiser(tiny_dit(), images[:8], labels[:8], other, cfg, tmp_path / "d.pt", resume=True)
    with pytest.raises(ValueError, match="cannot resume"):
        lr = DenoiserConfig(steps=1, batch_size=4, checkpoint_every=1, lr=0.1)
        train_denoiser(tiny_dit(), images[:8], labels[:8], info, lr, tmp_path / "d.pt", resume=True)


def test_classifier_checkpoint_is_not_a_denoiser(tmp_path):
    info = DatasetInfo("digits", 10, 1, (8, 8), (0.5,), (0.5,))
    model = create_model("vit_micro_patch4", img_size=8, in_chans=1)
    save_checkpoint(
        tmp_path / "c.pt",
        {
            "model_name": "vit_micro_patch4",
            "model_kwargs": {},
            "model": model.state_dict(),
            "data_info": info.to_dict(),
        },
    )
    with pytest.raises(ValueError, match="not a denoiser"):
        load_denoiser_checkpoint(tmp_path / "c.pt")


def test_config_errors():
    with pytest.raises(ValueError, match="steps"):
        DenoiserConfig(steps=0)
    with pytest.raises(ValueError, match="t_sampling"):
        DenoiserConfig(t_sampling="cosine")


# ---- evaluation -------------------------------------------------------------------------------------------------


def naive_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def test_frechet_distance_matches_scipy_reference():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    b = torch.randn(200, 6, generator=g, dtype=torch.float64) * 2 + 1
    assert frechet_distance(a, b) == pytest.approx(naive_fid(a.numpy(), b.numpy()), rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + 3.0) == pytest.approx(6 * 9.0, rel=1e-8)  # pure mean shift: |shift|^2


def test_frechet_distance_errors():
    with pytest.raises(ValueError, match="equal D"):
        frechet_distance(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.randn(1, 3), torch.randn(5, 3))


def naive_precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int) -> tuple[float, float]:
    def radii(s):
        return [sorted(float((s[i] - s[j]).norm()) for j in range(len(s)) if j != i)[k - 1] for i in range(len(s))]

    def covered(points, centres, r):
        return sum(any(float((p - c).norm()) <= rc for c, rc in zip(centres, r)) for p in points) / len(points)

    return covered(fake, real, radii(real)), covered(real, fake, radii(fake))


def test_precision_recall_match_naive_reference():
    g = torch.Generator().manual_seed(2)
    real = torch.randn(40, 3, generator=g, dtype=torch.float64)
    fake = torch.randn(30, 3, generator=g, dtype=torch.float64) * 0.5 + 0.8
    p, r = precision_recall(real, fake, k=3)
    rp, rr = naive_precision_recall(real, fake, 3)
    assert (p, r) == pytest.approx((rp, rr))
    assert 0 < r < 1
    assert precision_recall(real, real, k=3) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0, k=3) == (0.0, 0.0)


def tiny_classifier(in_chans: int = 1) -> nn.Module:
    model = create_model("vit_micro_patch4", img_size=8, in_chans=in_chans, num_classes=10).eval()
    return nn.Sequential(Normalize((0.3,), (0.4,)), model).eval()


def test_features_are_the_penultimate_layer_of_vit_and_resnet():
    x = torch.rand(5, 1, 8, 8)
    clf = tiny_classifier()
    feats, logits = classifier_features(clf, x, batch_size=2)
    vit = clf[1]
    ref = vit.forward_head(vit.forward_features(clf[0](x)), pre_logits=True)
    assert torch.allclose(feats.float(), ref, atol=1e-6) and torch.allclose(logits, clf(x), atol=1e-6)
    resnet = create_model("resnet_small", in_chans=1, num_classes=10).eval()
    feats, _ = classifier_features(resnet, x)
    assert torch.allclose(feats.float(), resnet.pool(resnet.forward_features(x)).flatten(1), atol=1e-5)
    with pytest.raises(ValueError, match="head"):
        classifier_features(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), x)


def test_metrics_on_identical_sets(digits8):
    images, labels, _ = digits8
    real = images[:200]
    clf = tiny_classifier()
    m = generation_metrics(clf, real, real.clone(), labels[:200])
    assert m["fid"] == pytest.approx(0.0, abs=1e-6)
    assert m["precision"] == 1.0 and m["recall"] == 1.0
    expected = (clf(real).argmax(1) == labels[:200]).double().mean().item()
    assert m["accuracy"] == pytest.approx(expected)
    noisy = generation_metrics(clf, real, torch.rand(200, 1, 8, 8), labels[:200])
    assert noisy["fid"] > 1e-2
