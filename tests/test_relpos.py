"""Swin/BEiT's learned relative-position bias: the mixer against a naive loop, in float64, forward and backward on
every backend it declares; the table's resize to another grid; the vit_relpos family."""

import pytest
import torch
import torch.nn.functional as F

from spatialvit.attention import create_attention
from spatialvit.attention.relpos import RelativePositionBias
from spatialvit.models import create_model, list_models

DIM, HEADS, GRID = 16, 2, (3, 4)


def naive_relpos(mixer, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The mixer's output by loops over heads, queries and keys: ``softmax(q.k * scale + T[offset]) v``."""
    P, (H, W) = mixer.num_prefix_tokens, grid
    table = mixer.bias.table
    B, N, _ = x.shape
    q, k, v = mixer.qkv(x).view(B, N, 3, HEADS, -1).unbind(2)  # [B, N, h, d]
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(HEADS):
            for i in range(N):
                logits = []
                for j in range(N):
                    s = (q[b, i, h] * k[b, j, h]).sum() * mixer.scale
                    if i >= P and j >= P:
                        (yi, xi), (yj, xj) = divmod(i - P, W), divmod(j - P, W)
                        s = s + table[(yi - yj + H - 1) * (2 * W - 1) + (xi - xj + W - 1), h]
                    logits.append(s)
                w = torch.stack(logits).softmax(0)
                out[b, i, h] = (w[:, None] * v[b, :, h]).sum(0)
    return mixer.proj(out.reshape(B, N, -1))


@pytest.mark.parametrize("prefix", [0, 1])
@pytest.mark.parametrize("backend", RelativePositionBias.backends)
def test_relpos_equals_the_naive_loop_forward_and_backward(backend, prefix):
    torch.manual_seed(0)
    mixer = create_attention("relpos", DIM, grid=GRID, num_heads=HEADS, num_prefix_tokens=prefix, backend=backend)
    mixer = mixer.double()
    with torch.no_grad():
        mixer.bias.table.normal_()  # a bias that matters
    x = torch.randn(2, prefix + GRID[0] * GRID[1], DIM, dtype=torch.float64, requires_grad=True)
    fast = mixer(x, GRID)
    ref = naive_relpos(mixer, x, GRID)
    torch.testing.assert_close(fast, ref)
    grad = torch.randn_like(fast)
    got = torch.autograd.grad(fast, [x, mixer.bias.table], grad)
    want = torch.autograd.grad(ref, [x, mixer.bias.table], grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    assert got[1].abs().sum() > 0  # the table learns
    with torch.no_grad():  # the inference paths (bmm: in place)
        torch.testing.assert_close(mixer(x, GRID), ref)


def test_relpos_returns_its_attention_maps_with_the_bias():
    torch.manual_seed(0)
    mixer = create_attention("relpos", DIM, grid=GRID, num_heads=HEADS).double()
    x = torch.randn(1, 12, DIM, dtype=torch.float64)
    out, attn = mixer(x, GRID, return_attn=True)
    assert attn.shape == (1, HEADS, 12, 12)
    torch.testing.assert_close(attn.sum(-1), torch.ones(1, HEADS, 12, dtype=torch.float64))
    torch.testing.assert_close(out, mixer(x, GRID))


def test_relpos_table_is_resized_bicubically_as_timm_does():
    torch.manual_seed(0)
    small = RelativePositionBias(DIM, HEADS, pos_grid=(3, 3))
    big = RelativePositionBias(DIM, HEADS, pos_grid=(5, 5))
    big.load_state_dict(small.state_dict())
    view = small.table.detach().T.reshape(1, HEADS, 5, 5)  # [heads, 2H-1, 2W-1]
    want = F.interpolate(view, size=(9, 9), mode="bicubic", align_corners=False).reshape(HEADS, 81).T
    torch.testing.assert_close(big.table.detach(), want)
    # the same resize on the fly, for a grid the table was not built for; gradients reach the table
    bias = small.grid_bias((5, 5))
    torch.testing.assert_close(bias, big.grid_bias((5, 5)))
    bias.sum().backward()
    assert small.table.grad.abs().sum() > 0
    with torch.no_grad():  # a constant table stays constant
        small.table.fill_(0.5)
    torch.testing.assert_close(small.grid_bias((6, 4)), torch.full((1, HEADS, 24, 24), 0.5))


def test_relpos_bias_depends_on_the_offset_alone():
    mixer = RelativePositionBias(DIM, HEADS, pos_grid=GRID)
    bias = mixer.grid_bias(GRID)[0]  # [h, 12, 12]
    # tokens (0, 0)->(1, 1) and (1, 2)->(2, 3): the same offset
    torch.testing.assert_close(bias[:, 0, 5], bias[:, 6, 11])
    assert not torch.equal(bias[:, 0, 5], bias[:, 5, 0])


def test_relpos_rejects_a_backend_it_cannot_serve():
    with pytest.raises(ValueError, match="backend 'chunked' cannot compute the relative-position bias"):
        create_attention("relpos", DIM, num_heads=HEADS, backend="chunked")


def test_the_vit_relpos_family_builds_trains_and_changes_resolution():
    assert "vit_relpos_micro_patch4" in list_models("relpos")
    torch.manual_seed(0)
    model = create_model("vit_relpos_micro_patch4", img_size=16, dynamic_img_size=True)
    assert model.blocks[0].attn.bias.table.shape == ((2 * 4 - 1) ** 2, 4)
    images = torch.randn(2, 3, 16, 16)
    model(images).sum().backward()
    assert model.blocks[0].attn.bias.table.grad.abs().sum() > 0
    assert model(torch.randn(1, 3, 24, 24)).shape == (1, 10)  # a 6x6 grid from the 4x4 table
