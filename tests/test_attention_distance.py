"""Mean attention distance and the attention-map hook on known attention patterns."""

import torch
from torch import nn

from spatialvit.data import Normalize
from spatialvit.models import create_model
from spatialvit.probes.attention_maps import grid_attention_maps, mean_attention_distance, token_distances


class FixedAttention(nn.Module):
    """A stand-in ViT whose every head attends with a fixed ``[N, N]`` pattern (plus one class token)."""

    patch_size = 4
    num_prefix_tokens = 1

    def __init__(self, pattern: torch.Tensor, layers: int = 2, heads: int = 3) -> None:
        super().__init__()
        self.pattern, self.layers, self.heads = pattern, layers, heads

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = self.pattern.shape[0] + 1
        full = torch.zeros(x.shape[0], self.heads, n, n)
        full[:, :, 0, 0] = 1.0
        full[:, :, 1:, 0] = 0.5  # mass on the class token is dropped and the rows renormalised
        full[:, :, 1:, 1:] = 0.5 * self.pattern
        return [full] * self.layers


def test_token_distances():
    d = token_distances((2, 3), patch_size=4)
    assert d.shape == (6, 6)
    assert d[0, 1] == 4 and d[0, 3] == 4 and torch.isclose(d[0, 4], torch.tensor(32.0).sqrt())
    torch.testing.assert_close(d, d.T)
    assert torch.all(d.diagonal() == 0)


def test_identity_attention_has_zero_distance_and_uniform_has_mean_pairwise():
    images = torch.zeros(2, 1, 12, 8)  # grid 3x2
    ident = mean_attention_distance(FixedAttention(torch.eye(6)), images)
    assert ident.shape == (2, 3)
    torch.testing.assert_close(ident, torch.zeros(2, 3))
    uniform = mean_attention_distance(FixedAttention(torch.full((6, 6), 1 / 6)), images)
    expected = token_distances((3, 2), 4).mean()
    torch.testing.assert_close(uniform, torch.full((2, 3), expected.item()))


def test_real_vit_maps_through_normalize_wrapper():
    vit = create_model("vit_micro_patch4", img_size=16, in_chans=1, num_classes=3).eval()
    wrapped = nn.Sequential(Normalize((0.5,), (0.25,)), vit)
    images = torch.rand(2, 1, 16, 16)
    maps = grid_attention_maps(wrapped, images)
    assert len(maps) == 4 and maps[0].shape == (2, 4, 16, 16)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 4, 16))
    direct = vit.attention_maps((images - 0.5) / 0.25)[0][:, :, 1:, 1:]
    torch.testing.assert_close(maps[0], direct / direct.sum(-1, keepdim=True))
    mad = mean_attention_distance(wrapped, images)
    assert mad.shape == (4, 4)
    assert torch.all(mad > 0) and torch.all(mad <= token_distances((4, 4), 4).max())
