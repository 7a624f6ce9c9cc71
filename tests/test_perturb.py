"""Property tests of the block perturbations against naive per-image references (spec: sensitivity.md)."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from spatialvit.probes import block_mask, block_rotate, block_shuffle, is_aligned
from spatialvit.probes.perturb import image_seeds, masked_count, mix32

SIDES = [(1, 1), (2, 1), (1, 3), (2, 2), (3, 2), (4, 4)]  # (rows, cols) of a grid
fast = settings(max_examples=25, deadline=None)


def naive_blocks(img: torch.Tensor, rows: int, cols: int) -> list[torch.Tensor]:
    """The blocks of one image ``[C, H, W]`` in row-major order, cut with Python slicing."""
    bh, bw = img.shape[1] // rows, img.shape[2] // cols
    return [img[:, i * bh : (i + 1) * bh, j * bw : (j + 1) * bw] for i in range(rows) for j in range(cols)]


def naive_assemble(blocks: list[torch.Tensor], rows: int, cols: int) -> torch.Tensor:
    return torch.cat([torch.cat(blocks[i * cols : (i + 1) * cols], dim=2) for i in range(rows)], dim=1)


def block_ids(batch: int, rows: int, cols: int, size: int = 2) -> torch.Tensor:
    """Images whose every pixel holds the index of its block: a shuffle's output reveals its permutation."""
    ids = torch.arange(rows * cols, dtype=torch.float64).view(rows, cols)
    img = ids.repeat_interleave(size, 0).repeat_interleave(size, 1)
    return img.expand(batch, 1, -1, -1).clone()


def permutation_of(shuffled_ids: torch.Tensor, rows: int, cols: int) -> list[list[int]]:
    return [[int(b[0, 0, 0]) for b in naive_blocks(img, rows, cols)] for img in shuffled_ids]


images_st = st.tuples(
    st.integers(1, 9), st.sampled_from(SIDES), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2)
)


def make_images(spec: tuple, seed: int = 0) -> tuple[torch.Tensor, int, int]:
    batch, (rows, cols), bh, bw, chans = spec
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, chans, rows * bh, cols * bw, generator=g, dtype=torch.float64), rows, cols


def test_mix32_matches_python_reference():
    def reference(x: int) -> int:  # lowbias32 with Python's unbounded ints
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    xs = [0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 1, 0xDEADBEEF]
    assert mix32(torch.tensor(xs)).tolist() == [reference(x) for x in xs]
    assert [mix32(x) for x in xs] == [reference(x) for x in xs]


@fast
@given(images_st, st.integers(0, 2**40))
def test_shuffle_matches_naive_permutation(spec, seed):
    x, rows, cols = make_images(spec)
    out = block_shuffle(x, (rows, cols), seed=seed)
    perms = permutation_of(block_shuffle(block_ids(len(x), rows, cols), (rows, cols), seed=seed), rows, cols)
    for img, o, perm in zip(x, out, perms):
        assert sorted(perm) == list(range(rows * cols))  # a permutation: the multiset of blocks is unchanged
        blocks = naive_blocks(img, rows, cols)
        torch.testing.assert_close(o, naive_assemble([blocks[p] for p in perm], rows, cols), rtol=0, atol=0)


@fast
@given(images_st, st.integers(0, 2**40), st.data())
def test_results_independent_of_batch_size(spec, seed, data):
    x, rows, cols = make_images(spec)
    cut = data.draw(st.integers(0, len(x)))
    ratio = data.draw(st.floats(0, 1))
    fns = [
        lambda t, i: block_shuffle(t, (rows, cols), seed=seed, index=i, exclude_identity=True),
        lambda t, i: block_mask(t, (rows, cols), ratio, fill="noise", seed=seed, index=i),
    ]
    if x.shape[-2] // rows == x.shape[-1] // cols:  # square blocks
        fns.append(lambda t, i: block_rotate(t, (rows, cols), seed=seed, index=i))
    for fn in fns:
        whole = fn(x, None)
        parts = torch.cat([fn(x[:cut], 0), fn(x[cut:], cut)])
        torch.testing.assert_close(whole, parts, rtol=0, atol=0)
        # A global index tensor works the same as an offset.
        torch.testing.assert_close(fn(x[cut:], torch.arange(cut, len(x))), whole[cut:], rtol=0, atol=0)


def test_same_seed_same_result_and_generator_state_matters():
    x = torch.rand(16, 3, 8, 8)
    assert torch.equal(block_shuffle(x, 4, seed=7), block_shuffle(x, 4, seed=7))
    assert not torch.equal(block_shuffle(x, 4, seed=7), block_shuffle(x, 4, seed=8))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(block_mask(x, 4, 0.5, generator=g1), block_mask(x, 4, 0.5, generator=g2))
    assert torch.equal(block_rotate(x, 4, generator=g1), block_rotate(x, 4, generator=g2))
    # The generator advances: the next call draws a new base seed.
    assert not torch.equal(block_rotate(x, 4, generator=g1), block_rotate(x, 4, generator=torch.Generator()))


@fast
@given(images_st, st.floats(0, 1), st.integers(0, 2**40))
def test_mask_replaces_exactly_round_ratio_blocks(spec, ratio, seed):
    x, rows, cols = make_images(spec)
    out = block_mask(x, (rows, cols), ratio, fill="zero", mean=-1.0, seed=seed)  # the fill is -1, never a pixel
    k = math.floor(ratio * rows * cols + 0.5)
    assert masked_count(ratio, rows * cols) == k
    for img, o in zip(x, out):
        hit = 0
        for b_in, b_out in zip(naive_blocks(img, rows, cols), naive_blocks(o, rows, cols)):
            if (b_out == -1).all():
                hit += 1
            else:
                assert torch.equal(b_in, b_out)  # untouched blocks stay exactly as they were
        assert hit == k


def test_mask_rounds_halves_up():
    assert [masked_count(0.5, n) for n in (1, 3, 9)] == [1, 2, 5]
    assert masked_count(0.0, 64) == 0 and masked_count(1.0, 64) == 64


def test_mask_fills():
    x = torch.rand(64, 3, 16, 16)
    mean, std, data_mean = [0.2, 0.4, 0.6], [0.1, 0.5, 2.0], [0.3, 0.3, 0.3]
    zero = block_mask(x, 4, 1.0, fill="zero", mean=mean, std=std)
    assert torch.allclose((zero - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1), 0 * x)
    assert torch.allclose(block_mask(x, 4, 1.0, fill="mean", data_mean=data_mean, mean=mean), 0 * x + 0.3)
    noise = block_mask(x, 4, 1.0, fill="noise", mean=mean, std=std, seed=0)
    z = (noise - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    # Standard normal after normalisation: moments within 5 standard errors (N = 49,152 draws).
    se = 1 / math.sqrt(z.numel())
    assert abs(z.mean()) < 5 * se and abs(z.std() - 1) < 5 * se * math.sqrt(0.5)
    assert abs(z.pow(3).mean()) < 5 * se * math.sqrt(15) and abs(z.pow(4).mean() - 3) < 5 * se * math.sqrt(96)
    assert not torch.equal(noise[0], noise[1])  # fresh noise per image


def test_shuffle_is_uniform_over_permutations():
    n_img = 6000
    perms = permutation_of(block_shuffle(block_ids(n_img, 1, 3), (1, 3), seed=1), 1, 3)
    counts = Counter(tuple(p) for p in perms)
    assert len(counts) == 6
    chi2 = sum((c - n_img / 6) ** 2 / (n_img / 6) for c in counts.values())
    assert chi2 < 20.5  # 5 degrees of freedom: p ~ 0.001


def test_exclude_identity():
    ids = block_ids(4000, 2, 1)
    perms = permutation_of(block_shuffle(ids, (2, 1), seed=0, exclude_identity=True), 2, 1)
    assert all(p == [1, 0] for p in perms)
    perms = permutation_of(block_shuffle(block_ids(6000, 1, 3), (1, 3), seed=0, exclude_identity=True), 1, 3)
    counts = Counter(tuple(p) for p in perms)
    assert (0, 1, 2) not in counts and len(counts) == 5 and min(counts.values()) > 1000
    # Without the option the identity occurs (half the time on 2 blocks).
    kept = permutation_of(block_shuffle(ids, (2, 1), seed=0), 2, 1).count([0, 1])
    assert 1800 < kept < 2200


def test_shared_draws_one_permutation_for_the_batch():
    perms = permutation_of(block_shuffle(block_ids(32, 4, 4), 4, seed=5, shared=True), 4, 4)
    assert all(p == perms[0] for p in perms) and perms[0] != list(range(16))
    masks = block_mask(torch.ones(8, 1, 8, 8), 4, 0.5, shared=True, seed=5, mean=0.0)
    assert all(torch.equal(m, masks[0]) for m in masks)


@fast
@given(st.integers(1, 6), st.sampled_from(SIDES), st.integers(1, 4), st.integers(0, 2**40))
def test_rotate_turns_each_block_in_place_by_a_multiple_of_90(batch, grid, side, seed):
    rows, cols = grid
    x = torch.rand(batch, 2, rows * side, cols * side, dtype=torch.float64)
    out = block_rotate(x, grid, seed=seed)
    for img, o in zip(x, out):
        for b_in, b_out in zip(naive_blocks(img, rows, cols), naive_blocks(o, rows, cols)):
            assert any(torch.equal(torch.rot90(b_in, k, dims=(1, 2)), b_out) for k in range(4))


def test_rotate_draws_all_four_turns():
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(400, 1, 4, 4)
    out = block_rotate(x, 1, seed=0)
    turns = Counter(next(k for k in range(4) if torch.equal(torch.rot90(x[0], k, (1, 2)), o)) for o in out)
    assert sorted(turns) == [0, 1, 2, 3] and min(turns.values()) > 60


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: block_shuffle(x, 4, seed=0, exclude_identity=True),
        lambda x: block_mask(x, 4, 0.5, fill="noise", seed=0),
        lambda x: block_rotate(x, 4, seed=0),
    ],
)
def test_no_python_loop_over_images(fn):
    """The number of tensor ops dispatched does not grow with the batch."""
    counts = []
    for batch in (1, 3, 64):
        with _CountOps() as mode:
            fn(torch.rand(batch, 2, 8, 8))
        counts.append(mode.count)
    assert counts[0] == counts[1] == counts[2]


def test_per_image_seeds_differ_and_depend_on_seed():
    seeds = image_seeds(0, torch.arange(10_000))
    assert len(set(seeds.tolist())) == 10_000
    assert not torch.equal(seeds, image_seeds(1, torch.arange(10_000)))
    assert not torch.equal(image_seeds(0, torch.arange(5)), image_seeds(2**32, torch.arange(5)))  # high bits count


def test_alignment():
    assert is_aligned((32, 32), 8, 4) is True  # 4x4 blocks = patches
    assert is_aligned((32, 32), 4, 4) is True  # 8x8 blocks = 2x2 patches
    assert is_aligned((32, 32), 16, 4) is False  # 2x2 blocks split patches
    assert is_aligned((32, 32), (4, 16), (4, 4)) is False
    assert is_aligned((32, 32), 4, None) is None


def test_bad_input_raises_clear_errors():
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"grid 3x3 does not divide the 32x32 image"):
        block_shuffle(x, 3)
    with pytest.raises(ValueError, match="grid must be a positive int"):
        block_shuffle(x, 0)
    with pytest.raises(ValueError, match="grid must be a positive int"):
        block_shuffle(x, (2.0, 2))
    with pytest.raises(ValueError, match=r"ratio must be a number in \[0, 1\], got 1.5"):
        block_mask(x, 4, 1.5)
    with pytest.raises(ValueError, match=r"ratio must be a number in \[0, 1\]"):
        block_mask(x, 4, -0.1)
    with pytest.raises(ValueError, match="fill must be one of zero, mean, noise"):
        block_mask(x, 4, 0.5, fill="black")
    with pytest.raises(ValueError, match="needs data_mean"):
        block_mask(x, 4, 0.5, fill="mean")
    with pytest.raises(ValueError, match="one value per channel"):
        block_mask(x, 4, 0.5, mean=[0.1, 0.2])
    with pytest.raises(ValueError, match="square blocks"):
        block_rotate(x, (2, 4))
    with pytest.raises(ValueError, match="float tensor"):
        block_shuffle(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match="float tensor"):
        block_shuffle(torch.rand(3, 32, 32), 2)
    with pytest.raises(ValueError, match="either seed or generator"):
        block_shuffle(x, 2, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="one global index per image"):
        block_shuffle(x, 2, index=torch.arange(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = torch.rand(16, 3, 32, 32)
    for fn in (
        lambda t: block_shuffle(t, 8, seed=3, exclude_identity=True),
        lambda t: block_mask(t, 4, 0.5, fill="noise", seed=3, mean=0.5, std=0.25),
        lambda t: block_rotate(t, 4, seed=3),
    ):
        torch.testing.assert_close(fn(x.cuda()).cpu(), fn(x), rtol=1e-6, atol=1e-6)
