"""Attention kernels: pure functions, no choices (:mod:`.backend` picks one and runs it).

Shapes: ``q, k [B, h, N, d]``, ``v [B, h, N, d_v]``. Every kernel returns ``[B, h, N, d_v]``.

- ``reference``: materialised ``softmax(q k^T * scale + bias) v`` (for tests and attention maps).
- ``sdpa``: ``F.scaled_dot_product_attention`` with the bias as an additive ``attn_mask`` (N x N tensor).
- ``bmm``: the materialised path by batched GEMMs, in place where nothing needs a gradient: the logits by one
  ``bmm`` (``baddbmm`` into the bias when there is one), softmax in place, ``@ v``. On a small CPU grid without
  gradients it beats SDPA's fused kernel, whose per-block work dominates there (docs/attention.md).
- ``flex``: FlexAttention with a ``score_mod`` that computes the bias on the fly (no N x N tensor). Forward only on
  CPU in torch 2.13, float32/bf16/fp16 only.
- ``factorised``: a bias that is an exact low-rank form ``bias = q_extra @ k_extra^T`` rides on extra q/k columns
  through plain SDPA (no N x N tensor, backward everywhere).
- ``chunked``: the pairwise decay ``(r_i + r_j) * M_ij`` (``M = -D/2``) in blocks of images and query rows, each
  block's bias formed in cache (two passes) and run through SDPA's fused kernel; a hand-written backward recomputes
  each block's weights and gives q, k, v and the rates their gradients (the rates': row and column sums of
  ``dS * M``, no autograd chain through an N x N bias). Nothing N x N is allocated or kept: peak memory linear in N.
- ``decomposed_sdpa`` / ``decomposed_reference``: RMT's row-then-column form (see :mod:`.manhattan`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .manhattan import HALF_DISTANCE_CACHE_MAX, ManhattanBias, grid_coords, half_distance, pair_bias

# The ``chunked`` kernel works in blocks of images, heads and query rows with about this many logits each (1 MiB in
# float32: a block's bias, logits and gradients stay in a core's L2 cache and are recycled by the allocator), and at
# least CHUNK_MIN_ROWS query rows per chunk.
BLOCK_ELEMENTS = 2**18
CHUNK_MIN_ROWS = 16
# The ``bmm`` path works in groups of images with at most about this many logits (16 MiB in float32): one group for
# every call ``auto`` sends it (backend.CPU_DENSE_BIAS_MAX_ELEMENTS), where smaller groups measured slower
# (docs/attention.md); beyond it, its inference memory stays bounded by one group.
BMM_BLOCK_ELEMENTS = 2**22


def reference_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, scale: float | None = None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Materialised ``softmax(q k^T * scale + bias) v``; also returns the weights ``[B, h, N, N]``."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = (q @ k.transpose(-2, -1)) * scale
    if bias is not None:
        logits = logits + bias
    attn = logits.softmax(dim=-1)
    weights = F.dropout(attn, p=dropout_p) if dropout_p > 0 else attn
    return weights @ v, attn


def sdpa_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, scale: float | None = None, dropout_p: float = 0.0
) -> Tensor:
    """``F.scaled_dot_product_attention`` with the bias passed as an additive ``attn_mask``."""
    if bias is not None:
        bias = bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)


def apply_shared_map(attn: Tensor, v: Tensor) -> Tensor:
    """``attn [1, h, N, N] @ v [B, h, N, d]`` as one matmul per head over the batch folded into the columns.

    A broadcast matmul copies the map once per image; folding the batch is several times faster on CPU.
    """
    return torch.einsum("hij,bhjd->bhid", attn[0], v)


def factorised_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_extra: torch.Tensor,
    k_extra: torch.Tensor,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """``softmax(q k^T * scale + q_extra k_extra^T) v`` through plain SDPA, without an N x N tensor.

    ``q_extra, k_extra [b, h, N, E]`` (b broadcast to B) are appended to q and k; q's part is divided by ``scale``
    so SDPA's scaling leaves ``q_extra k_extra^T`` intact. q, k and v are zero-padded to one common width, a
    multiple of 8, so the fused (flash) kernel runs instead of the math fallback, which needs equal head dims.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    B, h, N, d_v = v.shape
    width = q.shape[-1] + q_extra.shape[-1]
    pad = -max(width, d_v) % 8
    q = torch.cat([q, q_extra.expand(B, h, N, -1) / scale], dim=-1)
    k = torch.cat([k, k_extra.expand(B, h, N, -1)], dim=-1)
    full = max(width, d_v) + pad
    q, k = F.pad(q, (0, full - width)), F.pad(k, (0, full - width))
    out = F.scaled_dot_product_attention(q, k, F.pad(v, (0, full - d_v)), dropout_p=dropout_p, scale=scale)
    return out[..., :d_v]


def _half_rows(coords: tuple[Tensor, Tensor], num_prefix: int, rows: slice) -> Tensor:
    """``-D/2`` ``[c, N]`` for the query rows ``rows`` (zero for prefix rows and columns), from grid coordinates."""
    y, x = coords
    P = num_prefix
    g0 = min(max(rows.start, P), rows.stop)  # first grid row of the chunk
    part = -0.5 * ((y[g0 - P : rows.stop - P, None] - y).abs() + (x[g0 - P : rows.stop - P, None] - x).abs())
    return F.pad(part, (P, 0, g0 - rows.start, 0))


def _image_groups(batch: int, per_image: int, block: int) -> list[slice]:
    """Groups of about equal size of ``batch`` images with ``per_image`` logits each, about ``block`` logits per
    group (at least one image)."""
    count = max(1, round(batch * per_image / block))
    size = -(-batch // count)  # no small remainder
    return [slice(b, min(b + size, batch)) for b in range(0, batch, size)]


class _Blocks:
    """How one pass of :class:`_PairwiseDecay` is cut: query rows in chunks of ``rows`` (default: as many as keep a
    block within ``BLOCK_ELEMENTS``, at least ``CHUNK_MIN_ROWS``), images in groups of equal size so that a block
    (images x heads x rows x N logits; one head at a time with ``per_head``) holds about ``BLOCK_ELEMENTS``.
    ``half(chunk)``: the chunk's ``-D/2`` rows, sliced from the cached matrix on small grids, else built from the
    coordinates (linear memory)."""

    def __init__(
        self, q: Tensor, grid: tuple[int, int], num_prefix: int, rows: int | None, per_head: bool = False
    ) -> None:
        B, h, n = q.shape[:3]
        heads = 1 if per_head else h
        rows = min(n, rows or max(CHUNK_MIN_ROWS, BLOCK_ELEMENTS // (heads * n)))
        self.chunks = [slice(r, min(r + rows, n)) for r in range(0, n, rows)]
        self.groups = _image_groups(B, heads * rows * n, BLOCK_ELEMENTS)
        self.full = half_distance(grid, num_prefix, q.device, q.dtype) if n * n <= HALF_DISTANCE_CACHE_MAX else None
        self.coords = tuple(c.to(q.dtype) for c in grid_coords(grid, q.device)) if self.full is None else None
        self.num_prefix = num_prefix

    def half(self, chunk: slice) -> Tensor:
        return self.full[chunk] if self.full is not None else _half_rows(self.coords, self.num_prefix, chunk)


class _PairwiseDecay(torch.autograd.Function):
    """``softmax(q k^T * scale + (r_i + r_j) * M_ij) v`` (``M = -D/2``, zero for prefix tokens) in blocks of images
    and query rows, each block's bias, logits and weights small enough to stay in cache and to be recycled by the
    allocator (a fresh N x N tensor per call costs its page faults on every step).

    Forward: each block through SDPA's fused kernel with its bias; nothing N x N is kept. Backward, block by block:
    the block's weights recomputed (bias, ``baddbmm``, softmax), then by hand ``dv = P^T dO``,
    ``dS = P * (dP - rowsum(P * dP))`` (``_softmax_backward_data``), ``dq = dS k * scale``, ``dk = dS^T q * scale``
    and the rates' gradient ``sum_j (dS_ij + dS_ji) M_ij`` (row and column sums of ``dS * M``): no autograd chain
    through an N x N bias. The output is written in SDPA's layout (``[B, N, h, d]`` memory, which the heads' merge
    reads without a copy); the backward works one head at a time (``q[:, j]`` is a strided batch ``bmm`` reads
    without a copy) and accumulates the gradients in ``[h, B, N, d]``, one contiguous slice per block.
    """

    @staticmethod
    def forward(ctx, q, k, v, rates, meta):
        grid, num_prefix, scale, rows = meta
        B, h, n, d_v = *q.shape[:3], v.shape[-1]
        blocks = _Blocks(q, grid, num_prefix, rows)
        out = q.new_empty(B, n, h, d_v).transpose(1, 2)
        shared = rates.shape[0] != B
        for i in blocks.groups:
            for chunk in blocks.chunks:
                bias = pair_bias(rates if shared else rates[i], blocks.half(chunk), chunk)
                out[i, :, chunk] = F.scaled_dot_product_attention(
                    q[i, :, chunk], k[i], v[i], attn_mask=bias, scale=scale
                )
        ctx.save_for_backward(q, k, v, rates)
        ctx.meta = meta
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        q, k, v, rates = ctx.saved_tensors
        grid, num_prefix, scale, rows = ctx.meta
        B, h, n, d = q.shape
        blocks = _Blocks(q, grid, num_prefix, rows, per_head=True)
        dq, dk = (q.new_empty(h, B, n, d) for _ in range(2))
        dv = v.new_empty(h, B, n, v.shape[-1])
        shared = rates.shape[0] != B
        dr = rates.new_zeros(h, rates.shape[0], n) if ctx.needs_input_grad[3] else None
        whole, grouped = len(blocks.chunks) == 1, len(blocks.groups) > 1
        heads = list(zip(*(t.unbind(1) for t in (q, k, v, grad, rates))))  # per head: [B, N, .] strided, rates [b, N]
        for c, chunk in enumerate(blocks.chunks):
            half = blocks.half(chunk)
            for j, (qj, kj, vj, gj, rj) in enumerate(heads):
                for i in blocks.groups:
                    if grouped:
                        qj, kj, vj, gj = (t[i] for t in heads[j][:4])
                        rj = heads[j][4] if shared else heads[j][4][i]
                    qc, go, rc = (qj, gj, rj) if whole else (qj[:, chunk], gj[:, chunk], rj[:, chunk])
                    bias = torch.add(rc[:, :, None], rj[:, None, :]).mul_(half)
                    if shared:  # one bias for every image of the group, broadcast
                        logits = torch.baddbmm(bias, qc, kj.transpose(1, 2), alpha=scale)
                    else:
                        logits = bias.baddbmm_(qc, kj.transpose(1, 2), alpha=scale)
                    w = torch.softmax(logits, -1)
                    ds = torch._softmax_backward_data(torch.bmm(go, vj.transpose(1, 2)), w, -1, w.dtype)
                    if whole:
                        torch.bmm(ds, kj, out=dq[j, i])
                        torch.bmm(w.transpose(1, 2), go, out=dv[j, i])
                        torch.bmm(ds.transpose(1, 2), qc, out=dk[j, i])
                    else:
                        dq[j, i, chunk] = torch.bmm(ds, kj)
                        if c == 0:
                            torch.bmm(w.transpose(1, 2), go, out=dv[j, i])
                            torch.bmm(ds.transpose(1, 2), qc, out=dk[j, i])
                        else:
                            dv[j, i].baddbmm_(w.transpose(1, 2), go)
                            dk[j, i].baddbmm_(ds.transpose(1, 2), qc)
                    if dr is not None:  # row sums (the query's rate) and column sums (the key's) of dS * M
                        m = ds.mul_(half)
                        if shared:
                            dr[j, 0, chunk] += m.sum((0, 2))
                            dr[j, 0] += m.sum((0, 1))
                        elif whole:
                            torch.add(m.sum(-1), m.sum(-2), out=dr[j, i])
                        else:
                            dr[j, i, chunk] += m.sum(-1)
                            dr[j, i] += m.sum(-2)
        dq.mul_(scale)
        dk.mul_(scale)
        grads = tuple(t.permute(1, 0, 2, 3) for t in (dq, dk, dv))
        return (*grads, None if dr is None else dr.transpose(0, 1), None)


def pairwise_decay_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rates: Tensor,
    grid: tuple[int, int],
    num_prefix: int,
    scale: float | None = None,
    rows: int | None = None,
) -> Tensor:
    """``softmax(q k^T * scale + B) v`` with the pairwise decay ``B_ij = -(r_i + r_j)/2 * D_ij`` on ``grid`` (0 to
    and from the ``num_prefix`` prefix tokens); ``rates [b, h, N]`` with 0 for prefix tokens (b is 1 or B).

    In blocks of images and query rows (``rows`` per chunk; default: about ``BLOCK_ELEMENTS`` logits per block):
    nothing N x N is allocated or kept, so peak memory is linear in N; the backward recomputes each block's weights
    and gives q, k, v and the rates their gradients by hand (:class:`_PairwiseDecay`).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return _PairwiseDecay.apply(q, k, v, rates.to(q.dtype), (tuple(grid), num_prefix, scale, rows))


def _flat(t: Tensor) -> Tensor:
    """A contiguous ``[g, h, N, d]`` -> ``[g*h, N, d]`` (a view)."""
    return t.view(-1, *t.shape[2:])


BiasInto = Callable[[slice, Tensor], Tensor]


def _bmm_blocks(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scale: float,
    bias_into: BiasInto | None = None,
    mix: Callable[[Tensor], Tensor] | None = None,
    weights: Tensor | None = None,
) -> Tensor:
    """The ``bmm`` path's forward, no autograd: groups of images (at most about ``BMM_BLOCK_ELEMENTS`` logits each),
    each group's logits in one block (``weights[i]`` when given, to keep, else one buffer reused by every group).

    Per group: ``bias_into(images, out [g, h, N, N])`` writes the bias into the block (none: ``q k^T`` alone), one
    ``baddbmm_`` adds ``q k^T * scale``, softmax in place, ``mix`` changes the weights in place (GPSA's blend), then
    ``@ v`` into SDPA's output layout (``[B, N, h, d_v]`` memory, which the heads' merge reads without a copy).
    q, k and v must be contiguous ``[B, h, N, d]``.
    """
    B, h, n, d_v = *q.shape[:3], v.shape[-1]
    groups = _image_groups(B, h * n * n, BMM_BLOCK_ELEMENTS)
    buffer = q.new_empty(groups[0].stop * h, n, n) if weights is None else None
    out = q.new_empty(B, n, h, d_v).transpose(1, 2)
    for i in groups:
        g = i.stop - i.start
        w = weights[i] if buffer is None else buffer[: g * h].view(g, h, n, n)
        if bias_into is not None:
            bias_into(i, w)
        beta = 0.0 if bias_into is None else 1.0  # beta 0: the block's old contents are ignored
        wf = w.view(-1, n, n).baddbmm_(_flat(q[i]), _flat(k[i]).transpose(1, 2), beta=beta, alpha=scale)
        torch.softmax(wf, -1, out=wf)
        if mix is not None:
            mix(w)
        out[i] = torch.bmm(wf, _flat(v[i])).view(g, h, n, d_v)
    return out


def bmm_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    *,
    mix: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """``softmax(q k^T * scale + bias) v`` materialised by batched GEMMs; ``bias [b, h, N, N]`` (b is 1 or B).

    Without gradients (and dropout): in place, by groups of images (:func:`_bmm_blocks`; ``mix``
    changes each block's weights in place before ``@ v``). With them: the materialised reference, which autograd
    differentiates (``mix`` is for inference only).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    inputs = (q, k, v) if bias is None else (q, k, v, bias)
    if dropout_p > 0 or (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
        if mix is not None:
            raise ValueError("bmm_attention: mix changes the weights in place, without gradients only")
        return reference_attention(q, k, v, bias, scale=scale, dropout_p=dropout_p)[0]
    q, k, v = (t.contiguous() for t in (q, k, v))
    full = None if bias is None else bias.to(q.dtype).expand(*q.shape[:3], q.shape[2])
    into = None if full is None else (lambda i, out: out.copy_(full[i]))
    return _bmm_blocks(q, k, v, scale, bias_into=into, mix=mix)


def _pair_into(rates: Tensor, half: Tensor) -> BiasInto:
    """Writes ``(r_i + r_j) * M_ij`` of the images ``i`` into ``out [g, h, N, N]`` (two passes); ``rates [b, h,
    N]``, b is 1 or B."""

    def into(i: slice, out: Tensor) -> Tensor:
        return pair_bias(rates[i] if rates.shape[0] > 1 else rates.expand(len(out), -1, -1), half, out=out)

    return into


class _PairwiseDecayBmm(torch.autograd.Function):
    """``softmax(q k^T * scale + (r_i + r_j) * M_ij) v`` materialised for a small grid, its weights kept for the
    backward (``B*h*N*N`` values; the ``chunked`` kernel recomputes them instead).

    Forward: :func:`_bmm_blocks` writing into the kept weights. Backward by hand, by the same groups of images, as in
    :class:`_PairwiseDecay`: ``dv = P^T dO``, ``dS = P * (dP - rowsum(P * dP))`` (in place), ``dq = dS k * scale``,
    ``dk = dS^T q * scale``, the rates' gradient from the row and column sums of ``dS * M``.
    """

    @staticmethod
    def forward(ctx, q, k, v, rates, meta):
        half, scale = meta
        q, k, v = (t.contiguous() for t in (q, k, v))  # one copy each: every group's slice is then a view
        weights = q.new_empty(*q.shape[:3], q.shape[2])
        out = _bmm_blocks(q, k, v, scale, bias_into=_pair_into(rates, half), weights=weights)
        ctx.save_for_backward(q, k, v, weights, half)
        ctx.meta = (scale, rates.shape[0] != q.shape[0])
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        q, k, v, weights, half = ctx.saved_tensors
        scale, shared = ctx.meta
        B, h, n, _ = q.shape
        grad = grad.contiguous()
        dq, dk, dv = (torch.empty_like(t) for t in (q, k, v))
        dr = q.new_zeros(1 if shared else B, h, n) if ctx.needs_input_grad[3] else None
        for i in _image_groups(B, h * n * n, BMM_BLOCK_ELEMENTS):
            g, wf, go = i.stop - i.start, weights[i].view(-1, n, n), _flat(grad[i])
            torch.bmm(wf.transpose(1, 2), go, out=_flat(dv[i]))
            ds = torch.bmm(go, _flat(v[i]).transpose(1, 2)).mul_(wf)  # P * dP, then minus P * rowsum(P * dP)
            ds.addcmul_(wf, ds.sum(-1, keepdim=True), value=-1)
            torch.bmm(ds, _flat(k[i]), out=_flat(dq[i]))
            torch.bmm(ds.transpose(1, 2), _flat(q[i]), out=_flat(dk[i]))
            if dr is not None:  # row sums (the query's rate) and column sums (the key's) of dS * M
                m = ds.view(g, h, n, n).mul_(half)
                part = m.sum(-1).add_(m.sum(-2))
                if shared:
                    dr[0] += part.sum(0)
                else:
                    dr[i] = part
        return dq.mul_(scale), dk.mul_(scale), dv, dr, None


def pairwise_decay_bmm(
    q: Tensor, k: Tensor, v: Tensor, rates: Tensor, grid: tuple[int, int], num_prefix: int, scale: float | None = None
) -> Tensor:
    """:func:`pairwise_decay_attention`'s result on a small grid, materialised in groups of images: in
    place without gradients (no ``N x N`` tensor beyond one block), else with the weights kept for a hand-written
    backward (:class:`_PairwiseDecayBmm`, ``B*h*N*N`` memory)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    half = half_distance(tuple(grid), num_prefix, q.device, q.dtype)
    rates = rates.to(q.dtype).contiguous()
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, rates)):
        return _PairwiseDecayBmm.apply(q, k, v, rates, (half, scale))
    q, k, v = (t.contiguous() for t in (q, k, v))
    return _bmm_blocks(q, k, v, scale, bias_into=_pair_into(rates, half))


def compile_flex() -> Callable[..., torch.Tensor]:
    """``torch.compile`` of FlexAttention (the caller keeps it: compiling is slow, calling it is not)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def decomposed_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: ManhattanBias, scale: float, dropout_p: float = 0.0
) -> torch.Tensor:
    """Rows then columns as batched SDPA calls with ``W x W`` and ``H x H`` biases (no N x N tensor).

    Row pass: each row's grid queries attend to that row (1D decay) and to the prefix keys (no decay); column pass:
    each column's queries attend to that column of the row pass's output; prefix queries attend to all tokens.
    """
    (B, h, _, d), P, (H, W) = q.shape, bias.num_prefix, bias.grid
    row_bias, col_bias = (t.to(q.dtype) for t in bias.line_biases())  # [b, h, H, W, W], [b, h, W, H, H]
    qg, kg, vg = (t[:, :, P:].unflatten(2, (H, W)) for t in (q, k, v))  # [B, h, H, W, d]
    row_bias = F.pad(row_bias, (P, 0)).flatten(1, 2)  # prefix keys: no decay; b (1 or B) broadcasts
    k_row = torch.cat([k[:, :, None, :P].expand(B, h, H, P, d), kg], 3).reshape(B, h * H, P + W, d)
    v_row = torch.cat([v[:, :, None, :P].expand(B, h, H, P, d), vg], 3).reshape(B, h * H, P + W, d)
    rows = sdpa_attention(qg.reshape(B, h * H, W, d), k_row, v_row, row_bias, scale=scale, dropout_p=dropout_p)
    cols = sdpa_attention(
        *(t.transpose(2, 3).reshape(B, h * W, H, d) for t in (qg, kg, rows.view(B, h, H, W, d))),
        col_bias.flatten(1, 2),
        scale=scale,
        dropout_p=dropout_p,
    )
    grid_out = cols.view(B, h, W, H, d).transpose(2, 3).reshape(B, h, H * W, d)
    if P == 0:
        return grid_out
    prefix_out = sdpa_attention(q[:, :, :P], k, v, None, scale=scale, dropout_p=dropout_p)
    return torch.cat([prefix_out, grid_out], 2)


def decomposed_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: ManhattanBias, scale: float, dropout_p: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both passes as masked dense ``[N, N]`` attentions; returns the output and the composite map ``A_col A_row``."""
    row, col = bias.decomposed_dense()
    _, a_row = reference_attention(q, k, v, row, scale=scale)
    _, a_col = reference_attention(q, k, v, col, scale=scale)
    if dropout_p > 0:
        a_row, a_col = F.dropout(a_row, dropout_p), F.dropout(a_col, dropout_p)
    attn = a_col @ a_row
    return attn @ v, attn
