"""Generate 0.1.0-format mixer state dicts (and their outputs) with the pre-composition code, for the legacy test."""

import torch

from spatialvit.attention import create_attention

torch.manual_seed(0)
GRID = (3, 4)
CASES = [
    ("softmax", {}, 1),
    ("conv_qkv", {}, 1),
    ("conv_qkv", {"conv_mode": "separable"}, 0),
    ("positional", {"pos_grid": GRID}, 1),
    ("gpsa", {"pos_grid": GRID}, 1),
    ("decay", {}, 1),
    ("decay", {"learnable_decay": True, "rope": True, "lepe_kernel": 3}, 0),
    ("cag", {}, 1),
    ("cag", {"form": "warped", "lepe_kernel": 3}, 0),
]
out = []
for name, kw, prefix in CASES:
    m = create_attention(name, 16, num_heads=2, num_prefix_tokens=prefix, backend="reference", **kw).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, prefix + GRID[0] * GRID[1], 16, dtype=torch.float64)
    with torch.no_grad():
        y = m(x, GRID)
    out.append({"name": name, "kwargs": kw, "prefix": prefix, "state": m.state_dict(), "x": x, "y": y})
torch.save({"grid": GRID, "dim": 16, "heads": 2, "cases": out}, "/work/main/tests/data/legacy_mixers_v0.1.pt")
print(len(out), [sorted(c["state"]) for c in out][1], [sorted(c["state"]) for c in out][7])
