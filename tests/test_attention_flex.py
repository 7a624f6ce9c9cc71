"""The compiled FlexAttention path (inference only on CPU in torch 2.13) against the materialised reference.

Marked slow: the first call compiles flex_attention (about 5-30 s on a shared 2-core CPU); later calls reuse it.
"""

import pytest
import torch

from spatialvit.attention import create_attention, resolve_backend

pytestmark = pytest.mark.slow
GRID = (3, 5)


@pytest.mark.parametrize(
    ("name", "kwargs"), [("decay", {}), ("cag", {}), ("cag", {"form": "warped"})], ids=["fixed", "cag", "warped"]
)
def test_flex_forward_matches_reference(name, kwargs):
    flex = create_attention(name, 32, num_heads=4, num_prefix_tokens=1, backend="flex", **kwargs).eval()
    ref = create_attention(name, 32, num_heads=4, num_prefix_tokens=1, backend="reference", **kwargs).eval()
    if hasattr(flex.bias, "gate_weight"):
        with torch.no_grad():
            flex.bias.gate_weight.normal_(0, 0.5)
    ref.load_state_dict(flex.state_dict())
    if kwargs.get("form") == "warped":  # auto serves warped-decay inference on large grids with flex
        big = (17, 17)
        x = torch.randn(1, 1 + 289, 32)
        with torch.no_grad():
            q = ref.project(x, big)[0]
            auto = create_attention(name, 32, num_heads=4, num_prefix_tokens=1, **kwargs)
            chosen = resolve_backend(auto.backend, auto.supported_backends, q, ref.spatial_bias(x, big))
            assert chosen == "flex"
    for _ in range(2):  # new inputs (and new per-token rates) reuse the compiled kernel
        x = torch.randn(2, 16, 32)
        with torch.no_grad():
            torch.testing.assert_close(flex(x, GRID), ref(x, GRID), rtol=1e-5, atol=1e-5)
