"""Core models: shapes and gradients for every registered model, the plain mixer's fast path against its
reference, positional-embedding resampling, and the errors promised for bad input."""

import pytest
import torch

import spatialvit
from spatialvit.attention import create_attention, reference_attention, sdpa_attention
from spatialvit.models import VisionTransformer, create_model, list_models
from spatialvit.models.layers import resample_pos_embed, sincos_pos_embed_2d

SMALL_INPUT = 16  # every registered model is built for a 16x16 input so the whole registry runs in seconds


def _build_small(name: str) -> torch.nn.Module:
    overrides = dict(num_classes=5, img_size=SMALL_INPUT)
    if name.startswith("vit_"):
        overrides.update(embed_dim=32, depth=2, num_heads=2)
        if name.endswith("patch16"):
            overrides.update(img_size=32)
    return create_model(name, **overrides)


@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_and_backward(name):
    model = _build_small(name)
    size = model.img_size
    x = torch.randn(2, 3, *size)
    out = model(x)
    assert out.shape == (2, 5)
    out.logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("prefix", [0, 1])
def test_plain_mixer_sdpa_matches_reference(prefix):
    torch.manual_seed(1)
    fast = create_attention("softmax", 32, num_heads=4, num_prefix_tokens=prefix).double()
    ref = create_attention("softmax", 32, num_heads=4, num_prefix_tokens=prefix, backend="reference").double()
    ref.load_state_dict(fast.state_dict())
    grid = (3, 5)
    x = torch.randn(2, prefix + 15, 32, dtype=torch.float64, requires_grad=True)
    y_fast = fast(x, grid)
    (g_fast,) = torch.autograd.grad(y_fast.square().sum(), x)
    y_ref = ref(x, grid)
    (g_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-10, atol=1e-10)
    _, attn = fast(x, grid, return_attn=True)
    assert attn.shape == (2, 4, prefix + 15, prefix + 15)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, prefix + 15, dtype=torch.float64))


def test_kernels_agree_with_bias():
    q, k, v = (torch.randn(2, 3, 7, 8, dtype=torch.float64) for _ in range(3))
    bias = torch.randn(1, 3, 7, 7, dtype=torch.float64)
    out_ref, _ = reference_attention(q, k, v, bias)
    torch.testing.assert_close(sdpa_attention(q, k, v, bias), out_ref)
    manual = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5 + bias, -1) @ v
    torch.testing.assert_close(out_ref, manual)


def test_plain_vit_without_pos_embed_is_permutation_equivariant():
    mixer = create_attention("softmax", 16, num_heads=2)
    x = torch.randn(1, 12, 16)
    perm = torch.randperm(12)
    torch.testing.assert_close(mixer(x, (3, 4))[:, perm], mixer(x[:, perm], (3, 4)), rtol=1e-5, atol=1e-6)


def test_learned_pos_embed_resamples_to_new_size():
    model = create_model("vit_micro_patch4", img_size=32, dynamic_img_size=True)
    assert model.pos_embed.shape == (1, 8, 8, 64)
    out = model(torch.randn(2, 3, 48, 40))
    assert out.shape == (2, 10)
    # A constant embedding stays constant; resampling to the same grid is the identity.
    const = torch.ones(1, 4, 4, 3)
    torch.testing.assert_close(resample_pos_embed(const, (7, 5)), torch.ones(1, 7, 5, 3))
    pos = torch.randn(1, 4, 4, 3)
    assert resample_pos_embed(pos, (4, 4)) is pos
    # A checkpoint from 32x32 loads into a 48x48 model by resampling.
    big = create_model("vit_micro_patch4", img_size=48)
    big.load_state_dict(model.state_dict())
    torch.testing.assert_close(big.pos_embed, resample_pos_embed(model.pos_embed, (12, 12)))


def test_sincos_and_no_pos_embed():
    emb = sincos_pos_embed_2d((3, 4), 16)
    assert emb.shape == (3, 4, 16)
    assert len({tuple(v.tolist()) for v in emb.flatten(0, 1)}) == 12  # every position distinct
    for pos in ("sincos", "none"):
        m = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, pos_embed=pos)
        assert m(torch.randn(1, 3, 16, 16)).shape == (1, 10)
        assert m.pos_embed is None


def test_avg_pool_and_layer_scale_and_drop_path():
    m = VisionTransformer(
        img_size=16,
        patch_size=4,
        embed_dim=32,
        depth=2,
        num_heads=2,
        global_pool="avg",
        layer_scale_init=1e-5,
        drop_path_rate=0.5,
    )
    assert m.num_prefix_tokens == 0 and m.cls_token is None
    m.train()
    assert m(torch.randn(4, 3, 16, 16)).shape == (4, 10)
    m.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(m(x), m(x))


def test_per_layer_attention_list():
    m = VisionTransformer(
        img_size=8, patch_size=4, embed_dim=16, depth=2, num_heads=2, attn_layer=["softmax", "softmax"]
    )
    assert m.attn_layers == ["softmax", "softmax"]
    with pytest.raises(ValueError, match="depth=3"):
        VisionTransformer(
            img_size=8, patch_size=4, embed_dim=16, depth=3, num_heads=2, attn_layer=["softmax", "softmax"]
        )


def test_bad_inputs_give_clear_errors():
    model = create_model("vit_micro_patch4")
    with pytest.raises(ValueError, match=r"expects 32x32.*img_size=28"):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(KeyError, match="Did you mean: vit_micro_patch4"):
        spatialvit.create_model("vit_mirco_patch4")
    with pytest.raises(KeyError, match="unknown attention"):
        create_attention("sofmax", 16)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        create_model("vit_micro_patch4", img_size=30)
    with pytest.raises(ValueError, match="pos_embed"):
        create_model("vit_micro_patch4", pos_embed="rope")
    with pytest.raises(ValueError, match="img_size must be at least 8"):
        create_model("resnet_small", img_size=4)


def test_cnns_run_from_8_to_224():
    small = create_model("resnet_small", in_chans=1)
    for s in (8, 16, 64):
        assert small(torch.randn(2, 1, s, s)).shape == (2, 10)
    big = create_model("resnet18", num_classes=7)
    assert big(torch.randn(1, 3, 224, 224)).shape == (1, 7)


def test_list_models_pattern():
    assert "vit_micro_patch4" in list_models("vit_*_patch4")
    assert all(n.startswith("resnet") for n in list_models("resnet*"))


def test_grid_shaped_mixer_parameters_follow_the_model_grid():
    for name, size, grid in (("vit_posattn_micro_patch16", 224, 14), ("vit_posattn_micro_patch4", 48, 12)):
        model = create_model(name, img_size=size)
        assert model.blocks[0].attn.positional.pos.shape[1:3] == (grid, grid)
    chosen = create_model("vit_posattn_micro_patch4", attn_kwargs={"pos_grid": 4})
    assert chosen.blocks[0].attn.positional.pos.shape[1:3] == (4, 4)
