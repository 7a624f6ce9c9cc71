"""Spatial attention family: every fast backend against the materialised reference (float64, forward and
gradients, with/without a class token, non-square grids), the properties the spec pins, and one training step of
every registered spatial model."""

import math
import warnings

import pytest
import torch

from spatialvit.attention import (
    ContextDecay,
    ManhattanBias,
    create_attention,
    factorised_attention,
    manhattan_distance,
    resolve_backend,
)
from spatialvit.attention.manhattan import gamma_schedule
from spatialvit.models import create_model, list_models

GRID = (3, 5)  # non-square on purpose
DIM, HEADS = 24, 3  # head dim 8


def _x(prefix: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, prefix + GRID[0] * GRID[1], DIM, dtype=torch.float64, requires_grad=True)


def _pair(name: str, backend: str, prefix: int, **kwargs):
    """A mixer on ``backend`` and an identical copy on ``reference`` (float64)."""
    fast = create_attention(name, DIM, num_heads=HEADS, num_prefix_tokens=prefix, backend=backend, **kwargs).double()
    ref = create_attention(name, DIM, num_heads=HEADS, num_prefix_tokens=prefix, backend="reference", **kwargs)
    ref = ref.double()
    if isinstance(fast.bias, ContextDecay):  # make the content gate matter
        with torch.no_grad():
            fast.bias.gate_weight.normal_(0, 0.5)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def _choose(mixer, q, bias):
    """The kernel the backend resolver picks for ``mixer`` on this call."""
    return resolve_backend(mixer.backend, mixer.supported_backends, q, bias)


def _outputs_and_grads(mixer, x):
    y = mixer(x, GRID)
    loss = (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum()
    params = [p for p in mixer.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [x, *params])
    return y, grads


CASES = [
    ("decay", "sdpa", {}),
    ("decay", "factorised", {}),
    ("decay", "factorised", {"learnable_decay": True}),
    ("decay", "sdpa", {"decomposed": True, "learnable_decay": True}),
    ("cag", "sdpa", {}),
    ("cag", "factorised", {}),
    ("cag", "factorised", {"alpha": 0.5}),
    ("cag", "sdpa", {"form": "warped"}),
    ("cag", "sdpa", {"decomposed": True}),
    ("cag", "sdpa", {"decomposed": True, "alpha": 0.5, "rope": True, "lepe_kernel": 3}),
    ("decay", "factorised", {"rope": True, "lepe_kernel": 3}),
    ("decay", "sdpa", {"decomposed": True, "rope": True, "lepe_kernel": 5}),
    ("cag", "factorised", {"rope": True, "lepe_kernel": 3}),
    ("decay", "chunked", {}),
    ("decay", "chunked", {"learnable_decay": True}),
    ("cag", "chunked", {}),
    ("cag", "chunked", {"alpha": 0.5, "rope": True, "lepe_kernel": 3}),
    ("conv_qkv", "sdpa", {}),
    ("conv_qkv", "sdpa", {"conv_mode": "separable", "kernel_size": 5}),
    ("gpsa", "sdpa", {}),
    ("softmax", "bmm", {}),
    ("decay", "bmm", {}),
    ("decay", "bmm", {"learnable_decay": True}),
    ("cag", "bmm", {}),
    ("cag", "bmm", {"alpha": 0.5, "rope": True, "lepe_kernel": 3}),
    ("cag", "bmm", {"form": "warped"}),
    ("conv_qkv", "bmm", {}),
    ("gpsa", "bmm", {}),
]


@pytest.mark.parametrize("prefix", [0, 1])
@pytest.mark.parametrize(("name", "backend", "kwargs"), CASES, ids=[f"{n}-{b}-{k}" for n, b, k in CASES])
def test_backend_matches_reference_forward_and_grads(name, backend, kwargs, prefix):
    fast, ref = _pair(name, backend, prefix, **kwargs)
    x = _x(prefix)
    y_fast, g_fast = _outputs_and_grads(fast, x)
    y_ref, g_ref = _outputs_and_grads(ref, x)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-9, atol=1e-11)
    names = ["x", *(n for n, p in fast.named_parameters() if p.requires_grad)]
    for n, a, b in zip(names, g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=lambda m, n=n: f"grad of {n}: {m}")
    if "bias.gate_weight" in names:
        assert g_fast[names.index("bias.gate_weight")].abs().sum() > 0  # gradients reach the gate
    _, attn = fast(x, GRID, return_attn=True)  # maps from every variant: rows are distributions
    n = x.shape[1]
    assert attn.shape == (2, HEADS, n, n) and (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, HEADS, n, dtype=torch.float64))


INFERENCE = [("softmax", {}), ("decay", {}), ("cag", {}), ("cag", {"form": "warped"}), ("conv_qkv", {}), ("gpsa", {})]


@pytest.mark.parametrize("prefix", [0, 1])
@pytest.mark.parametrize(("name", "kwargs"), INFERENCE, ids=[f"{n}-{k}" for n, k in INFERENCE])
def test_auto_inference_on_a_small_cpu_grid_is_bmm_in_place_and_equals_reference(name, kwargs, prefix):
    """Without gradients a small CPU grid runs the in-place ``bmm`` path: equal to the reference, and a bias the
    mixer keeps (fixed decay) is not overwritten (a second call gives the same output)."""
    fast, ref = _pair(name, "auto", prefix, **kwargs)
    x = _x(prefix, batch=3).detach()
    with torch.no_grad():
        q = fast.project(x, GRID)[0]
        assert _choose(fast, q, fast.spatial_bias(x, GRID)) == "bmm"
        first, second, expected = fast(x, GRID), fast(x, GRID), ref(x, GRID)
    torch.testing.assert_close(first, expected, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    # training: SDPA's fused kernels, except for pairwise rates that need a gradient (weights kept, backward by hand)
    trained_pairwise_rates = name == "cag" and not kwargs
    assert (_choose(fast, fast.project(x, GRID)[0], fast.spatial_bias(x, GRID)) == "bmm") == trained_pairwise_rates


def test_auto_inference_bmm_only_on_small_grids():
    plain = create_attention("softmax", DIM, num_heads=HEADS, num_prefix_tokens=1)
    decomposed = create_attention("decay", DIM, num_heads=HEADS, num_prefix_tokens=1, decomposed=True).double()
    with torch.no_grad():
        assert _choose(plain, torch.randn(2, HEADS, 128, 8), None) == "bmm"
        assert _choose(plain, torch.randn(2, HEADS, 129, 8), None) == "sdpa"  # more tokens: the fused kernel
        assert _choose(plain, torch.randn(160, 3, 100, 8), None) == "sdpa"  # 4.8 M logits > 2**22
        x = _x(1).detach()
        bias = decomposed.spatial_bias(x, GRID)
        assert _choose(decomposed, decomposed.project(x, GRID)[0], bias) == "sdpa"  # rows then columns


@pytest.mark.parametrize("block", [2**18, 2 * 11 * 11, 1])  # one group of images, groups of 1 and 2, one per group
@pytest.mark.parametrize("broadcast", [False, True])
def test_bmm_kernel_in_place_equals_reference(broadcast, block, monkeypatch):
    """The kernel without gradients (float64): in place by groups of images, with no bias, a per-image or a shared
    bias (left as it was), and a blend of the weights (``mix``); with gradients it is the reference itself."""
    import spatialvit.attention.kernels as kernels

    monkeypatch.setattr(kernels, "BMM_BLOCK_ELEMENTS", block)
    torch.manual_seed(0)
    B, h, N = 3, 2, 11
    q, k, v = (torch.randn(B, N, h, 8, dtype=torch.float64).transpose(1, 2) for _ in range(3))
    bias = torch.randn(1 if broadcast else B, h, N, N, dtype=torch.float64)
    kept = bias.clone()
    with torch.no_grad():
        for b in (None, bias):
            expected = kernels.reference_attention(q, k, v, b, 0.3)[0]
            torch.testing.assert_close(kernels.bmm_attention(q, k, v, b, 0.3), expected, rtol=1e-12, atol=1e-12)
        assert torch.equal(bias, kept)
        other = torch.softmax(torch.randn(1, h, N, N, dtype=torch.float64), -1)
        weights = kernels.reference_attention(q, k, v, bias, 0.3)[1].lerp(other, 0.25)
        blended = kernels.bmm_attention(q, k, v, bias, 0.3, mix=lambda w: w.lerp_(other, 0.25))
        torch.testing.assert_close(blended, weights @ v, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="mix"):
        kernels.bmm_attention(q, k, v.requires_grad_(), bias, 0.3, mix=lambda w: w)


def test_factorised_kernel_equals_dense_bias_with_prefix():
    """The low-rank columns reproduce the dense pairwise bias (random rates, class token) through plain SDPA."""
    torch.manual_seed(3)
    B, h, P = 2, 3, 1
    N = P + GRID[0] * GRID[1]
    rates = torch.rand(B, h, N - P, dtype=torch.float64, requires_grad=True)
    q, k, v = (torch.randn(B, h, N, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = ManhattanBias(GRID, rates, num_prefix=P)
    dense = bias.dense()
    ref = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8) + dense, -1) @ v
    fast = factorised_attention(q, k, v, *bias.columns())
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
    g_ref = torch.autograd.grad(ref.sum(), [q, k, v, rates])
    g_fast = torch.autograd.grad(fast.sum(), [q, k, v, rates])
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert dense[:, :, :P].abs().max() == 0 and dense[:, :, :, :P].abs().max() == 0  # no decay to/from prefix


@pytest.mark.parametrize("form", ["pairwise", "warped"])
def test_decay_bias_symmetric_zero_diagonal(form):
    rates = torch.rand(2, 3, GRID[0] * GRID[1], dtype=torch.float64)
    bias = ManhattanBias(GRID, rates, num_prefix=1, form=form).dense()
    torch.testing.assert_close(bias, bias.transpose(-1, -2))
    assert bias.diagonal(dim1=-2, dim2=-1).abs().max() == 0
    off_diagonal = ~torch.eye(GRID[0] * GRID[1], dtype=torch.bool)
    assert (bias[..., 1:, 1:][..., off_diagonal] < 0).all()  # a real decay between distinct grid tokens


def test_fixed_decay_bias_is_log_gamma_times_distance_and_equals_product_form():
    mixer = create_attention("decay", DIM, num_heads=4).double()
    gam = gamma_schedule(4)
    torch.testing.assert_close(mixer.gammas.double(), gam, rtol=1e-6, atol=0)
    assert (gam[1:] > gam[:-1]).all() and gam[0] == 0.75  # heads spread from short to long range
    x = torch.randn(1, 15, DIM, dtype=torch.float64)
    bias = mixer.spatial_bias(x, GRID).dense()[0]
    D = manhattan_distance(GRID).double()
    torch.testing.assert_close(bias, mixer.gammas.double().log()[:, None, None] * D)
    # RMT's code adds log(gamma) D to the logits; its paper multiplies the weights by gamma^D: same after normalising
    logits = torch.randn(4, 15, 15, dtype=torch.float64)
    additive = torch.softmax(logits + bias, -1)
    product = logits.exp() * mixer.gammas.double()[:, None, None] ** D
    torch.testing.assert_close(additive, product / product.sum(-1, keepdim=True))


@pytest.mark.parametrize("form", ["pairwise", "warped"])
def test_cag_with_constant_gate_equals_fixed_decay(form):
    fixed = create_attention("decay", DIM, num_heads=HEADS, num_prefix_tokens=1, backend="reference").double()
    cag = create_attention("cag", DIM, num_heads=HEADS, num_prefix_tokens=1, form=form, backend="reference").double()
    assert cag.bias.gate_weight.abs().sum() == 0  # initialised content-free
    cag.load_state_dict(fixed.state_dict(), strict=False)
    x = _x(1)
    # at init (parameters stored in float32: equal up to float32 rounding of the schedule)
    torch.testing.assert_close(cag(x, GRID), fixed(x, GRID), rtol=1e-6, atol=1e-6)
    with torch.no_grad():  # the same schedule in float64: equal to float64 precision
        cag.bias.gate_bias.copy_(torch.logit(torch.exp(-fixed.bias.log_rate.exp())))
    torch.testing.assert_close(cag(x, GRID), fixed(x, GRID), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        cag.bias.gate_weight.normal_()
    assert not torch.allclose(cag(x, GRID), fixed(x, GRID))


def test_positional_attention_is_identical_for_two_images():
    mixer = create_attention("positional", DIM, num_heads=HEADS, num_prefix_tokens=1)
    x1, x2 = torch.randn(1, 16, DIM), torch.randn(1, 16, DIM) * 3 + 1
    _, a1 = mixer(x1, GRID, return_attn=True)
    _, a2 = mixer(x2, GRID, return_attn=True)
    assert a1.shape == (1, HEADS, 16, 16)
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)
    torch.testing.assert_close(a1.sum(-1), torch.ones(1, HEADS, 16))
    # one map per forward, shared by the batch; learned grid resamples to another grid; sincos works too
    _, batch_maps = mixer(torch.cat([x1, x2]), GRID, return_attn=True)
    torch.testing.assert_close(batch_maps[0], batch_maps[1], rtol=0, atol=0)
    assert mixer(torch.randn(2, 1 + 7 * 6, DIM), (7, 6)).shape == (2, 43, DIM)
    sincos = create_attention("positional", DIM, num_heads=HEADS, pos_type="sincos")
    assert sincos(torch.randn(2, 15, DIM), GRID).shape == (2, 15, DIM)


def test_positional_gradients_reach_positions_not_content_of_weights():
    mixer = create_attention("positional", DIM, num_heads=HEADS).double()
    x = _x(0)
    mixer(x, GRID).square().sum().backward()
    assert mixer.positional.pos.grad.abs().sum() > 0 and mixer.positional.qk.weight.grad.abs().sum() > 0


def test_gpsa_gate_extremes():
    gpsa = create_attention("gpsa", DIM, num_heads=HEADS, num_prefix_tokens=1).double()
    x = _x(1)
    with torch.no_grad():
        gpsa.gating.fill_(50.0)  # all positional
    _, attn = gpsa(x, GRID, return_attn=True)
    torch.testing.assert_close(attn[0], gpsa.positional(GRID, x)[0])
    with torch.no_grad():
        gpsa.gating.fill_(-50.0)  # all content: plain softmax attention with the same weights
    plain = create_attention("softmax", DIM, num_heads=HEADS, num_prefix_tokens=1).double()
    plain.load_state_dict(gpsa.state_dict(), strict=False)
    torch.testing.assert_close(gpsa(x, GRID), plain(x, GRID))


def test_gpsa_local_init_is_convits():
    """ConViT's locality init: head h1 + k*h2 scores alpha (2 dx_h dx + 2 dy_h dy - dx^2 - dy^2), so it peaks at its
    own offset; the values start as the identity; local_init=False leaves both at the generic init."""
    gpsa = create_attention("gpsa", 16, num_heads=4, locality_strength=2.0)
    want = 2.0 * torch.tensor([[-1.0, -1, -1], [-1, 1, -1], [1, -1, -1], [1, 1, -1]])
    torch.testing.assert_close(gpsa.positional.pos_proj.weight.detach(), want)
    torch.testing.assert_close(gpsa.qkv.weight[32:].detach(), torch.eye(16))
    assert gpsa.gating.detach().tolist() == [1.0] * 4  # ConViT's gating_param init
    grid = (5, 5)
    pos = gpsa.positional(grid, torch.zeros(1))[0]  # [heads, 25, 25]
    centre = 12  # (y, x) = (2, 2)
    for h, (dx, dy) in enumerate([(-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)]):
        row = pos[h, centre].view(5, 5)
        top = {(2 + dy_, 2 + dx_) for dy_ in (0, dy * 2) for dx_ in (0, dx * 2)}  # the 2x2 block towards the offset
        best = {divmod(int(i), 5) for i in (row.flatten() >= row.max() - 1e-6).nonzero()}
        assert best == {(int(a), int(b)) for a, b in top}, h
    plain = create_attention("gpsa", 16, num_heads=4, local_init=False)
    assert plain.positional.pos_proj.weight.abs().max() < 0.1 and not torch.equal(plain.qkv.weight[32:], torch.eye(16))
    nine = create_attention("gpsa", 18, num_heads=9).positional.pos_proj.weight.detach()
    assert nine[:, :2].unique().tolist() == [-2.0, 0.0, 2.0] and (nine[:, 2] == -1).all()  # the 3x3 neighbourhood


def test_gpsa_positional_scores_are_relative_and_learn():
    gpsa = create_attention("gpsa", DIM, num_heads=HEADS, num_prefix_tokens=1).double()
    with torch.no_grad():
        gpsa.positional.pos_proj.weight.normal_()
    pos = gpsa.positional((4, 6), torch.zeros(1, dtype=torch.float64))[0, :, 1:, 1:]
    logits = pos.log() - pos.log()[..., :1]  # up to each row's constant (prefix key dropped: same in every row)
    # relative: the score of (query, key) depends on the offset only, e.g. (0,0)->(1,2) equals (2,3)->(3,5)
    torch.testing.assert_close(logits[:, 0, 8] - logits[:, 0, 0], logits[:, 15, 23] - logits[:, 15, 15])
    x = _x(1)
    gpsa(x, GRID).sum().backward()
    assert gpsa.positional.pos_proj.weight.grad.abs().sum() > 0 and gpsa.positional.prefix_logit.grad.abs().sum() > 0
    assert gpsa.gating.grad.abs().sum() > 0
    # the grid-only features are cached; the map itself is rebuilt every forward (it depends on parameters)
    feats = gpsa.positional.features(GRID, x.device)
    assert gpsa.positional.features(GRID, x.device) is feats and feats.shape == (15, 15, 3)


def test_fresh_gpsa_vit_is_local():
    """A fresh vit_gpsa_micro_patch4 attends locally (ConViT's init): its mean attention distance is well below that
    of uniform attention over the grid, in every layer and head; without the locality init it is about uniform."""
    from spatialvit.probes.attention_maps import mean_attention_distance, token_distances

    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    uniform = token_distances((8, 8), 4).mean().item()  # 16.5 px on the 8x8 grid of 4-px patches
    local = mean_attention_distance(create_model("vit_gpsa_micro_patch4").eval(), x)
    assert local.shape == (4, 4) and local.max() < 0.5 * uniform  # measured: 7.8 px
    flat = mean_attention_distance(create_model("vit_gpsa_micro_patch4", attn_kwargs={"local_init": False}).eval(), x)
    assert flat.mean() > 0.9 * uniform


def test_old_gpsa_checkpoint_is_refused_clearly():
    gpsa = create_attention("gpsa", DIM, num_heads=HEADS, num_prefix_tokens=1)
    old = {k: v for k, v in gpsa.state_dict().items() if not k.startswith("positional.")}
    old |= {"positional.pos": torch.zeros(1, 8, 8, DIM), "positional.qk.weight": torch.zeros(2 * DIM, DIM)}
    with pytest.raises(RuntimeError, match=r"GPSA of spatialvit 0\.1"):
        gpsa.load_state_dict(old)


def test_conv_qkv_is_position_aware_while_plain_mixer_is_equivariant():
    torch.manual_seed(0)
    x = torch.randn(1, 15, DIM)
    perm = torch.randperm(15)
    conv = create_attention("conv_qkv", DIM, num_heads=HEADS)
    plain = create_attention("softmax", DIM, num_heads=HEADS)
    torch.testing.assert_close(plain(x, GRID)[:, perm], plain(x[:, perm], GRID), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(conv(x, GRID)[:, perm], conv(x[:, perm], GRID), atol=1e-3)


def test_conv_qkv_with_1x1_kernel_equals_linear_projection():
    conv = create_attention("conv_qkv", DIM, num_heads=HEADS, num_prefix_tokens=1, kernel_size=1).double()
    plain = create_attention("softmax", DIM, num_heads=HEADS, num_prefix_tokens=1).double()
    plain.load_state_dict(conv.state_dict(), strict=False)
    with torch.no_grad():
        plain.qkv.weight.copy_(conv.grid_qkv.conv.weight[:, :, 0, 0])
        plain.qkv.bias.copy_(conv.grid_qkv.conv.bias)
    conv.qkv.load_state_dict(plain.qkv.state_dict())  # the class token's linear path
    x = _x(1)
    torch.testing.assert_close(conv(x, GRID), plain(x, GRID))


def test_auto_backend_choice_and_flex_fallback_warns():
    mixer = create_attention("decay", DIM, num_heads=HEADS, num_prefix_tokens=1)
    learnable = create_attention("decay", DIM, num_heads=HEADS, num_prefix_tokens=1, learnable_decay=True)
    cag = create_attention("cag", DIM, num_heads=HEADS, num_prefix_tokens=1)
    warped = create_attention("cag", DIM, num_heads=HEADS, num_prefix_tokens=1, form="warped")
    grid = (16, 16)  # 256 grid tokens + a class token: still a small grid (prefix tokens not counted)
    xs = torch.randn(2, 257, DIM, requires_grad=True)
    q = mixer.project(xs, grid)[0]
    # small grids on CPU: a fixed decay's kept dense bias through SDPA; trained or content-dependent rates: chunked
    assert _choose(mixer, q, mixer.spatial_bias(xs, grid)) == "sdpa"
    assert _choose(learnable, q, learnable.spatial_bias(xs, grid)) == "chunked"
    assert _choose(cag, q, cag.spatial_bias(xs, grid)) == "chunked"
    with torch.no_grad():
        assert _choose(learnable, q, learnable.spatial_bias(xs, grid)) == "sdpa"
        assert _choose(cag, q, cag.spatial_bias(xs, grid)) == "sdpa"  # 2 x 3 x 257 x 257: a small dense bias
        many = torch.randn(32, 257, DIM)  # 32 x 3 x 257 x 257 > 2**22 entries
        assert _choose(cag, cag.project(many, grid)[0], cag.spatial_bias(many, grid)) == "chunked"
    assert _choose(warped, q, warped.spatial_bias(xs, grid)) == "sdpa"
    one_block = torch.randn(1, 65, DIM, requires_grad=True)  # 1 x 3 x 65 x 65 logits: the small-grid kernel
    assert _choose(cag, cag.project(one_block, (8, 8))[0], cag.spatial_bias(one_block, (8, 8))) == "bmm"
    one_block = torch.randn(1, 145, DIM, requires_grad=True)  # 12 x 12 grid: beyond it, a single block of chunked
    assert _choose(cag, cag.project(one_block, (12, 12))[0], cag.spatial_bias(one_block, (12, 12))) == "sdpa"
    big = (17, 17)  # 289 tokens: no N x N tensor
    xb = torch.randn(1, 290, DIM, requires_grad=True)
    qb = mixer.project(xb, big)[0]
    assert _choose(mixer, qb, mixer.spatial_bias(xb, big)) == "sdpa"  # its kept bias: 3 x 290 x 290 entries
    assert _choose(learnable, qb, learnable.spatial_bias(xb, big)) == "chunked"
    assert _choose(cag, qb, cag.spatial_bias(xb, big)) == "chunked"
    assert _choose(warped, qb, warped.spatial_bias(xb, big)) == "sdpa"  # training on CPU: no flex
    assert resolve_backend("auto", cag.supported_backends, qb, cag.spatial_bias(xb, big), dropout_p=0.1) == (
        "factorised"  # the chunked kernel has no attention dropout
    )
    x = torch.randn(2, 15, DIM, requires_grad=True)
    flex = create_attention("cag", DIM, num_heads=HEADS, backend="flex").double()
    ref = create_attention("cag", DIM, num_heads=HEADS, backend="reference").double()
    ref.load_state_dict(flex.state_dict())
    xd = x.detach().double().requires_grad_()
    with pytest.warns(RuntimeWarning, match="flex.*unavailable"):
        out = flex(xd, GRID)  # float64 and backward: flex cannot serve, falls back (warned), stays correct
    torch.testing.assert_close(out, ref(xd, GRID))


def test_rope_logits_depend_on_relative_position_only():
    from spatialvit.attention.posenc import rope_2d

    q, k = torch.randn(2, 1, 1, 8, dtype=torch.float64).unbind(0)
    grid = (4, 4)
    rq = rope_2d(q.expand(1, 16, 8)[None], grid, 0)[0, 0]  # the same vector at every position
    rk = rope_2d(k.expand(1, 16, 8)[None], grid, 0)[0, 0]
    logits = rq @ rk.T  # [16, 16]
    # shifting both tokens by the same offset leaves the logit unchanged: (0,0)-(1,2) vs (2,1)-(3,3)
    torch.testing.assert_close(logits[0, 1 * 4 + 2], logits[2 * 4 + 1, 3 * 4 + 3])
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(16))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="backend"):
        create_attention("softmax", DIM, num_heads=HEADS, backend="flex")
    with pytest.raises(ValueError, match="warped"):
        create_attention("cag", DIM, num_heads=HEADS, form="warped", backend="factorised")
    with pytest.raises(ValueError, match="form"):
        create_attention("cag", DIM, num_heads=HEADS, form="cumulative")
    with pytest.raises(ValueError, match="decomposed"):
        create_attention("decay", DIM, num_heads=HEADS, decomposed=True, backend="factorised")
    with pytest.raises(ValueError, match="kernel_size"):
        create_attention("conv_qkv", DIM, num_heads=HEADS, kernel_size=2)
    with pytest.raises(ValueError, match="conv mode"):
        create_attention("conv_qkv", DIM, num_heads=HEADS, conv_mode="dilated")
    with pytest.raises(ValueError, match="pos_type"):
        create_attention("positional", DIM, num_heads=HEADS, pos_type="rope")
    with pytest.raises(ValueError, match="rope"):
        create_attention("decay", DIM, num_heads=4, rope=True)  # head dim 6
    with pytest.raises(ValueError, match="lepe_kernel"):
        create_attention("decay", DIM, num_heads=HEADS, lepe_kernel=4)
    with pytest.raises(ValueError, match="alpha"):
        create_attention("cag", DIM, num_heads=HEADS, alpha=0)


SPATIAL = [n for f in ("convqkv", "posattn", "gpsa", "rmt", "sdt") for n in list_models(f"vit_{f}_*")]


def test_every_family_registered_at_every_size_and_patch():
    assert len(SPATIAL) == 5 * 3 * 2


@pytest.mark.parametrize("name", SPATIAL)
def test_registered_model_trains_one_step(name):
    img = 32 if name.endswith("patch16") else 16
    model = create_model(
        name, num_classes=4, img_size=img, embed_dim=32, depth=2, num_heads=4 if "micro" in name else 2
    )
    torch.manual_seed(0)
    x, y = torch.rand(8, 3, img, img), torch.arange(8) % 4
    opt = torch.optim.SGD(model.parameters(), lr=0.003)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(model(x), y)
    assert after < loss
    maps = model.attention_maps(x[:2])
    n = model.num_prefix_tokens + (img // model.patch_size) ** 2
    assert len(maps) == 2 and maps[0].shape == (2, model.blocks[0].attn.num_heads, n, n)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, maps[0].shape[1], n))


def test_first_k_layers_positional():
    model = create_model("vit_micro_patch4", attn_layer=["positional"] * 2 + ["softmax"] * 2, img_size=16)
    assert [type(b.attn).__name__ for b in model.blocks][:3] == [
        "PositionalAttention",
        "PositionalAttention",
        "SoftmaxAttention",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model(torch.rand(2, 3, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("prefix", [0, 1])
def test_decomposed_cag_with_constant_gate_equals_decomposed_fixed_decay(prefix):
    fixed = create_attention("decay", DIM, num_heads=HEADS, num_prefix_tokens=prefix, decomposed=True).double()
    cag = create_attention("cag", DIM, num_heads=HEADS, num_prefix_tokens=prefix, decomposed=True).double()
    cag.load_state_dict({k: v for k, v in fixed.state_dict().items() if "log_rate" not in k}, strict=False)
    with torch.no_grad():
        cag.bias.gate_bias.copy_(torch.logit(torch.exp(-fixed.bias.log_rate.exp())))
    x = _x(prefix)
    torch.testing.assert_close(cag(x, GRID), fixed(x, GRID), rtol=1e-12, atol=1e-12)
    _, a_cag = cag(x, GRID, return_attn=True)
    _, a_fixed = fixed(x, GRID, return_attn=True)
    torch.testing.assert_close(a_cag, a_fixed, rtol=1e-12, atol=1e-12)
