"""Content-free attention priors and the spread of data-dependent decay rates (probes/priors.py)."""

import pytest
import torch

import spatialvit
from spatialvit.attention.manhattan import ManhattanBias
from spatialvit.probes.attention_maps import mean_attention_distance, token_distances
from spatialvit.probes.priors import content_free, has_prior, prior_attention_distance, rate_spread
from spatialvit.runtime import with_normalize


def classifier(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return with_normalize(spatialvit.create_model(name, num_classes=10), (0.5,), (0.5,)).eval()


def test_prior_of_plain_attention_is_uniform_and_of_fixed_decay_its_bias_alone():
    x = torch.rand(4, 3, 32, 32)
    dist = token_distances((8, 8), 4)
    plain = prior_attention_distance(classifier("vit_micro_patch4"), x)
    assert torch.allclose(plain, torch.full_like(plain, float(dist.mean())), atol=1e-4)
    rmt = classifier("vit_rmt_micro_patch4")
    prior = prior_attention_distance(rmt, x)
    # naive reference: per head, softmax of the Manhattan decay bias over the grid (the class token's logit is 0 too,
    # and the grid maps renormalise without it), then the weighted mean distance
    rates = rmt[-1].blocks[0].attn.bias(torch.zeros(1, 65, rmt[-1].embed_dim), (8, 8), 1).rates[0]  # [heads, 64]
    ys, xs = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    manhattan = torch.cdist(torch.stack([ys.flatten(), xs.flatten()], -1).float(), torch.stack(
        [ys.flatten(), xs.flatten()], -1).float(), p=1)  # fmt: skip
    expected = [float((torch.softmax(-r[0] * manhattan, -1) * dist).sum(-1).mean()) for r in rates]
    assert prior[0].tolist() == pytest.approx(expected, rel=1e-4)
    assert float(prior.mean()) < float(plain.mean())  # the decay alone is local
    # the scale comes back afterwards: the trained-path distance is unchanged by having taken the prior
    before = mean_attention_distance(rmt, x)
    with content_free(rmt):
        pass
    assert torch.equal(before, mean_attention_distance(rmt, x))


def test_sdt_at_initialisation_has_the_fixed_decay_prior_and_no_rate_spread():
    x = torch.rand(6, 3, 32, 32)
    sdt, rmt = classifier("vit_sdt_micro_patch4"), classifier("vit_rmt_micro_patch4")
    assert torch.allclose(prior_attention_distance(sdt, x), prior_attention_distance(rmt, x), atol=1e-5)
    assert rate_spread(rmt, x) == 0.0 and rate_spread(sdt, x) == pytest.approx(0.0, abs=1e-6)
    assert rate_spread(classifier("vit_micro_patch4"), x) is None
    assert not has_prior(classifier("vit_posattn_micro_patch4"))
    with pytest.raises(ValueError, match="softmax mixer"):
        prior_attention_distance(classifier("vit_posattn_micro_patch4"), x)


def test_rate_spread_equals_a_hand_computation_on_gated_rates():
    x = torch.rand(5, 3, 32, 32)
    sdt = classifier("vit_sdt_micro_patch4")
    for m in sdt.modules():
        if hasattr(m, "gate_weight"):
            torch.nn.init.normal_(m.gate_weight, std=0.2)
    seen: list[ManhattanBias] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out)) for m in sdt.modules()
             if hasattr(m, "gate_weight")]  # fmt: skip
    with torch.no_grad():
        sdt(x)
    for h in hooks:
        h.remove()
    expected = torch.stack([(b.rates.std(0) / b.rates.mean(0)).mean() for b in seen]).mean()
    assert rate_spread(sdt, x) == pytest.approx(float(expected), rel=1e-5) and float(expected) > 0.05
