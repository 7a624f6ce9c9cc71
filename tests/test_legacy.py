"""Checkpoints of spatialvit 0.1 (before the mixers were composed of parts) still load and compute the same.

``tests/data/legacy_mixers_v0.1.pt`` holds, per mixer, the state dict, an input and the output written by the 0.1
code (commit 429e0e6) with ``tests/data/make_legacy_mixers_v0.1.py``: conv-Q/K/V's ``qkv_conv.*``/``qkv.*``,
decay's ``log_rate``, SDT's ``gate_*`` and its dead ``log_rate`` buffer. GPSA's are refused with a clear error: GPSA
is now ConViT's (relative positional scores), which the 0.1 absolute positional map cannot be converted to.
"""

from pathlib import Path

import pytest
import torch

from spatialvit.attention import create_attention

LEGACY = torch.load(Path(__file__).parent / "data" / "legacy_mixers_v0.1.pt", weights_only=True)
CASES = [c for c in LEGACY["cases"] if c["name"] != "gpsa"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['name']}-{c['kwargs']}-p{c['prefix']}" for c in CASES])
def test_v0_1_state_dict_loads_strictly_and_gives_the_same_output(case):
    mixer = create_attention(
        case["name"],
        LEGACY["dim"],
        num_heads=LEGACY["heads"],
        num_prefix_tokens=case["prefix"],
        backend="reference",
        **case["kwargs"],
    ).double()
    mixer.load_state_dict(case["state"])  # strict: every old key has a place, nothing is missing
    with torch.no_grad():
        torch.testing.assert_close(mixer(case["x"], LEGACY["grid"]), case["y"], rtol=1e-12, atol=1e-12)


def test_v0_1_gpsa_state_dict_is_refused_clearly():
    old = [c for c in LEGACY["cases"] if c["name"] == "gpsa"]
    assert old
    for case in old:
        mixer = create_attention("gpsa", LEGACY["dim"], num_heads=LEGACY["heads"], num_prefix_tokens=case["prefix"])
        with pytest.raises(RuntimeError, match=r"GPSA of spatialvit 0\.1 .*Retrain"):
            mixer.load_state_dict(case["state"])


def test_fresh_sdt_mixer_has_no_log_rate_and_its_old_one_is_dropped():
    cag = create_attention("cag", 16, num_heads=2)
    assert not any("log_rate" in k for k in cag.state_dict())
    old = next(c for c in CASES if c["name"] == "cag")
    assert "log_rate" in old["state"]
    assert not hasattr(cag, "gammas")  # the rates are per token: no fixed schedule to report


def test_every_mixer_takes_keyword_arguments_after_dim():
    import inspect

    from spatialvit.attention import get_attention, list_attention

    for name in list_attention():
        params = list(inspect.signature(get_attention(name)).parameters.values())
        assert params[0].name == "dim", name
        assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params[1:]), name
        with pytest.raises(TypeError):
            get_attention(name)(16, 2)  # num_heads by position is refused
