"""The ``chunked`` pairwise-decay kernel and the grid caches: exact against the materialised reference (float64,
forward and gradients of q, k, v and the rates), in every blocking, with linear memory; cached grid tensors are
built once and a fixed decay's kept bias follows its rates."""

import math
import warnings
from functools import partial

import pytest
import torch

import spatialvit.attention.kernels as kernels
import spatialvit.attention.manhattan as manhattan
from spatialvit.attention import ManhattanBias, create_attention, resolve_backend
from spatialvit.attention.kernels import pairwise_decay_attention, pairwise_decay_bmm
from spatialvit.attention.manhattan import half_distance
from spatialvit.bench import peak_mib

GRID = (3, 5)  # non-square on purpose


def _reference(q, k, v, bias):
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias.dense(), -1) @ v


def _case(prefix: int, rate_batch: int, batch: int = 3, heads: int = 2, grid=GRID, seed: int = 0):
    torch.manual_seed(seed)
    n = prefix + grid[0] * grid[1]
    q, k, v = (torch.randn(batch, heads, n, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    rates = torch.rand(rate_batch, heads, grid[0] * grid[1], dtype=torch.float64, requires_grad=True)
    return q, k, v, rates


def _assert_matches_reference(attend, q, k, v, rates, prefix: int) -> None:
    """``attend(q, k, v, padded rates)`` equals the materialised reference (float64): the output, the gradients of
    q, k, v and the rates, and the output without gradients (inference)."""
    bias = ManhattanBias(GRID, rates, num_prefix=prefix)
    ref = _reference(q, k, v, bias)
    out = attend(q, k, v, bias.pairwise_rates())
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    weights = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * weights).sum(), [q, k, v, rates])
    g_out = torch.autograd.grad((out * weights).sum(), [q, k, v, rates])
    for name, a, b in zip(["q", "k", "v", "rates"], g_out, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m, name=name: f"grad of {name}: {m}")
    with torch.no_grad():
        torch.testing.assert_close(attend(q, k, v, bias.pairwise_rates()), ref)


@pytest.mark.parametrize("block", [2**18, 64, 1])  # one block, several image groups, one image per block
@pytest.mark.parametrize("rows", [None, 1, 4, 7])  # every row at once, or chunks that do not divide N
@pytest.mark.parametrize("rate_batch", [1, 3])  # rates shared by the batch (fixed, learnable decay) or per image
@pytest.mark.parametrize("prefix", [0, 1, 2])
def test_chunked_kernel_equals_reference_forward_and_grads(prefix, rate_batch, rows, block, monkeypatch):
    monkeypatch.setattr(kernels, "BLOCK_ELEMENTS", block)
    q, k, v, rates = _case(prefix, rate_batch)
    attend = partial(pairwise_decay_attention, grid=GRID, num_prefix=prefix, rows=rows)
    _assert_matches_reference(attend, q, k, v, rates, prefix)


@pytest.mark.parametrize("block", [2**18, 2 * 2 * 17 * 17, 1])  # one group of images, groups of 2, one per group
@pytest.mark.parametrize("rate_batch", [1, 3])
@pytest.mark.parametrize("prefix", [0, 1, 2])
def test_pairwise_bmm_kernel_equals_reference_forward_and_grads(prefix, rate_batch, block, monkeypatch):
    """The small-grid kernel: in place by groups of images without gradients; with them, the weights kept and the
    rates' gradient by hand. q, k, v laid out as after a head split."""
    monkeypatch.setattr(kernels, "BMM_BLOCK_ELEMENTS", block)
    q, k, v, rates = _case(prefix, rate_batch)
    q, k, v = (t.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_() for t in (q, k, v))
    _assert_matches_reference(partial(pairwise_decay_bmm, grid=GRID, num_prefix=prefix), q, k, v, rates, prefix)


def test_chunked_kernel_builds_distance_rows_when_the_grid_is_too_large_to_cache(monkeypatch):
    monkeypatch.setattr(kernels, "HALF_DISTANCE_CACHE_MAX", 0)  # every chunk's -D/2 rows from the coordinates
    grid = (4, 6)
    q, k, v, rates = _case(1, 2, batch=2, grid=grid, seed=1)
    bias = ManhattanBias(grid, rates, num_prefix=1)
    ref = _reference(q, k, v, bias)
    out = pairwise_decay_attention(q, k, v, bias.pairwise_rates(), grid, 1, rows=5)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    g_ref = torch.autograd.grad(ref.sum(), [q, k, v, rates])
    g_out = torch.autograd.grad(out.sum(), [q, k, v, rates])
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_chunked_training_memory_is_linear_in_tokens():
    """Forward + backward of the chunked kernel never holds an N x N tensor: 4x the tokens, < 4.5x the memory
    (the dense bias alone would be 16x), and far below one N x N bias per image and head."""

    def peak(side: int) -> float:
        n = side * side
        q, k, v = (torch.randn(1, 2, n, 16, requires_grad=True) for _ in range(3))
        rates = torch.rand(1, 2, n, requires_grad=True)

        def step():
            pairwise_decay_attention(q, k, v, rates, (side, side), 0).sum().backward()

        step()
        return peak_mib(step)

    small, large = peak(32), peak(64)  # N = 1024, 4096
    assert large < 4.5 * small
    assert large < 2 * 4096**2 * 4 / 2**20 / 4  # a quarter of one [1, 2, N, N] float32 bias


def test_chunked_backend_falls_back_to_sdpa_with_dropout_and_stays_exact():
    mixer = create_attention("cag", 24, num_heads=3, num_prefix_tokens=1, backend="chunked", attn_drop=0.5)
    mixer.double().eval()  # eval: no dropout, the chunked kernel runs
    ref = create_attention("cag", 24, num_heads=3, num_prefix_tokens=1, backend="reference").double()
    ref.load_state_dict(mixer.state_dict())
    x = torch.randn(2, 16, 24, dtype=torch.float64)
    torch.testing.assert_close(mixer(x, GRID), ref(x, GRID))
    mixer.train()
    with pytest.warns(RuntimeWarning, match="chunked.*dropout"):
        assert mixer(x, GRID).shape == x.shape


def test_grid_tensors_are_cached_usable_with_autograd_and_rebuilt_per_dtype():
    a = half_distance((5, 7), 1, torch.device("cpu"), torch.float32)
    with torch.inference_mode():  # built in inference mode, still a normal tensor
        b = half_distance((5, 7), 2, torch.device("cpu"), torch.float32)
    assert a is half_distance((5, 7), 1, torch.device("cpu"), torch.float32)  # built once
    assert not b.is_inference() and b is half_distance((5, 7), 2, torch.device("cpu"), torch.float32)
    assert half_distance((5, 7), 1, torch.device("cpu"), torch.float64).dtype == torch.float64
    assert a[:1].abs().max() == 0 and a[:, :1].abs().max() == 0 and a.shape == (36, 36)
    torch.testing.assert_close(a[1:, 1:], -0.5 * manhattan.manhattan_distance((5, 7)))


def test_fixed_decay_keeps_its_dense_bias_and_follows_its_rates():
    mixer = create_attention("decay", 24, num_heads=3, num_prefix_tokens=1, learnable_decay=True).double()
    x = torch.randn(2, 16, 24, dtype=torch.float64)

    def fresh():
        return ManhattanBias(GRID, mixer.bias.log_rate.exp()[None, :, None].expand(1, 3, 15), 1).dense()

    with torch.no_grad():
        kept = mixer.bias(x, GRID, 1).dense()
        assert kept is mixer.bias(x, GRID, 1).dense()  # built once for these rates
        torch.testing.assert_close(kept, fresh())
        mixer.bias.log_rate.add_(0.3)  # a changed rate (an optimiser step, a load) is never served stale
        changed = mixer.bias(x, GRID, 1).dense()
        assert changed is not kept
        torch.testing.assert_close(changed, fresh())
    # while the rates train, nothing is kept: the bias carries their gradient
    bias = mixer.bias(x, GRID, 1)
    assert bias.precomputed is None and bias.dense().requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mixer(x.requires_grad_(), GRID).sum().backward()
    assert mixer.bias.log_rate.grad.abs().sum() > 0


def test_fixed_decay_keeps_no_bias_beyond_its_budget_and_auto_then_runs_chunked(monkeypatch):
    import spatialvit.attention.decay as decay

    mixer = create_attention("decay", 24, num_heads=3, num_prefix_tokens=1)
    x = torch.randn(2, 16, 24)
    q = mixer.project(x, GRID)[0]
    assert mixer.bias(x, GRID, 1).precomputed is not None  # 3 x 16 x 16 entries: kept
    assert resolve_backend("auto", mixer.supported_backends, q, mixer.bias(x, GRID, 1)) == "sdpa"
    monkeypatch.setattr(decay, "KEEP_DENSE_MAX", 3 * 16 * 16 - 1)
    bias = mixer.bias(x, GRID, 1)
    assert bias.precomputed is None
    small = torch.randn(400, 3, 16, 8)  # inference on a small grid: the materialised path
    assert resolve_backend("auto", mixer.supported_backends, small, bias) == "bmm"
    assert resolve_backend("auto", mixer.supported_backends, small.requires_grad_(), bias) == "sdpa"  # one block
    many = torch.randn(6000, 3, 16, 8)  # its dense bias would exceed backend.CPU_DENSE_BIAS_MAX_ELEMENTS
    assert resolve_backend("auto", mixer.supported_backends, many, bias) == "chunked"


def test_chunked_is_refused_where_it_cannot_compute_the_bias():
    with pytest.raises(ValueError, match="warped"):
        create_attention("cag", 24, num_heads=3, form="warped", backend="chunked")
    with pytest.raises(ValueError, match="decomposed"):
        create_attention("decay", 24, num_heads=3, decomposed=True, backend="chunked")
    with pytest.raises(ValueError, match="backend"):
        create_attention("softmax", 24, num_heads=3, backend="chunked")
