"""Batch augmentations in plain torch: random crop, flip, a RandAugment-like policy, random erasing, mixup and cutmix.

Every function works on a whole batch ``images [B, C, H, W]`` (floats in ``[0, 1]``) at once, on any device, without
a per-image Python loop. All randomness is drawn from a passed ``torch.Generator`` (on its own device, usually the
CPU) and then moved to the images' device, so a seed makes the same random choices whether the images live on the CPU
or a GPU (random erasing's noise pixels alone come from a generator on the images' device, seeded from that
generator: the same images and boxes are erased, but GPU noise differs from CPU noise).

Deterministic pieces (``crop_at``, ``translate``, ``rotate``, ``shear``, ``brightness``, ``erase_at``, ``mix_pair``
...) take their parameters explicitly; the random ones (``random_crop``, ``hflip``, ``RandAugment``,
``RandomErasing``, ``mixup``, ``cutmix``) draw those parameters and call them. :func:`build_train_transform`
chains them into a :class:`BatchTransform`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# ----------------------------------------------------------------------------------------------------- helpers


def _check_images(images: Tensor, name: str = "images") -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a float tensor [B, C, H, W] with values in [0, 1], got {got}")


def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _rand(generator: torch.Generator, *shape: int) -> Tensor:
    """Uniform [0, 1) float64 numbers on the generator's device."""
    return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64)


def _per_sample(values: Tensor | float, images: Tensor) -> Tensor:
    """``values`` (scalar or ``[B]``) as ``[B, 1, 1, 1]`` on the images' device and dtype."""
    v = torch.as_tensor(values, dtype=images.dtype).to(images.device)
    return v.expand(images.shape[0]).reshape(-1, 1, 1, 1)


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Integer ``labels [B]`` -> float one-hot targets ``[B, num_classes]``; errors name out-of-range labels."""
    if labels.ndim != 1 or labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"labels must be an integer tensor [B], got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{int(labels.min())}, {int(labels.max())}]")
    return F.one_hot(labels.long(), num_classes).float()


# ---------------------------------------------------------------------------------------------- crop and flip

PADDING_MODES = ("zeros", "reflect")


def crop_at(images: Tensor, offsets: Tensor, pad: int, padding_mode: str = "zeros") -> Tensor:
    """Pad ``images [B, C, H, W]`` by ``pad`` on every side and cut the ``H x W`` window at ``offsets [B, 2]``.

    ``offsets`` are integer ``(dy, dx)`` in ``[0, 2 * pad]``: ``(pad, pad)`` is the identity and ``(0, 0)`` shifts the
    image down and right by ``pad`` pixels.
    """
    _check_images(images)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    B, _, H, W = images.shape
    if pad < 0 or (padding_mode == "reflect" and pad >= min(H, W)):
        raise ValueError(f"pad must be >= 0 (and < the image size {H}x{W} for reflect padding), got {pad}")
    if pad == 0:
        return images
    offsets = offsets.to(images.device, torch.long)
    if offsets.shape != (B, 2) or int(offsets.min()) < 0 or int(offsets.max()) > 2 * pad:
        raise ValueError(f"offsets must be [B, 2] integers in [0, {2 * pad}], got {tuple(offsets.shape)}")
    padded = F.pad(images, (pad, pad, pad, pad), mode="constant" if padding_mode == "zeros" else "reflect")
    rows = offsets[:, 0, None] + torch.arange(H, device=images.device)  # [B, H]
    cols = offsets[:, 1, None] + torch.arange(W, device=images.device)  # [B, W]
    # One gather over the flattened padded plane (several times faster than 4-tensor advanced indexing on CPU).
    flat = (rows[:, :, None] * (W + 2 * pad) + cols[:, None, :]).view(B, 1, H * W).expand(-1, images.shape[1], -1)
    return padded.flatten(2).gather(2, flat).view(B, -1, H, W)


def random_crop(images: Tensor, pad: int, generator: torch.Generator, padding_mode: str = "zeros") -> Tensor:
    """Random ``H x W`` crop of each image padded by ``pad`` (zeros or reflection) — the CIFAR-style crop."""
    _check_generator(generator)
    offsets = torch.randint(0, 2 * pad + 1, (images.shape[0], 2), generator=generator, device=generator.device)
    return crop_at(images, offsets, pad, padding_mode)


def hflip(images: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability ``p``."""
    _check_images(images)
    _check_generator(generator)
    flip = (_rand(generator, images.shape[0]) < p).to(images.device).view(-1, 1, 1, 1)
    return torch.where(flip, images.flip(-1), images)


# ------------------------------------------------------------------------------------------ geometric (affine)


def affine(images: Tensor, matrix: Tensor, fill: float = 0.5) -> Tensor:
    """Warp each image by ``matrix [B, 2, 3]`` — pixel units, origin at the image centre, mapping *output* pixel
    coordinates ``(x, y)`` to *input* ones — with bilinear sampling; outside pixels take the value ``fill``."""
    _check_images(images)
    B, _, H, W = images.shape
    m = matrix.to(images.device, images.dtype)
    # affine_grid works in [-1, 1] coordinates: conjugate by the pixel scale diag(W/2, H/2).
    scale = torch.tensor([W / 2, H / 2], device=images.device, dtype=images.dtype)
    theta = torch.cat(
        [m[:, :, :2] * scale[None, None, :] / scale[None, :, None], m[:, :, 2:] / scale[None, :, None]], 2
    )
    grid = F.affine_grid(theta, [B, 1, H, W], align_corners=False)
    # Zero padding on (images - fill) then + fill: sum_i w_i x_i + fill * (1 - sum_i w_i), i.e. `fill` outside.
    warped = F.grid_sample(images - fill, grid, mode="bilinear", align_corners=False) + fill
    return warped.clamp(0.0, 1.0)


def _affine_matrix(a: Tensor, b: Tensor, c: Tensor, d: Tensor, tx: Tensor, ty: Tensor) -> Tensor:
    return torch.stack([torch.stack([a, b, tx], -1), torch.stack([c, d, ty], -1)], -2)


def translate(images: Tensor, shift: Tensor, fill: float = 0.5) -> Tensor:
    """Move the content of each image by ``shift [B, 2]`` pixels ``(dx, dy)`` (right and down are positive)."""
    s = shift.to(torch.float64)
    one, zero = torch.ones_like(s[:, 0]), torch.zeros_like(s[:, 0])
    return affine(images, _affine_matrix(one, zero, zero, d=one, tx=-s[:, 0], ty=-s[:, 1]), fill)


def rotate(images: Tensor, degrees: Tensor, fill: float = 0.5) -> Tensor:
    """Rotate each image about its centre by ``degrees [B]``, counter-clockwise as displayed (like PIL)."""
    t = torch.deg2rad(degrees.to(torch.float64))
    cos, sin, zero = t.cos(), t.sin(), torch.zeros_like(t)
    # With y pointing down, a displayed counter-clockwise turn reads output (x, y) from input [[cos, -sin], [sin, cos]]
    # (x, y) (tested against torch.rot90).
    return affine(images, _affine_matrix(cos, -sin, sin, d=cos, tx=zero, ty=zero), fill)


def shear(images: Tensor, amount: Tensor, fill: float = 0.5) -> Tensor:
    """Shear each image about its centre by ``amount [B, 2]`` = ``(sx, sy)``: input ``x + sx*y``, ``y + sy*x``."""
    s = amount.to(torch.float64)
    one, zero = torch.ones_like(s[:, 0]), torch.zeros_like(s[:, 0])
    return affine(images, _affine_matrix(one, s[:, 0], s[:, 1], d=one, tx=zero, ty=zero), fill)


# --------------------------------------------------------------------------------------------- colour / pixel


def _blend(degenerate: Tensor, images: Tensor, factor: Tensor | float) -> Tensor:
    """PIL ``ImageEnhance``: ``degenerate + factor * (images - degenerate)``, clamped to [0, 1]."""
    return (degenerate + _per_sample(factor, images) * (images - degenerate)).clamp(0.0, 1.0)


def _grey(images: Tensor) -> Tensor:
    """Luma ``[B, 1, H, W]`` (ITU-R 601 weights for RGB, the channel mean otherwise)."""
    if images.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
        return (images * w.view(1, 3, 1, 1)).sum(1, keepdim=True)
    return images.mean(1, keepdim=True)


def brightness(images: Tensor, factor: Tensor | float) -> Tensor:
    """Scale brightness by ``factor`` (scalar or ``[B]``; 0 = black, 1 = unchanged)."""
    return _blend(torch.zeros_like(images), images, factor)


def contrast(images: Tensor, factor: Tensor | float) -> Tensor:
    """Scale contrast about each image's mean grey level by ``factor`` (0 = flat grey, 1 = unchanged)."""
    return _blend(_grey(images).mean((1, 2, 3), keepdim=True).expand_as(images), images, factor)


def sharpness(images: Tensor, factor: Tensor | float) -> Tensor:
    """Blend with PIL's 3x3 smoothing of the image (border kept): ``factor`` 0 = smooth, 1 = unchanged, >1 = sharp."""
    H, W = images.shape[-2:]
    # PIL's kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 = (3x3 box sum + 4 * centre) / 13. The box sum as shifted
    # adds is several times faster on CPU than conv2d or avg_pool2d with one input channel.
    p = F.pad(images, (1, 1, 1, 1))
    rows = p[..., :-2] + p[..., 1:-1] + p[..., 2:]
    smooth = (rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :] + 4.0 * images) / 13.0
    border = torch.ones(H, W, dtype=torch.bool, device=images.device)
    border[1:-1, 1:-1] = False
    return _blend(torch.where(border, images, smooth), images, factor)


def posterize(images: Tensor, bits: Tensor | int) -> Tensor:
    """Keep the top ``bits`` (1..8, scalar or ``[B]``) of each 8-bit pixel value."""
    step = 2.0 ** (8 - _per_sample(bits, images))
    return torch.floor(torch.round(images * 255.0) / step) * step / 255.0


def solarize(images: Tensor, threshold: Tensor | float) -> Tensor:
    """Invert pixels at or above ``threshold`` (in [0, 1], scalar or ``[B]``)."""
    return torch.where(images >= _per_sample(threshold, images), 1.0 - images, images)


def autocontrast(images: Tensor) -> Tensor:
    """Stretch each image channel to the full [0, 1] range (flat channels are left unchanged)."""
    lo = images.amin((2, 3), keepdim=True)
    hi = images.amax((2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (images - lo) / span.clamp_min(1e-12), images)


def cutout_at(images: Tensor, boxes: Tensor, fill: float = 0.5) -> Tensor:
    """Set the box ``boxes [B, 4] = (y0, y1, x0, x1)`` (half-open, pixels) of each image to ``fill``."""
    return torch.where(_box_mask(boxes, images.shape[-2:], images.device), torch.full_like(images, fill), images)


def _box_mask(boxes: Tensor, size: torch.Size | tuple[int, int], device: torch.device) -> Tensor:
    """``[B, 1, H, W]`` bool mask of the half-open boxes ``[B, 4] = (y0, y1, x0, x1)``."""
    b = boxes.to(device, torch.long)
    ys = torch.arange(size[0], device=device)
    xs = torch.arange(size[1], device=device)
    in_y = (ys >= b[:, 0, None]) & (ys < b[:, 1, None])  # [B, H]
    in_x = (xs >= b[:, 2, None]) & (xs < b[:, 3, None])  # [B, W]
    return (in_y[:, :, None] & in_x[:, None, :])[:, None]


def random_boxes(
    fraction: Tensor, size: torch.Size | tuple[int, int], generator: torch.Generator, device: torch.device
) -> Tensor:
    """Boxes ``[B, 4] = (y0, y1, x0, x1)`` covering about ``fraction [B]`` of an ``H x W`` image (sides scaled by
    ``sqrt(fraction)``), centred uniformly at random and clipped to the image — the cutmix box."""
    H, W = size
    r = fraction.to(generator.device, torch.float64).clamp(0, 1).sqrt()
    h, w = torch.round(r * H).long(), torch.round(r * W).long()
    cy = (_rand(generator, len(r)) * H).long()
    cx = (_rand(generator, len(r)) * W).long()
    y0, x0 = cy - h // 2, cx - w // 2
    boxes = torch.stack([y0.clamp(0, H), (y0 + h).clamp(0, H), x0.clamp(0, W), (x0 + w).clamp(0, W)], 1)
    return boxes.to(device)


def cutout(images: Tensor, side: Tensor | float, generator: torch.Generator, fill: float = 0.5) -> Tensor:
    """Fill a square of side ``side * min(H, W)`` (scalar or ``[B]``, in [0, 1]) at a random centre with ``fill``."""
    _check_images(images)
    _check_generator(generator)
    H, W = images.shape[-2:]
    side = torch.as_tensor(side, dtype=torch.float64).expand(images.shape[0])
    fraction = (side * min(H, W)) ** 2 / (H * W)  # random_boxes scales both sides by sqrt(fraction)
    return cutout_at(images, random_boxes(fraction, (H, W), generator, images.device), fill)


# ----------------------------------------------------------------------------------------------- RandAugment

# Each op maps (images [b, C, H, W], strength [b] (float64, CPU) in [-1, 1], fill, generator) -> images.
# |strength| = 1 is RandAugment's magnitude 10; the ranges follow the RandAugment paper / torchvision.
RandOp = Callable[[Tensor, Tensor, float, torch.Generator], Tensor]


def _shift(x: Tensor, s: Tensor, axis: int) -> Tensor:
    """Per-sample ``(dx, dy)`` shift of ``0.45 * s`` of the image width (axis 0) or height (axis 1)."""
    shift = torch.zeros(len(s), 2, dtype=torch.float64)
    shift[:, axis] = 0.45 * s * x.shape[-1 - axis]
    return shift


RAND_OPS: dict[str, RandOp] = {
    "identity": lambda x, s, fill, g: x,
    "autocontrast": lambda x, s, fill, g: autocontrast(x),
    "brightness": lambda x, s, fill, g: brightness(x, 1 + 0.9 * s),
    "contrast": lambda x, s, fill, g: contrast(x, 1 + 0.9 * s),
    "sharpness": lambda x, s, fill, g: sharpness(x, 1 + 0.9 * s),
    "posterize": lambda x, s, fill, g: posterize(x, 8 - torch.round(4 * s.abs())),
    "solarize": lambda x, s, fill, g: solarize(x, 1 - s.abs()),
    "translate_x": lambda x, s, fill, g: translate(x, _shift(x, s, 0), fill),
    "translate_y": lambda x, s, fill, g: translate(x, _shift(x, s, 1), fill),
    "rotate": lambda x, s, fill, g: rotate(x, 30 * s, fill),
    "shear_x": lambda x, s, fill, g: shear(x, torch.stack([0.3 * s, torch.zeros_like(s)], 1), fill),
    "shear_y": lambda x, s, fill, g: shear(x, torch.stack([torch.zeros_like(s), 0.3 * s], 1), fill),
    "cutout": lambda x, s, fill, g: cutout(x, 0.5 * s.abs(), g, fill),
}


class RandAugment:
    """RandAugment-like policy: each image gets ``num_ops`` ops drawn uniformly from ``ops``, each at strength
    ``magnitude / 10`` with a random sign (for the ops where direction matters).

    Vectorised: per step the batch is split by chosen op (a loop over the handful of ops, not over images).
    """

    def __init__(
        self, num_ops: int = 2, magnitude: float = 9.0, ops: tuple[str, ...] | None = None, fill: float = 0.5
    ) -> None:
        ops = tuple(RAND_OPS) if ops is None else tuple(ops)
        unknown = [o for o in ops if o not in RAND_OPS]
        if unknown or not ops:
            raise ValueError(f"ops must be a non-empty subset of {sorted(RAND_OPS)}, got unknown {unknown}")
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops}")
        if not 0.0 <= magnitude <= 10.0:
            raise ValueError(f"magnitude must be in [0, 10] (RandAugment's scale), got {magnitude}")
        if not 0.0 <= fill <= 1.0:
            raise ValueError(f"fill must be in [0, 1], got {fill}")
        self.num_ops, self.magnitude, self.ops, self.fill = num_ops, magnitude, ops, fill

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``images [B, C, H, W]`` in [0, 1] -> augmented images, same shape."""
        _check_images(images)
        _check_generator(generator)
        B = images.shape[0]
        out = images.clone()
        for _ in range(self.num_ops):
            choice = torch.randint(len(self.ops), (B,), generator=generator, device=generator.device).cpu()
            sign = torch.where(_rand(generator, B).cpu() < 0.5, -1.0, 1.0).to(torch.float64)
            strength = sign * (self.magnitude / 10.0)
            for k, name in enumerate(self.ops):
                idx = (choice == k).nonzero().squeeze(1)
                if len(idx) and name != "identity":
                    dev_idx = idx.to(images.device)
                    out[dev_idx] = RAND_OPS[name](out[dev_idx], strength[idx], self.fill, generator)
        return out

    def __repr__(self) -> str:
        return f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, ops={list(self.ops)})"


# ---------------------------------------------------------------------------------------------- random erasing


def erase_at(images: Tensor, boxes: Tensor, values: Tensor) -> Tensor:
    """Replace the box ``boxes [B, 4] = (y0, y1, x0, x1)`` (half-open, pixels; empty = untouched) of each image by
    ``values`` (broadcastable to ``images``)."""
    _check_images(images)
    return torch.where(_box_mask(boxes, images.shape[-2:], images.device), values.to(images), images)


class RandomErasing:
    """Random erasing (Zhong et al. 2020; timm's ``RandomErasing``, DeiT's ``mode='pixel'``): with probability ``p``
    an image gets one rectangle of ``scale`` (fraction of its area, uniform) and aspect ratio ``ratio`` (log-uniform)
    replaced by per-pixel noise, uniform in ``[0, 1]``.

    A box that does not fit is drawn again, up to ``attempts`` times (all attempts are drawn at once for the batch
    and the first that fits is used; an image with none is left alone), then placed uniformly inside the image.
    timm draws its noise as standard normal values *after* normalisation; here images are still in ``[0, 1]``
    (normalised inside the model), so the noise is uniform over that range. The noise pixels come from a generator
    on the images' device seeded from ``generator`` (drawing ``[B, C, H, W]`` numbers on the CPU would dominate a
    GPU step); which images and boxes are erased comes from ``generator`` itself.
    """

    def __init__(
        self,
        p: float = 0.25,
        scale: tuple[float, float] = (0.02, 1 / 3),
        ratio: tuple[float, float] = (0.3, 1 / 0.3),
        attempts: int = 10,
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"random erasing probability must be in [0, 1], got {p}")
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"scale must be (min, max) area fractions with 0 < min <= max <= 1, got {scale}")
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be (min, max) aspect ratios with 0 < min <= max, got {ratio}")
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.p, self.scale, self.ratio, self.attempts = p, tuple(scale), tuple(ratio), attempts

    def boxes(self, batch: int, size: tuple[int, int], generator: torch.Generator) -> Tensor:
        """Boxes ``[B, 4] = (y0, y1, x0, x1)`` on the generator's device; images not to erase get an empty box."""
        H, W = size
        shape = (batch, self.attempts)
        area = (self.scale[0] + (self.scale[1] - self.scale[0]) * _rand(generator, *shape)) * (H * W)
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand(generator, *shape))
        h = torch.round(torch.sqrt(area * aspect)).long()
        w = torch.round(torch.sqrt(area / aspect)).long()
        fits = (h < H) & (w < W) & (h > 0) & (w > 0)
        first = fits.long().argmax(1, keepdim=True)  # the first attempt that fits (0 when none does)
        h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
        erase = (_rand(generator, batch) < self.p) & fits.any(1)
        y0 = (_rand(generator, batch) * (H - h + 1)).long().clamp_max(H - h)
        x0 = (_rand(generator, batch) * (W - w + 1)).long().clamp_max(W - w)
        h, w = torch.where(erase, h, 0), torch.where(erase, w, 0)
        return torch.stack([y0, y0 + h, x0, x0 + w], 1)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``images [B, C, H, W]`` in [0, 1] -> images with the erased boxes filled by noise, same shape."""
        _check_images(images)
        _check_generator(generator)
        boxes = self.boxes(images.shape[0], images.shape[-2:], generator)
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        chosen = (boxes[:, 1] > boxes[:, 0]).nonzero().squeeze(1)  # only the erased images need noise
        if not len(chosen):
            return images
        noise_gen = torch.Generator(device=images.device).manual_seed(seed)
        noise = torch.rand(
            (len(chosen), *images.shape[1:]), generator=noise_gen, device=images.device, dtype=images.dtype
        )
        dev_idx = chosen.to(images.device)
        out = images.clone()
        out[dev_idx] = erase_at(images[dev_idx], boxes[chosen], noise)
        return out

    def __repr__(self) -> str:
        return f"RandomErasing(p={self.p}, scale={self.scale}, ratio={self.ratio}, attempts={self.attempts})"


# ------------------------------------------------------------------------------------------------ mixup/cutmix


def _log_gamma(alpha: float, n: int, generator: torch.Generator) -> Tensor:
    """Logs of ``n`` Gamma(alpha, 1) samples (Marsaglia-Tsang; boosted by ``U^(1/alpha)`` for alpha < 1)."""
    a = alpha + 1.0 if alpha < 1.0 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64, device=generator.device)
    todo = torch.arange(n, device=generator.device)
    while len(todo):  # rejection rounds (acceptance > 95%), not a loop over samples
        x = torch.randn(len(todo), generator=generator, device=generator.device, dtype=torch.float64)
        u = _rand(generator, len(todo))
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = math.log(d) + torch.log(v[ok])
        todo = todo[~ok]
    if alpha < 1.0:
        out += torch.log1p(-_rand(generator, n)) / alpha  # log U with U in (0, 1]
    return out


def sample_beta(alpha: float, n: int, generator: torch.Generator) -> Tensor:
    """``n`` samples of Beta(alpha, alpha) (float64, on the generator's device), computed in log space."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    return torch.sigmoid(_log_gamma(alpha, n, generator) - _log_gamma(alpha, n, generator))


def mix_pair(images: Tensor, targets: Tensor, weight: Tensor, perm: Tensor) -> tuple[Tensor, Tensor]:
    """Blend each image with its partner ``images[perm]`` under a per-pixel ``weight [B, 1, H|1, W|1]`` in [0, 1]
    (the share of the image itself); the targets mix with the weight's spatial mean.

    Mixup is a constant weight ``lam``; cutmix is ``1`` outside and ``0`` inside the pasted box.
    """
    _check_images(images)
    if targets.ndim != 2 or len(targets) != len(images):
        raise ValueError(f"targets must be [B, num_classes] with B = {len(images)}, got {tuple(targets.shape)}")
    perm = perm.to(images.device)
    w = weight.to(images.device, images.dtype)
    mixed = torch.lerp(images.index_select(0, perm), images, w)  # w * images + (1 - w) * partner
    a = w.expand(len(images), 1, *images.shape[-2:]).mean((1, 2, 3)).to(targets.dtype)[:, None]
    return mixed, torch.lerp(targets.index_select(0, perm), targets, a)


def _check_targets(targets: Tensor, images: Tensor) -> None:
    if not targets.is_floating_point() or targets.ndim != 2 or len(targets) != len(images):
        raise ValueError(f"targets must be float [B, num_classes] (B = {len(images)}), got {tuple(targets.shape)}")


def mixup(images: Tensor, targets: Tensor, alpha: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Mixup: each image becomes ``lam * x + (1 - lam) * x[perm]`` with ``lam ~ Beta(alpha, alpha)`` per sample."""
    _check_images(images)
    _check_targets(targets, images)
    _check_generator(generator)
    lam = sample_beta(alpha, len(images), generator)
    perm = torch.randperm(len(images), generator=generator, device=generator.device)
    return mix_pair(images, targets, lam.view(-1, 1, 1, 1), perm)


def cutmix(images: Tensor, targets: Tensor, alpha: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """CutMix: paste a box of about ``1 - lam`` of the area (``lam ~ Beta(alpha, alpha)``) from a partner image;
    the targets use the exact pasted fraction after clipping the box to the image."""
    _check_images(images)
    _check_targets(targets, images)
    _check_generator(generator)
    lam = sample_beta(alpha, len(images), generator)
    boxes = random_boxes(1 - lam, images.shape[-2:], generator, images.device)
    perm = torch.randperm(len(images), generator=generator, device=generator.device)
    return mix_pair(images, targets, 1.0 - _box_mask(boxes, images.shape[-2:], images.device).float(), perm)


class MixUpCutMix:
    """Per sample: with probability ``prob`` mix it with a partner — by cutmix with probability ``switch_prob`` when
    both alphas are > 0 (else whichever is enabled), otherwise by mixup."""

    def __init__(
        self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0, switch_prob: float = 0.5
    ) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha} and {cutmix_alpha}")
        if not (0.0 <= prob <= 1.0 and 0.0 <= switch_prob <= 1.0):
            raise ValueError(f"prob and switch_prob must be in [0, 1], got {prob} and {switch_prob}")
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ValueError("MixUpCutMix needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.mixup_alpha, self.cutmix_alpha, self.prob, self.switch_prob = mixup_alpha, cutmix_alpha, prob, switch_prob

    def __call__(self, images: Tensor, targets: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``images [B, C, H, W]``, soft ``targets [B, K]`` -> mixed images and targets (rows still sum to 1)."""
        _check_images(images)
        _check_targets(targets, images)
        _check_generator(generator)
        B, size, dev = len(images), images.shape[-2:], images.device
        apply = (_rand(generator, B) < self.prob).to(dev).view(-1, 1, 1, 1)
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cut = (_rand(generator, B) < self.switch_prob).to(dev).view(-1, 1, 1, 1)
        else:
            use_cut = torch.full((B, 1, 1, 1), self.cutmix_alpha > 0, device=dev)
        ones = torch.ones(B, dtype=torch.float64, device=generator.device)
        lam_mix = sample_beta(self.mixup_alpha, B, generator) if self.mixup_alpha > 0 else ones
        lam_cut = sample_beta(self.cutmix_alpha, B, generator) if self.cutmix_alpha > 0 else ones
        box = _box_mask(random_boxes(1 - lam_cut, size, generator, dev), size, dev)
        weight = torch.where(use_cut, (~box).to(images.dtype), lam_mix.to(dev, images.dtype).view(-1, 1, 1, 1))
        weight = torch.where(apply, weight, torch.ones_like(weight))
        perm = torch.randperm(B, generator=generator, device=generator.device)
        return mix_pair(images, targets, weight, perm)

    def __repr__(self) -> str:
        return (
            f"MixUpCutMix(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, "
            f"switch_prob={self.switch_prob})"
        )


# ------------------------------------------------------------------------------------------------ the pipeline


class BatchTransform:
    """Training augmentation of a batch: random crop -> horizontal flip -> RandAugment -> random erasing ->
    mixup/cutmix (erasing before mixing, as in DeiT/timm, where it is part of each image's transform).

    ``__call__(images [B, C, H, W] in [0, 1], labels [B] int64, generator)`` returns
    ``(images [B, C, H, W] in [0, 1], targets [B, num_classes])``: soft labels, each row summing to 1.
    """

    def __init__(
        self,
        num_classes: int,
        crop_padding: int = 4,
        padding_mode: str = "zeros",
        flip: bool = True,
        randaugment: RandAugment | None = None,
        mix: MixUpCutMix | None = None,
        erasing: RandomErasing | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.num_classes, self.crop_padding, self.padding_mode = num_classes, crop_padding, padding_mode
        self.flip, self.randaugment, self.mix, self.erasing = flip, randaugment, mix, erasing

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        _check_images(images)
        _check_generator(generator)
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels must be [B] with B = {len(images)}, got {tuple(labels.shape)}")
        targets = one_hot(labels, self.num_classes).to(images.device, images.dtype)
        if self.crop_padding:
            images = random_crop(images, self.crop_padding, generator, self.padding_mode)
        if self.flip:
            images = hflip(images, generator)
        if self.randaugment is not None and self.randaugment.num_ops:
            images = self.randaugment(images, generator)
        if self.erasing is not None and self.erasing.p > 0:
            images = self.erasing(images, generator)
        if self.mix is not None:
            images, targets = self.mix(images, targets, generator)
        return images, targets

    def __repr__(self) -> str:
        return (
            f"BatchTransform(num_classes={self.num_classes}, crop_padding={self.crop_padding}, "
            f"padding_mode={self.padding_mode!r}, flip={self.flip}, randaugment={self.randaugment}, "
            f"erasing={self.erasing}, mix={self.mix})"
        )


class AugmentOptions(Protocol):
    """The training augmentation's options, as :class:`~spatialvit.train.config.TrainConfig` holds them (with their
    defaults and help)."""

    crop_padding: int
    flip: bool
    randaugment_ops: int
    randaugment_magnitude: float
    mixup_alpha: float
    cutmix_alpha: float
    mix_prob: float
    random_erasing: float


def build_train_transform(options: AugmentOptions, num_classes: int, *, padding_mode: str = "zeros") -> BatchTransform:
    """The standard training augmentation of ``options`` (a :class:`~spatialvit.train.config.TrainConfig`): crop
    with ``crop_padding`` (0 = off; ``padding_mode`` of the padding), flip, ``randaugment_ops`` ops per image (0 =
    off) at ``randaugment_magnitude`` (0..10), random erasing of ``random_erasing`` of the images (0 = off) and
    mixup/cutmix (alpha 0 = off) on ``mix_prob`` of samples.
    """
    crop_padding, flip, randaugment_ops = options.crop_padding, options.flip, options.randaugment_ops
    mixup_alpha, cutmix_alpha, mix_prob = options.mixup_alpha, options.cutmix_alpha, options.mix_prob
    random_erasing = options.random_erasing
    if randaugment_ops < 0:
        raise ValueError(f"randaugment_ops must be >= 0, got {randaugment_ops}")
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha} and {cutmix_alpha}")
    if not 0.0 <= mix_prob <= 1.0:
        raise ValueError(f"mix_prob must be in [0, 1], got {mix_prob}")
    if not 0.0 <= random_erasing <= 1.0:
        raise ValueError(f"random_erasing must be a probability in [0, 1], got {random_erasing}")
    randaugment = RandAugment(randaugment_ops, options.randaugment_magnitude) if randaugment_ops > 0 else None
    mix = MixUpCutMix(mixup_alpha, cutmix_alpha, mix_prob) if mixup_alpha > 0 or cutmix_alpha > 0 else None
    erasing = RandomErasing(random_erasing) if random_erasing > 0 else None
    return BatchTransform(
        num_classes, crop_padding, padding_mode, flip=flip, randaugment=randaugment, mix=mix, erasing=erasing
    )
