"""The simplified model of Jelassi et al.: positional attention, a polynomial (or GELU) activation, value vectors.

``F(X)_k = sum_i sum_r act(sum_j A_ij <v_kr, X_j>)`` with ``A = softmax(Q)`` row-wise — positional attention with
one-hot positional encodings ``P = I`` (``A = softmax(P Q P^T)``), so ``Q[D, D]`` holds the attention logits of
every pair of positions. ``attention='content'`` is the baseline whose ``A`` depends on the input:
``softmax((X W_q)(X W_k)^T / sqrt(k))`` per sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "poly5": lambda z: z**5 + 0.03 * z,  # the re-implementation's choice
    "poly3": lambda z: z**3 + 0.03 * z,  # the theory's cubic, with the same small linear term
    "gelu": F.gelu,
}


class SimplifiedViT(nn.Module):
    """One attention layer + value vectors + a summed activation: patches ``[B, D, d]`` -> logits.

    Args:
        num_patches: D.
        dim: patch dimension d.
        num_classes: 2 gives one logit ``F(X)`` (label ``sign F``); more gives one logit per class.
        num_values: value vectors ``v_r`` per output.
        activation: ``'poly5'`` (z^5 + 0.03 z), ``'poly3'`` (z^3 + 0.03 z) or ``'gelu'``.
        attention: ``'positional'`` (A from positions only) or ``'content'`` (A from the patches).
        diag_init: initial logit on the diagonal of Q; ``None`` means ``log(log d)``. Off-diagonal logits start at 0.
        value_init_std: std of the small random initialisation of the value vectors.
        qk_dim: width k of W_q, W_k for content attention.
    """

    def __init__(
        self,
        num_patches: int,
        dim: int,
        num_classes: int = 2,
        num_values: int = 1,
        activation: str = "poly5",
        attention: str = "positional",
        diag_init: float | None = None,
        value_init_std: float = 0.01,
        qk_dim: int = 16,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if attention not in ("positional", "content"):
            raise ValueError(f"attention must be 'positional' or 'content', got {attention!r}")
        if num_patches < 1 or dim < 1 or num_values < 1 or num_classes < 2:
            raise ValueError("num_patches, dim and num_values must be >= 1 and num_classes >= 2")
        self.num_patches, self.dim, self.num_classes = num_patches, dim, num_classes
        self.activation, self.attention_kind = activation, attention
        self.act = ACTIVATIONS[activation]
        self.diag_init = math.log(math.log(dim)) if diag_init is None else float(diag_init)
        outputs = 1 if num_classes == 2 else num_classes
        self.values = nn.Parameter(torch.randn(outputs, num_values, dim) * value_init_std)
        if attention == "positional":
            self.q = nn.Parameter(torch.eye(num_patches) * self.diag_init)
        else:
            self.w_q = nn.Parameter(torch.randn(dim, qk_dim) / math.sqrt(dim))
            self.w_k = nn.Parameter(torch.randn(dim, qk_dim) / math.sqrt(dim))

    def attention(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Positional: ``A [D, D]`` (rows sum to 1). Content: ``A [B, D, D]`` for patches ``x [B, D, d]``."""
        if self.attention_kind == "positional":
            return self.q.softmax(dim=-1)
        if x is None:
            raise ValueError("content attention needs the patches x [B, D, d]")
        qk = (x @ self.w_q) @ (x @ self.w_k).transpose(1, 2)
        return (qk / math.sqrt(self.w_q.shape[1])).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patches ``x [B, D, d]`` -> logits ``[B]`` (binary) or ``[B, K]``."""
        if x.ndim != 3 or x.shape[1:] != (self.num_patches, self.dim):
            raise ValueError(f"x must be [B, {self.num_patches}, {self.dim}], got {tuple(x.shape)}")
        proj = torch.einsum("bjd,ord->bjor", x, self.values)  # <v_or, X_j>
        A = self.attention(x)
        z = torch.einsum("ij,bjor->bior" if A.ndim == 2 else "bij,bjor->bior", A, proj)  # sum_j A_ij <v_or, X_j>
        out = self.act(z).sum(dim=(1, 3))  # [B, outputs]
        return out[:, 0] if self.num_classes == 2 else out

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logistic loss ``log(1 + exp(-y F))`` (binary, labels 0/1 as y = -1/+1) or cross-entropy."""
        if self.num_classes == 2:
            return F.softplus(-(labels.to(logits.dtype) * 2 - 1) * logits).mean()
        return F.cross_entropy(logits, labels)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> class indices."""
        return (logits > 0).long() if self.num_classes == 2 else logits.argmax(dim=-1)

    @torch.no_grad()
    def reset_diagonal(self) -> None:
        """Put the diagonal of Q back to ``diag_init`` (the re-implementation does this after every step)."""
        if self.attention_kind == "positional":
            self.q.diagonal().fill_(self.diag_init)

    def value_alignment(self, features: torch.Tensor) -> float:
        """Mean ``cos(v_kr, w_k)`` over outputs k and value vectors r, for task features ``[K, d]``."""
        v = F.normalize(self.values.detach(), dim=-1)
        return float((v * F.normalize(features, dim=-1)[:, None, :]).sum(-1).mean())
