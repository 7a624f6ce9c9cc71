"""Batch augmentations: each piece against a naive per-image reference, Pillow's implementation or a known image,
reproducibility from the generator, soft targets that match what was done to the pixels, and the errors promised
for bad input."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps
from scipy import stats

from spatialvit.data import transforms as T

# The augmentation options, other than those a test sets (crop and flip on).
AUGMENT = dict(
    crop_padding=4,
    flip=True,
    randaugment_ops=0,
    randaugment_magnitude=9.0,
    mixup_alpha=0.0,
    cutmix_alpha=0.0,
    mix_prob=1.0,
    random_erasing=0.0,
)


def build(num_classes: int, padding_mode: str = "zeros", **options) -> T.BatchTransform:
    return T.build_train_transform(SimpleNamespace(**{**AUGMENT, **options}), num_classes, padding_mode=padding_mode)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _class_images(num_classes: int = 6, size: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One constant image per class with a distinct grey value: any mix of them can be read back from its pixels."""
    values = torch.linspace(0.1, 0.9, num_classes, dtype=torch.float64)
    labels = torch.arange(num_classes)
    images = values.view(-1, 1, 1, 1).expand(num_classes, 3, size, size).clone()
    return images, labels, values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_train_transform_shapes_range_and_soft_targets(dtype):
    x = torch.rand(16, 3, 12, 10, dtype=dtype)
    y = torch.randint(0, 7, (16,))
    tf = build(7, randaugment_ops=2, mixup_alpha=0.8, cutmix_alpha=1.0, mix_prob=0.7)
    out, targets = tf(x, y, _gen())
    assert out.shape == x.shape and out.dtype == dtype
    assert out.min() >= 0 and out.max() <= 1
    assert targets.shape == (16, 7)
    torch.testing.assert_close(targets.sum(1), torch.ones(16, dtype=dtype))
    assert (targets >= 0).all()


def test_train_transform_is_reproducible_from_the_generator():
    x, y = torch.rand(16, 3, 16, 16), torch.randint(0, 10, (16,))
    tf = build(10, randaugment_ops=3, mixup_alpha=0.4, cutmix_alpha=1.0, padding_mode="reflect")
    a = tf(x, y, _gen(3))
    b = tf(x, y, _gen(3))
    c = tf(x, y, _gen(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_transform_does_not_modify_its_input():
    x, y = torch.rand(8, 3, 8, 8), torch.randint(0, 3, (8,))
    before = x.clone()
    build(3, randaugment_ops=2, cutmix_alpha=1.0)(x, y, _gen())
    assert torch.equal(x, before)


def test_no_augmentation_is_identity_with_one_hot_targets():
    x, y = torch.rand(5, 1, 6, 6), torch.tensor([0, 2, 1, 2, 0])
    out, targets = build(3, crop_padding=0, flip=False)(x, y, _gen())
    assert torch.equal(out, x)
    assert torch.equal(targets, F.one_hot(y, 3).float())


# ---------------------------------------------------------------------------------------------- crop and flip


def test_crop_with_zero_padding_and_offset_zero_shifts_by_exactly_pad():
    x = torch.rand(2, 3, 8, 8)
    pad = 3
    out = T.crop_at(x, torch.zeros(2, 2, dtype=torch.long), pad)
    assert torch.equal(out[..., pad:, pad:], x[..., :-pad, :-pad])
    assert (out[..., :pad, :] == 0).all() and (out[..., :, :pad] == 0).all()
    assert torch.equal(T.crop_at(x, torch.full((2, 2), pad), pad), x)  # centre offset = identity


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_random_crop_matches_a_per_image_reference(mode):
    x = torch.rand(9, 2, 7, 5)
    pad = 2
    out = T.random_crop(x, pad, _gen(1), padding_mode=mode)
    offsets = torch.randint(0, 2 * pad + 1, (9, 2), generator=_gen(1))  # the same draws
    for i in range(len(x)):
        padded = F.pad(x[i : i + 1], (pad,) * 4, mode="constant" if mode == "zeros" else "reflect")[0]
        dy, dx = offsets[i].tolist()
        torch.testing.assert_close(out[i], padded[:, dy : dy + 7, dx : dx + 5], rtol=0, atol=0)


def test_hflip_flips_some_images_exactly_and_respects_p():
    x = torch.rand(32, 3, 4, 5)
    out = T.hflip(x, _gen())
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped | kept).all() and flipped.any() and kept.any()
    assert torch.equal(T.hflip(x, _gen(), p=1.0), x.flip(-1))
    assert torch.equal(T.hflip(x, _gen(), p=0.0), x)


# ------------------------------------------------------------------------------------------ geometric (affine)


def test_rotate_by_90_degrees_matches_rot90_counter_clockwise():
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    out = T.rotate(x, torch.tensor([90.0, -90.0]))
    torch.testing.assert_close(out[0], torch.rot90(x[0], 1, (-2, -1)))
    torch.testing.assert_close(out[1], torch.rot90(x[1], -1, (-2, -1)))


def test_translate_by_whole_pixels_shifts_and_fills():
    x = torch.rand(1, 2, 5, 7, dtype=torch.float64)
    out = T.translate(x, torch.tensor([[2.0, -1.0]]), fill=0.25)  # right by 2, up by 1
    expected = torch.full_like(x, 0.25)
    expected[..., :-1, 2:] = x[..., 1:, :-2]
    torch.testing.assert_close(out, expected)


def test_affine_identity_and_zero_shear_keep_the_image():
    x = torch.rand(3, 3, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(T.shear(x, torch.zeros(3, 2)), x)
    torch.testing.assert_close(T.rotate(x, torch.zeros(3)), x)


def test_shear_matches_pointwise_reference():
    # Output pixel (x, y) (centred coordinates) samples input (x + sx*y, y); for sx = 1 on a 5x5 image the sample
    # points land on whole pixels, so each row is shifted by its centred row index.
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    out = T.shear(x, torch.tensor([[1.0, 0.0]]), fill=0.0)
    for row in range(5):
        shift = row - 2
        for col in range(5):
            src = col + shift
            expected = x[0, 0, row, src] if 0 <= src < 5 else 0.0
            torch.testing.assert_close(out[0, 0, row, col], torch.as_tensor(expected, dtype=torch.float64))


# --------------------------------------------------------------------------------------------- colour / pixel


def test_colour_ops_at_their_reference_points():
    x = torch.rand(4, 3, 6, 6, dtype=torch.float64)
    for op in (T.brightness, T.contrast, T.sharpness):
        torch.testing.assert_close(op(x, 1.0), x)  # factor 1 = unchanged
    torch.testing.assert_close(T.brightness(x, 0.0), torch.zeros_like(x))
    grey = (x * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)).sum(1).mean((1, 2))
    torch.testing.assert_close(T.contrast(x, 0.0), grey.view(-1, 1, 1, 1).expand_as(x))
    torch.testing.assert_close(T.solarize(x, 0.0), 1 - x)
    torch.testing.assert_close(T.solarize(x, 1.01), x)
    ac = T.autocontrast(x)
    torch.testing.assert_close(ac.amin((2, 3)), torch.zeros(4, 3, dtype=x.dtype))
    torch.testing.assert_close(ac.amax((2, 3)), torch.ones(4, 3, dtype=x.dtype))


def test_sharpness_smooths_with_pils_kernel_and_keeps_the_border():
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    out = T.sharpness(x, 0.0)
    k = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=x.dtype) / 13
    torch.testing.assert_close(out[0, 0, 2, 2], (x[0, 0, 1:4, 1:4] * k).sum())
    torch.testing.assert_close(out[0, 0, 0], x[0, 0, 0])


def test_posterize_keeps_the_top_bits():
    x = torch.arange(256, dtype=torch.float64).view(1, 1, 16, 16) / 255
    torch.testing.assert_close(T.posterize(x, 8), x)
    out2 = (T.posterize(x, torch.tensor([2])) * 255).round().long()
    assert torch.equal(out2, (x * 255).round().long() & 0b11000000)


def test_cutout_fills_one_square_per_image():
    x = torch.rand(6, 3, 10, 10)
    out = T.cutout(x, 0.4, _gen(), fill=0.5)
    changed = (out != x).any(1)  # [B, H, W]
    for c in changed:
        ys, xs = c.nonzero(as_tuple=True)
        assert len(ys) <= 16 and len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)


def test_erase_at_replaces_exactly_the_boxes():
    x = torch.rand(3, 2, 6, 7, dtype=torch.float64)
    boxes = torch.tensor([[1, 3, 2, 6], [0, 0, 0, 0], [0, 6, 0, 7]])
    noise = torch.rand(3, 2, 6, 7, dtype=torch.float64)
    out = T.erase_at(x, boxes, noise)
    want = x.clone()
    want[0, :, 1:3, 2:6] = noise[0, :, 1:3, 2:6]
    want[2] = noise[2]
    assert torch.equal(out, want)


def test_random_erasing_erases_one_box_of_the_stated_size_on_p_of_the_images():
    x = torch.full((4000, 3, 16, 16), 0.5)
    out = T.RandomErasing(0.25)(x, _gen())
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    changed = (out != x).any(1)  # [B, H, W]; noise never hits 0.5 exactly where it matters
    erased = changed.flatten(1).any(1)
    assert 0.22 < erased.float().mean() < 0.28  # p = 0.25: 1000 of 4000 expected, sd 27
    for c in changed[erased][:200]:
        ys, xs = c.nonzero(as_tuple=True)
        h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        assert len(ys) == h * w  # one rectangle, every pixel of it replaced (all channels: same mask)
        assert 0.02 * 256 * 0.5 <= h * w <= 256 / 3 * 1.35 and 0.3 / 1.8 <= h / w <= 1.8 / 0.3  # with rounding
    # the noise is uniform per pixel and channel, not one value per box
    region = out[erased][0][:, changed[erased][0]]
    assert region.unique().numel() == region.numel() and 0.3 < region.mean() < 0.7
    # reproducible from the generator; p = 0 leaves the images alone, p = 1 erases every image (boxes fit 16x16)
    again = T.RandomErasing(0.25)(x, _gen())
    assert torch.equal(out, again) and not torch.equal(out, T.RandomErasing(0.25)(x, _gen(1)))
    assert torch.equal(T.RandomErasing(0.0)(x, _gen()), x)
    assert (T.RandomErasing(1.0)(x[:200], _gen()) != x[:200]).flatten(1).any(1).all()


def test_random_erasing_in_the_pipeline_before_mixing():
    x, y = torch.full((64, 1, 12, 12), 0.5), torch.randint(0, 4, (64,))
    tf = build(4, crop_padding=0, flip=False, random_erasing=0.5)
    assert isinstance(tf.erasing, T.RandomErasing) and tf.erasing.p == 0.5
    out, targets = tf(x, y, _gen())
    assert 16 < (out != x).flatten(1).any(1).sum() < 48 and torch.equal(targets, F.one_hot(y, 4).float())
    assert build(4).erasing is None
    with pytest.raises(ValueError, match="random_erasing must be"):
        build(4, random_erasing=1.5)
    with pytest.raises(ValueError, match="scale must be"):
        T.RandomErasing(0.5, scale=(0.5, 0.2))


def _pil_to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].double() / 255


def test_pixel_ops_match_pil_within_its_uint8_rounding():
    arr = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    img, x = Image.fromarray(arr), _pil_to_tensor(Image.fromarray(arr))
    cases = [(ImageOps.posterize(img, 3), T.posterize(x, 3)), (ImageOps.solarize(img, 100), T.solarize(x, 100 / 255))]
    cases.append((ImageOps.autocontrast(img), T.autocontrast(x)))
    for factor in (0.3, 1.7):
        cases.append((ImageEnhance.Brightness(img).enhance(factor), T.brightness(x, factor)))
        cases.append((ImageEnhance.Contrast(img).enhance(factor), T.contrast(x, factor)))
        cases.append((ImageEnhance.Sharpness(img).enhance(factor), T.sharpness(x, factor)))
    for ref, ours in cases:  # PIL rounds to uint8 (and its contrast mean to an integer): within 1.5 levels
        assert (_pil_to_tensor(ref) - ours).abs().max() * 255 < 1.5


def test_geometric_ops_match_pil_bilinear_inside_the_image():
    arr = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    img, x = Image.fromarray(arr), _pil_to_tensor(Image.fromarray(arr))
    grey, bilinear = (128, 128, 128), Image.Resampling.BILINEAR
    fill, H = 128 / 255, 12
    cases = [
        (img.rotate(17.0, resample=bilinear, fillcolor=grey), T.rotate(x, torch.tensor([17.0]), fill)),
        (img.rotate(-30.0, resample=bilinear, fillcolor=grey), T.rotate(x, torch.tensor([-30.0]), fill)),
        # PIL's AFFINE data maps output (x, y) to input (a x + b y + c, d x + e y + f), origin at the corner.
        (img.transform(img.size, Image.Transform.AFFINE, (1, 0.3, -0.3 * H / 2, 0, 1, 0), bilinear, fillcolor=grey),
         T.shear(x, torch.tensor([[0.3, 0.0]]), fill)),
        (img.transform(img.size, Image.Transform.AFFINE, (1, 0, -2.5, 0, 1, 1.5), bilinear, fillcolor=grey),
         T.translate(x, torch.tensor([[2.5, -1.5]]), fill)),
    ]  # fmt: skip
    for ref, ours in cases:  # the two treat the outermost pixels differently; compare away from the border
        assert (_pil_to_tensor(ref) - ours)[..., 2:-2, 3:-3].abs().max() * 255 < 1.5


# ----------------------------------------------------------------------------------------------- RandAugment


def test_randaugment_applies_each_op_at_the_set_magnitude_per_sample():
    x = torch.rand(32, 3, 6, 6, dtype=torch.float64)
    out = T.RandAugment(num_ops=1, magnitude=5.0, ops=("brightness",))(x, _gen())
    up, down = T.brightness(x, 1.45), T.brightness(x, 0.55)
    is_up = (out - up).abs().flatten(1).amax(1) < 1e-12
    is_down = (out - down).abs().flatten(1).amax(1) < 1e-12
    assert (is_up | is_down).all() and is_up.any() and is_down.any()


@pytest.mark.parametrize("op", sorted(T.RAND_OPS))
def test_every_randaugment_op_keeps_shape_and_range(op):
    x = torch.rand(8, 3, 9, 7)
    out = T.RandAugment(num_ops=1, magnitude=10.0, ops=(op,))(x, _gen())
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    if op != "identity":
        assert not torch.equal(out, x)


def test_randaugment_mixes_ops_within_a_batch():
    x = torch.rand(64, 3, 8, 8)
    out = T.RandAugment(num_ops=1, magnitude=9.0, ops=("identity", "solarize"))(x, _gen())
    same = (out == x).flatten(1).all(1)
    assert same.any() and (~same).any()


# ------------------------------------------------------------------------------------------------ mixup/cutmix


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.5])
def test_sample_beta_follows_the_beta_distribution(alpha):
    s = T.sample_beta(alpha, 4000, _gen(5))
    assert stats.kstest(s.numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_mixup_targets_are_the_convex_combination_of_the_pixels():
    images, labels, values = _class_images()
    out, targets = T.mixup(images, F.one_hot(labels, 6).double(), 0.7, _gen())
    # Each mixed image is constant: lam * v_i + (1 - lam) * v_perm(i) — exactly targets @ values.
    expected = (targets @ values).view(-1, 1, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected)
    assert (targets > 0).sum(1).max() <= 2


def test_mix_pair_against_explicit_formula():
    x, t = torch.rand(4, 2, 3, 3, dtype=torch.float64), torch.rand(4, 5, dtype=torch.float64).softmax(1)
    lam, perm = torch.tensor([0.1, 0.5, 0.9, 1.0], dtype=torch.float64), torch.tensor([1, 0, 3, 2])
    out, targets = T.mix_pair(x, t, lam.view(-1, 1, 1, 1), perm)
    for i in range(4):
        torch.testing.assert_close(out[i], lam[i] * x[i] + (1 - lam[i]) * x[perm[i]])
        torch.testing.assert_close(targets[i], lam[i] * t[i] + (1 - lam[i]) * t[perm[i]])


def test_cutmix_target_weights_equal_the_pasted_area_fraction():
    images, labels, values = _class_images(num_classes=8, size=10)
    out, targets = T.cutmix(images, F.one_hot(labels, 8).double(), 1.0, _gen(2))
    for i in range(8):
        pasted = out[i, 0] != values[i]
        own = 1.0 - pasted.double().mean()
        assert targets[i, i] == pytest.approx(float(own)) or torch.equal(out[i], images[i])
        if pasted.any():  # the pasted region is one rectangle of one partner's value
            ys, xs = pasted.nonzero(as_tuple=True)
            assert len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
            partner = int((values - out[i, 0][pasted][0]).abs().argmin())
            assert targets[i, partner] == pytest.approx(float(pasted.double().mean()))
    torch.testing.assert_close(out.mean((1, 2, 3)), targets @ values)


@pytest.mark.parametrize(("mixup_alpha", "cutmix_alpha", "prob"), [(0.8, 1.0, 1.0), (0.0, 1.0, 0.5), (1.0, 0.0, 0.5)])
def test_mixupcutmix_targets_match_the_pixels(mixup_alpha, cutmix_alpha, prob):
    images, labels, values = _class_images(num_classes=10, size=8)
    mix = T.MixUpCutMix(mixup_alpha, cutmix_alpha, prob)
    out, targets = mix(images, F.one_hot(labels, 10).double(), _gen(7))
    torch.testing.assert_close(out.mean((1, 2, 3)), targets @ values)
    torch.testing.assert_close(targets.sum(1), torch.ones(10, dtype=torch.float64))
    if prob < 1:
        untouched = (targets.max(1).values == 1) & (out == images).flatten(1).all(1)
        assert untouched.any()


# -------------------------------------------------------------------------------------------------- bad input


def test_bad_input_errors_name_the_argument():
    x, y = torch.rand(2, 3, 4, 4), torch.tensor([0, 1])
    tf = build(2)
    with pytest.raises(ValueError, match="images must be a float tensor"):
        tf((x * 255).to(torch.uint8), y, _gen())
    with pytest.raises(ValueError, match="images must be a float tensor"):
        tf(x[0], y, _gen())
    with pytest.raises(ValueError, match="labels must lie in"):
        tf(x, torch.tensor([0, 2]), _gen())
    with pytest.raises(ValueError, match="labels must be"):
        tf(x, torch.tensor([0]), _gen())
    with pytest.raises(ValueError, match="generator must be a torch"):
        tf(x, y, 0)
    with pytest.raises(ValueError, match="magnitude"):
        build(2, randaugment_ops=1, randaugment_magnitude=11)
    with pytest.raises(ValueError, match="ops must be"):
        T.RandAugment(ops=("rotate", "warp"))
    with pytest.raises(ValueError, match="mix_prob"):
        build(2, mixup_alpha=1.0, mix_prob=1.5)
    with pytest.raises(ValueError, match="mixup_alpha"):
        build(2, mixup_alpha=-1.0)
    with pytest.raises(ValueError, match="padding_mode"):
        build(2, padding_mode="wrap")
    with pytest.raises(ValueError, match="pad must be"):
        T.random_crop(x, 4, _gen(), padding_mode="reflect")
    with pytest.raises(ValueError, match="alpha must be > 0"):
        T.sample_beta(0.0, 3, _gen())
