"""Download-free evaluation of generated images with a classifier trained by spatialvit on the same data.

- FID here is the Fréchet distance between Gaussian fits of the classifier's penultimate features (the input of its
  ``head``) on real and on generated images. It is **not** Inception-FID: the numbers depend on that classifier and
  are only comparable between runs that use the same classifier checkpoint and the same real set.
- Precision / recall are the k-nearest-neighbour manifold estimates of Kynkäänniemi et al. (2019) on the same
  features: precision = share of generated samples inside the real manifold, recall = share of real samples inside
  the generated one.
- Accuracy = share of generated samples the classifier assigns to the class they were generated for.
"""

from __future__ import annotations

import torch
from torch import nn

from .._text import plural


def _head(classifier: nn.Module) -> nn.Linear:
    """The final linear layer (``head``) of a spatialvit classifier, possibly behind ``Normalize``."""
    heads = [m for name, m in classifier.named_modules() if name.split(".")[-1] == "head" and isinstance(m, nn.Linear)]
    if not heads:
        raise ValueError("the classifier has no linear `head` layer to take penultimate features from")
    return heads[-1]


@torch.no_grad()
def classifier_features(
    classifier: nn.Module, images: torch.Tensor, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features ``[N, D]`` and logits ``[N, K]`` of ``images[N, C, H, W]`` (in [0, 1])."""
    captured: list[torch.Tensor] = []
    hook = _head(classifier).register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    device = next(classifier.parameters()).device
    logits = []
    try:
        for chunk in images.split(batch_size):
            logits.append(classifier(chunk.to(device)).cpu())
    finally:
        hook.remove()
    return torch.cat(captured).cpu().double(), torch.cat(logits)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix through its eigen-decomposition."""
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of ``feats_a[N, D]`` and ``feats_b[M, D]`` (computed in float64).

    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2})`` with the last trace taken as
    ``sum sqrt(eig(S_a^{1/2} S_b S_a^{1/2}))``: a symmetric PSD matrix, so no complex square roots arise.
    """
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"features must be [N, D] with equal D, got {tuple(feats_a.shape)} and {tuple(feats_b.shape)}")
    if len(feats_a) < 2 or len(feats_b) < 2:
        raise ValueError("the Fréchet distance needs at least 2 samples per set")
    a, b = feats_a.double(), feats_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root_a = _sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    fd = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(float(fd), 0.0)


def _kth_neighbour_radius(feats: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of every row of ``feats[N, D]`` to its k-th nearest other row."""
    d = torch.cdist(feats, feats)
    return d.kthvalue(k + 1, dim=1).values  # the 1st smallest is the point itself


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """k-NN manifold precision and recall (Kynkäänniemi et al., 2019) of ``fake[M, D]`` against ``real[N, D]``.

    A set's manifold is the union of balls around its points with radius = distance to the k-th nearest neighbour in
    the same set. Precision: share of ``fake`` inside the real manifold; recall: share of ``real`` inside the fake one.
    """
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {plural(k, 'sample')} per set")
    real, fake = real.double(), fake.double()
    dist = torch.cdist(fake, real)  # [M, N]
    precision = (dist <= _kth_neighbour_radius(real, k)[None]).any(dim=1).double().mean()
    recall = (dist <= _kth_neighbour_radius(fake, k)[:, None]).any(dim=0).double().mean()
    return float(precision), float(recall)


def generation_metrics(
    classifier: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    fake_labels: torch.Tensor,
    k: int = 3,
    batch_size: int = 256,
) -> dict[str, float]:
    """FID, precision, recall (classifier features) and classifier accuracy of ``fake`` on ``fake_labels``.

    ``real[N, C, H, W]`` and ``fake[M, C, H, W]`` are images in ``[0, 1]``; ``fake_labels[M]`` the requested classes.
    """
    if len(fake_labels) != len(fake):
        raise ValueError(f"fake_labels has {plural(len(fake_labels), 'entry')} for {plural(len(fake), 'image')}")
    real_feats, _ = classifier_features(classifier, real, batch_size)
    fake_feats, logits = classifier_features(classifier, fake, batch_size)
    precision, recall = precision_recall(real_feats, fake_feats, k)
    return {
        "fid": frechet_distance(real_feats, fake_feats),
        "precision": precision,
        "recall": recall,
        "accuracy": float((logits.argmax(1) == fake_labels.cpu()).double().mean()),
    }
