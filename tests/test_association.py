"""Patch-association metrics against naive loop implementations, their known values on ideal / uniform attention,
the ViT path (prefix tokens, heads, grid pooling) and the errors for bad input."""

import itertools

import pytest
import torch

from spatialvit.models import VisionTransformer
from spatialvit.probes.association import (
    adjusted_rand,
    association_auc,
    association_report,
    pool_to_grid,
    recover_partition,
    top_c_precision,
    vit_attention_matrix,
    within_group_mass,
)

GROUPS = torch.tensor([(r // 2) * 2 + c // 2 for r in range(4) for c in range(4)])


def _random_attention(D: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(D, D, generator=g, dtype=torch.float64).mul(2).softmax(-1)


def _ideal(groups: torch.Tensor) -> torch.Tensor:
    same = (groups[:, None] == groups[None, :]).double()
    return same / same.sum(1, keepdim=True)


def naive_mass(A, groups):
    D = len(groups)
    return sum(sum(A[i, j].item() for j in range(D) if groups[j] == groups[i]) for i in range(D)) / D


def naive_auc(A, groups):
    D = len(groups)
    pos = [A[i, j].item() for i, j in itertools.permutations(range(D), 2) if groups[i] == groups[j]]
    neg = [A[i, j].item() for i, j in itertools.permutations(range(D), 2) if groups[i] != groups[j]]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def naive_top_c(A, groups, exclude_self=False):
    D, out = len(groups), []
    for i in range(D):
        cand = [j for j in range(D) if not (exclude_self and j == i)]
        members = [j for j in cand if groups[j] == groups[i]]
        top = sorted(cand, key=lambda j: -A[i, j].item())[: len(members)]
        out.append(sum(groups[j] == groups[i] for j in top).item() / len(members))
    return sum(out) / D


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_naive_loops(seed):
    A = _random_attention(16, seed)
    assert within_group_mass(A, GROUPS) == pytest.approx(naive_mass(A, GROUPS), abs=1e-12)
    assert association_auc(A, GROUPS) == pytest.approx(naive_auc(A, GROUPS), abs=1e-12)
    for excl in (False, True):
        assert top_c_precision(A, GROUPS, excl) == pytest.approx(naive_top_c(A, GROUPS, excl), abs=1e-12)


def test_ideal_and_uniform_attention():
    perfect = association_report(_ideal(GROUPS), GROUPS)
    assert perfect == pytest.approx({"mass": 1.0, "chance_mass": 0.25, "auc": 1.0, "top_c": 1.0, "ari": 1.0})
    uniform = torch.full((16, 16), 1 / 16)
    assert within_group_mass(uniform, GROUPS) == pytest.approx(4 / 16)  # chance = C / D
    assert association_auc(uniform, GROUPS) == pytest.approx(0.5)


def test_recovered_partition_from_noisy_block_attention():
    A = (_ideal(GROUPS) + 0.02 * _random_attention(16, 3)).softmax(-1)  # still group-structured
    for method in ("spectral", "agglomerative"):
        pred = recover_partition(A, 4, method)
        assert adjusted_rand(pred, GROUPS) == pytest.approx(1.0)
    # A relabelled partition is the same partition; a shuffled one is far from it.
    assert adjusted_rand((GROUPS + 1) % 4, GROUPS) == pytest.approx(1.0)
    assert adjusted_rand(GROUPS[torch.randperm(16, generator=torch.Generator().manual_seed(0))], GROUPS) < 0.3


def test_pool_to_grid_is_block_average_of_rows_and_sum_of_columns():
    A = _random_attention(16)  # tokens on 4x4, data patches on 2x2
    pooled = pool_to_grid(A, (4, 4), (2, 2))
    owner = [(r // 2) * 2 + c // 2 for r in range(4) for c in range(4)]
    for a, b in itertools.product(range(4), range(4)):
        rows = [i for i in range(16) if owner[i] == a]
        expect = sum(A[i, j] for i in rows for j in range(16) if owner[j] == b) / len(rows)
        assert pooled[a, b] == pytest.approx(expect.item(), abs=1e-12)
    assert torch.allclose(pooled.sum(-1), torch.ones(4, dtype=torch.float64))
    assert pool_to_grid(A, (4, 4), (4, 4)) is A


def test_vit_attention_matrix_strips_prefix_averages_heads_and_pools():
    model = VisionTransformer(img_size=16, patch_size=4, in_chans=3, num_classes=2, embed_dim=16, depth=2, num_heads=2)
    x = torch.randn(3, 3, 16, 16)
    maps = model.eval().attention_maps(x)
    raw = maps[1][:, :, 1:, 1:].double()
    expect = raw.mean(1).mean(0)
    expect = expect / expect.sum(-1, keepdim=True)
    assert torch.allclose(vit_attention_matrix(model, x, 1), expect, atol=1e-6)
    head0 = raw[:, 0].mean(0)
    assert torch.allclose(vit_attention_matrix(model, x, 1, head=0), head0 / head0.sum(-1, keepdim=True), atol=1e-6)
    pooled = vit_attention_matrix(model, x, 0, data_grid=(2, 2))
    assert pooled.shape == (4, 4) and torch.allclose(pooled.sum(-1), torch.ones(4, dtype=torch.float64))


def test_bad_input_errors():
    with pytest.raises(ValueError, match="square"):
        within_group_mass(torch.ones(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="groups must be"):
        association_auc(torch.eye(4), torch.zeros(3))
    with pytest.raises(ValueError, match="num_groups"):
        recover_partition(torch.eye(4), 5)
    with pytest.raises(ValueError, match="method"):
        recover_partition(torch.eye(4), 2, method="kmeans")
    with pytest.raises(ValueError, match="not a multiple"):
        pool_to_grid(torch.eye(9), (3, 3), (2, 2))
    with pytest.raises(ValueError, match="attention_maps"):
        vit_attention_matrix(torch.nn.Linear(2, 2), torch.zeros(1, 2), 0)
