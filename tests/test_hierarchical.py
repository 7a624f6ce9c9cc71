"""Hierarchical RMT / SDT-H backbones: published parameter counts, forward and backward at 224 (T sizes) and on
small inputs (S/B and the small-input variants), one training step per small variant, the per-stage decay
schedule, a fresh SDT equal to RMT, the decomposed stages, and the FLOP counter."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from spatialvit.attention import FixedDecay
from spatialvit.attention.manhattan import gamma_schedule
from spatialvit.models import (
    count_flops,
    count_params,
    create_model,
    list_models,
    measure_complexity,
    model_defaults,
)
from spatialvit.models.hierarchical import CONFIGS

# RMT's training logs (qhfan/RMT RMT_log/rmt_{t,s,m}.txt, "m" = RMT-B) and its README (27 M, 54 M).
RMT_LOGGED_PARAMS = {"rmt_t": 14_334_216, "rmt_s": 26_967_240, "rmt_b": 54_154_896}
RMT_README_PARAMS = {"rmt_s": 27e6, "rmt_b": 54e6}
SMALL_VARIANTS = [n for n in list_models("[rs][md]t_*") if n.endswith(("_cifar", "_micro"))]


def _build(name, device="cpu", **overrides):
    """``create_model`` on ``device`` (``"meta"`` builds the structure only: parameter counts without memory or
    init time)."""
    with torch.device(device):
        return create_model(name, **overrides)


def _gate_params(size):
    cfg = CONFIGS[size]
    return sum(d * h * (c + 1) for d, h, c in zip(cfg["depths"], cfg["num_heads"], cfg["embed_dims"]))


def _check_grads(model):
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_small_variants_registered():
    assert sorted(SMALL_VARIANTS) == sorted(
        f"{fam}_{size}" for fam in ("rmt", "sdt") for size in ("micro", "t_cifar", "s_cifar", "b_cifar")
    )


@pytest.mark.parametrize("name", sorted(RMT_LOGGED_PARAMS))
def test_rmt_params_match_published(name):
    model = _build(name, "meta")
    n = count_params(model)
    assert n == RMT_LOGGED_PARAMS[name]
    if name in RMT_README_PARAMS:
        assert abs(n / RMT_README_PARAMS[name] - 1) < 0.01
    assert model.img_size == (224, 224) and model.num_classes == 1000 and model.in_chans == 3


@pytest.mark.parametrize("size", ["t", "s", "b", "micro"])
def test_sdt_params_are_rmt_plus_gates(size):
    rmt, sdt = _build(f"rmt_{size}", "meta"), _build(f"sdt_{size}", "meta")
    assert count_params(sdt) - count_params(rmt) == _gate_params(size)


@pytest.mark.parametrize("name", ["rmt_t", "sdt_t"])
def test_published_tiny_forward_backward_224(name):
    model = _build(name)
    out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    out.logsumexp(-1).sum().backward()
    _check_grads(model)


@pytest.mark.parametrize("name", ["rmt_s", "rmt_b", "sdt_s", "sdt_b"])
def test_published_small_and_base_run_on_small_input(name):
    # Every S/B block at 32x32 (grids 8/4/2/1): the 224x224 passes are the T tests' job (S/B take tens of seconds).
    model = _build(name, num_classes=7)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    out.logsumexp(-1).sum().backward()
    _check_grads(model)


@pytest.mark.parametrize("name", SMALL_VARIANTS)
def test_small_variant_one_training_step(name):
    torch.manual_seed(0)
    # no stochastic depth here: a dropped branch gets zero gradient and its zero biases would not move
    model = _build(name, in_chans=1, num_classes=10, drop_path_rate=0.0)
    assert model.img_size == (32, 32)
    assert [g for g in model.stage_grids()] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 10, (2,))
    loss = F.cross_entropy(model(x), y)
    assert torch.isfinite(loss)
    loss.backward()
    _check_grads(model)
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)


def _stage_gammas(model, stage):
    """Per-head decay of ``stage``'s first block, read off its attention: with ``x = 0`` (zero q/k: the
    projections' biases start at 0) on a 1x5 grid the weights are ``softmax(log(gamma_h) * |i - j|)``, so the
    weight of the neighbour over the weight of the token itself is ``gamma_h`` (also in decomposed stages: the
    column pass is the identity on a single row)."""
    attn = model.stages[stage].blocks[0].attn
    x = torch.zeros(1, 5, model.embed_dims[stage], dtype=torch.float64)
    with torch.no_grad():
        _, weights = attn(x, grid=(1, 5), return_attn=True)
    return weights[0, :, 0, 1] / weights[0, :, 0, 0]


@pytest.mark.parametrize("name", ["rmt_t", "rmt_b", "sdt_s"])
def test_decay_schedule_per_stage(name):
    model = _build(name, depths=(1, 1, 1, 1)).double()  # the schedule depends on the stage, not on its depth
    for stage in range(4):
        heads, b = model.num_heads[stage], model.heads_ranges[stage]
        assert model.gamma_a[stage] == 2
        expected = 1 - 2 ** -(2 + b * torch.arange(heads, dtype=torch.float64) / heads)
        torch.testing.assert_close(_stage_gammas(model, stage), expected, rtol=1e-6, atol=0)  # float32 rate buffers


def test_published_configurations():
    t, s, b = (_build(n, "meta") for n in ("rmt_t", "rmt_s", "rmt_b"))
    assert t.heads_ranges == s.heads_ranges == (4, 4, 6, 6) and b.heads_ranges == (5, 5, 6, 6)
    assert t.decomposed == (True, True, False, False) and s.decomposed == b.decomposed == (True, True, True, False)
    assert [len(st.blocks) for st in b.stages] == [4, 8, 25, 8]
    unscaled = [isinstance(st.blocks[0].ls1, torch.nn.Identity) for st in b.stages]
    assert unscaled == [True, True, False, False] and model_defaults("rmt_b")["layer_scale_init"] == 1e-6
    assert b.stages[3].blocks[-1].drop_path.p == pytest.approx(0.4) and b.stages[0].blocks[0].drop_path.p == 0
    scaled = _build("rmt_micro", layer_scales=True)
    assert scaled.stages[2].blocks[0].ls1.gamma.detach().eq(1e-6).all()
    for name in ("sdt_t", "sdt_s", "sdt_b"):  # SDT-H: stages 1-2 decomposed at every size
        assert model_defaults(name)["decomposed"] == (True, True, False, False)


def test_fresh_sdt_equals_rmt():
    # A fresh gate reproduces RMT's schedule: same weights, same outputs (both full 2-D here, so that the test holds
    # before and after "cag" gains its decomposed form).
    rmt = create_model("rmt_micro", decomposed=False).eval()
    sdt = create_model("sdt_micro", decomposed=False).eval()
    shared = {k: v for k, v in rmt.state_dict().items() if not k.endswith("bias.log_rate")}  # RMT's fixed rates
    missing, unexpected = sdt.load_state_dict(shared, strict=False)
    assert not unexpected and all("gate_" in k for k in missing) and missing
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(sdt(x), rmt(x), rtol=1e-4, atol=1e-5)


def test_sdt_runs_decomposed_cag_in_stages_1_2():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model = create_model("sdt_micro")
    assert model.decomposed == (True, True, False, False)
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    _check_grads(model)


def test_any_input_size_and_clear_errors():
    model = create_model("rmt_micro").eval()
    for size in [(32, 32), (40, 24), (17, 9)]:
        with torch.no_grad():
            feats = model.forward_features(torch.randn(1, 3, *size))
        assert tuple(feats.shape[-2:]) == model.stage_grids(size)[-1]
    with pytest.raises(ValueError, match=r"images must be \[B, 3, H, W\]"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="stages"):
        create_model("rmt_micro", depths=(1, 1, 1))


def test_flop_counter_counts_cpu_sdpa():
    class Attn(torch.nn.Module):
        def forward(self, x):
            return F.scaled_dot_product_attention(x, x, x)

    B, h, N, d = 2, 3, 10, 8
    model = Attn()
    model.img_size = (N, d)  # input [B, in_chans=h, N, d] through the generic input builder
    model.in_chans = h
    flops = measure_complexity(model, batch_size=B).flops
    assert flops == 4 * B * h * N * N * d  # q k^T and A v, 2 FLOPs per multiply-accumulate


def test_flops_of_rmt_micro_are_its_matmuls_and_convs():
    model = create_model("rmt_micro", attn_kwargs={"backend": "sdpa"})
    c = measure_complexity(model)
    assert c.params == count_params(model) and c.img_size == (32, 32)
    assert c.flops == count_flops(model) == sum(c.by_operator.values())
    assert c.macs == c.flops // 2
    assert any("scaled_dot_product" in op for op in c.by_operator)  # attention counted, not silently 0
    assert model.training  # the counter restores the mode


def test_any_mixer_builds_and_init_values_is_the_deprecated_name_of_gamma_a():
    plain = create_model("rmt_micro", attn_layer="softmax")  # no decay schedule to pass: none is passed
    assert plain(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert not any(isinstance(m, FixedDecay) for m in plain.modules())
    with pytest.warns(DeprecationWarning, match="gamma_a"):
        old = create_model("rmt_micro", init_values=3.0)
    assert old.gamma_a == (3.0,) * 4
    rates = [m.gammas for m in old.modules() if isinstance(m, FixedDecay)]
    torch.testing.assert_close(rates[0], gamma_schedule(len(rates[0]), 3.0, old.heads_ranges[0]).float())
