"""What the library offers, as plain data (no torch): the token mixers with their model family and study role, and
the ViT sizes and patch settings every family is registered at.

:data:`MIXERS` is the one table the attention package (which modules to import), the model registry
(``vit_{family}_{size}_patch{p}``), the study (roles of the claims, which models get the association probe, the
default model list), the claims and ``spatialvit generate --mixer`` read. A new mechanism is one module under
``spatialvit/attention/`` that registers its mixer, plus one row here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MixerEntry:
    """One token mixer.

    ``mixer``: its name in the attention registry; ``module``: the module of ``spatialvit.attention`` that registers
    it; ``family``: the ViT family ``vit_{family}_{size}_patch{p}`` built with it (``""``: the plain ``vit_*``);
    ``role``: its role in the papers' claims (``None``: none); ``positional``: its attention is (partly) a learned
    function of patch positions, so the study measures its patch association; ``default_study``: its micro model is
    one of the default study's models; ``decay_schedule``: it takes RMT's per-head decay schedule (``gamma_a``,
    ``gamma_b``) and the ``decomposed`` form, which the hierarchical backbone sets per stage; ``model_defaults``:
    further ViT arguments of the family.
    """

    mixer: str
    module: str
    family: str
    role: str | None = None
    positional: bool = False
    default_study: bool = False
    decay_schedule: bool = False
    model_defaults: dict[str, Any] = field(default_factory=dict)


MIXERS: tuple[MixerEntry, ...] = (
    MixerEntry("softmax", "softmax", "", role="plain", default_study=True),
    MixerEntry("conv_qkv", "conv_qkv", "convqkv", role="conv_qkv", default_study=True),
    MixerEntry(
        "positional",
        "positional",
        "posattn",
        role="positional",
        positional=True,
        default_study=True,
        model_defaults={"pos_embed": "none"},
    ),
    MixerEntry("gpsa", "positional", "gpsa", positional=True),
    MixerEntry("decay", "decay", "rmt", role="decay", default_study=True, decay_schedule=True),
    MixerEntry("cag", "cag", "sdt", role="sdt", default_study=True, decay_schedule=True),
    MixerEntry("relpos", "relpos", "relpos"),
)
# The CNN's role in the claims: any ResNet takes it.
CNN_ROLE = "cnn"
CNN_DEFAULT = "resnet_small"
# The ViT sizes and patch settings every family is registered at.
SIZES: dict[str, dict[str, Any]] = {
    "micro": dict(embed_dim=64, depth=4, num_heads=4),
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
}
PATCHES: dict[int, dict[str, Any]] = {4: dict(img_size=32, num_classes=10), 16: dict(img_size=224, num_classes=1000)}


def mixer_names() -> tuple[str, ...]:
    """The registered names of every mixer, in table order."""
    return tuple(m.mixer for m in MIXERS)


def vit_name(family: str, size: str, patch: int) -> str:
    """``vit_{family}_{size}_patch{patch}`` (``vit_{size}_patch{patch}`` for the plain family)."""
    return "_".join(filter(None, ["vit", family, size, f"patch{patch}"]))


def roles() -> tuple[str, ...]:
    """The claims' roles: the CNN's, then each mixer's that has one."""
    return (CNN_ROLE, *(m.role for m in MIXERS if m.role is not None))


def role_of_mixer() -> dict[str, str]:
    """Mixer name -> claims role, for the mixers that have one."""
    return {m.mixer: m.role for m in MIXERS if m.role is not None}


def positional_mixers() -> tuple[str, ...]:
    """The mixers whose patch association the study measures."""
    return tuple(m.mixer for m in MIXERS if m.positional)


def default_models() -> tuple[str, ...]:
    """The default study's models: the small ResNet, then the micro patch-4 ViT of every default mixer."""
    return (CNN_DEFAULT, *(vit_name(m.family, "micro", 4) for m in MIXERS if m.default_study))
