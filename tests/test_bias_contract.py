"""The spatial-bias contract, proved from outside the library: a toy bias (ALiBi in 2D, ``-m_h * D_ij``) defined
here runs through the ViT, the kernel resolver and a one-epoch study, with no library file changed."""

from functools import partial

import pytest
import torch
from torch import nn

from spatialvit.attention import DenseBias, SoftmaxAttention, SpatialBias, manhattan_distance, register_attention
from spatialvit.attention.backend import BACKENDS, resolve_backend
from spatialvit.models import create_model, register_vit_family
from spatialvit.study import StudyConfig, run_study


class ToyAlibi(nn.Module):
    """ALiBi-2D: a fixed slope ``m_h = 2^-(h+1)`` per head times the Manhattan distance, negated."""

    backends = ("sdpa", "reference")
    what = "the toy ALiBi bias"

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.register_buffer("slopes", 2.0 ** -torch.arange(1, num_heads + 1, dtype=torch.float32))

    def forward(self, x: torch.Tensor, grid: tuple[int, int], num_prefix: int) -> SpatialBias:
        bias = -self.slopes[:, None, None] * manhattan_distance(grid, x.device)
        return DenseBias(bias[None].to(x.dtype), grid, num_prefix)


@register_attention("toy_alibi")
class ToyAlibiAttention(SoftmaxAttention):
    def __init__(self, dim: int, **options) -> None:
        super().__init__(dim, bias=partial(ToyAlibi), **options)


register_vit_family("toyalibi", attn_layer="toy_alibi")


def test_the_toy_bias_runs_through_the_vit_on_its_declared_backends():
    assert set(ToyAlibi.backends) <= set(BACKENDS)
    torch.manual_seed(0)
    x = torch.randn(2, 1 + 12, 8)
    ref = create_attention_with("reference")
    for backend in ToyAlibi.backends:
        mixer = create_attention_with(backend)
        mixer.load_state_dict(ref.state_dict())
        torch.testing.assert_close(mixer(x, (3, 4)), ref(x, (3, 4)))
    # the bias is applied: tokens far apart attend less than without it
    _, attn = ref(x, (3, 4), return_attn=True)
    plain = SoftmaxAttention(8, num_heads=2, num_prefix_tokens=1)
    plain.load_state_dict(ref.state_dict(), strict=False)
    _, flat = plain(x, (3, 4), return_attn=True)
    far = (1, 1 + 11)  # grid token (0, 0) to (2, 3)
    assert (attn[:, :, far[0], far[1]] < flat[:, :, far[0], far[1]]).all()
    with pytest.raises(ValueError, match="backend 'chunked' cannot compute the toy ALiBi bias"):
        create_attention_with("chunked")
    q = torch.randn(2, 2, 13, 4)
    assert resolve_backend("auto", ToyAlibi.backends, q, ref.spatial_bias(x, (3, 4))) in ToyAlibi.backends

    model = create_model("vit_toyalibi_micro_patch4", img_size=16)
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert all(isinstance(b.attn.bias, ToyAlibi) for b in model.blocks)


def create_attention_with(backend: str) -> ToyAlibiAttention:
    return ToyAlibiAttention(8, num_heads=2, num_prefix_tokens=1, backend=backend)


def test_the_toy_bias_model_goes_through_a_one_epoch_study(tmp_path):
    model = "vit_toyalibi_micro_patch4"
    cfg = StudyConfig.from_dict(
        {
            "data": "digits",
            "img_size": 16,
            "models": [model],
            "model_kwargs": {model: {"embed_dim": 16, "depth": 2, "num_heads": 2}},
            "train": {"epochs": 1, "batch_size": 128, "warmup_epochs": 0.2, "device": "cpu", "threads": 1},
            "sensitivity": {"shuffle_grids": [2], "mask_ratios": [0.5], "repeats": 1, "limit": 32},
            "probes": {"images": 4, "example_images": 1},
            "claim_grids": [2],
            "seeds": [0],
            "workers": 1,
            "progress": False,
            "out": str(tmp_path),
        }
    )
    result = run_study(cfg)
    (row,) = [r for r in result.comparison if r["model"] == model]
    assert 0.0 <= row["test_acc1"] <= 1.0 and row["attn_dist_px"] > 0
    assert (tmp_path / "report.md").read_text().count(model) >= 1
