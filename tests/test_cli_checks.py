"""What the commands say: `models` finds names by a part of them and lists the families when nothing matches; bad
option values are refused up front, naming the option; a file that is not a classifier checkpoint is named for what
it is and the command that reads it; `bench` prints no profiler chatter."""

import re

import pytest
import torch

from spatialvit.cli import main
from spatialvit.models import create_model, measure_complexity
from spatialvit.models.registry import list_families, list_models, model_family


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``spatialvit ARGV`` (argparse's own errors exit 2 too)."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------------------------ models


def test_models_matches_a_part_of_the_name(capsys):
    code, out, _ = run(["models", "sdt"], capsys)
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines()[1:]]
    assert listed == list_models("sdt") and "vit_sdt_micro_patch4" in listed and "sdt_t_cifar" in listed
    assert all("sdt" in name for name in listed)
    assert list_models("vit_*_micro_patch4") == [n for n in list_models("micro_patch4") if n != "vit_micro_patch4"]


@pytest.mark.parametrize("pattern", ["nosuchmodel", "zz*"])
def test_models_without_a_match_lists_the_families(pattern, capsys):
    code, out, err = run(["models", pattern], capsys)
    assert code == 2 and out == ""
    assert f"no registered model name {'matches' if '*' in pattern else 'contains'} {pattern!r}" in err
    families = list_families()
    assert {"vit", "vit_sdt", "sdt", "rmt", "resnet"} <= set(families)
    assert f"Families: {', '.join(families)}" in err


def test_model_family_strips_size_patch_and_input_suffixes():
    assert model_family("vit_sdt_micro_patch4") == "vit_sdt"
    assert model_family("vit_tiny_patch16") == "vit"
    assert model_family("sdt_b_cifar") == "sdt" and model_family("rmt_micro") == "rmt"
    assert model_family("resnet_small") == "resnet" and model_family("resnet18_cifar") == "resnet18"


def test_models_params_and_flops(capsys):
    name = "vit_sdt_micro_patch4"
    code, out, _ = run(["models", name, "--params", "--flops"], capsys)
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split() == ["model", "img_size", "params", "GMACs"]
    model = create_model(name)
    expected = measure_complexity(model, img_size=32)
    assert row.split() == [name, "32x32", f"{expected.params / 1e6:.2f}M", f"{expected.macs / 1e9:.3f}"]
    assert "GMACs: multiply-accumulates (10^9) of one forward pass of one image at img_size NxN" in out


# ------------------------------------------------------------------------------------------------ bad options


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--lr", "nan"], "lr must be a finite number, got nan"),
        (["train", "--lr", "inf"], "lr must be a finite number, got inf"),
        (["train", "--lr", "0"], "lr must be positive, got 0.0"),
        (["train", "--lr=-1e-3"], "lr must be positive, got -0.001"),
        (["train", "--epochs", "0"], "epochs must be positive, got 0"),
        (["train", "--batch-size", "0"], "batch_size must be positive, got 0"),
        (["study", "--lr", "nan"], "in train: lr must be a finite number, got nan"),
        (["study", "--epochs", "0"], "in train: epochs must be positive, got 0"),
        (["study", "--batch-size", "0"], "in train: batch_size must be positive, got 0"),
        (["eval", "--checkpoint", "x.pt", "--batch-size", "0"], "batch_size must be positive, got 0"),
        (["sensitivity", "--checkpoint", "x.pt", "--limit", "0"], "for all images leave it out: --limit none"),
        (["sensitivity", "--checkpoint", "x.pt", "--batch-size", "0"], "in sweep: batch_size must be positive"),
        (["synth", "train", "--batch-size", "0"], "batch_size must be >= 1 (or none for full batch), got 0"),
        (["synth", "train", "--lr", "inf"], "lr must be > 0 and finite, got inf"),
        (["generate", "train", "--out", "g", "--batch-size", "0"], "batch_size must be >= 1, got 0"),
        (["generate", "train", "--out", "g", "--lr", "nan"], "lr must be > 0 and finite, got nan"),
        (["generate", "train", "--out", "g", "--attn-kwargs", "{alpha: 2}"], "not valid JSON (Expecting property "
         "name enclosed in double quotes at character 2): {alpha: 2}"),
        (["generate", "train", "--out", "g", "--attn-kwargs", "[2]"], "expected a JSON object like"),
        (["bench", "models", "--batch-size", "0"], "batch_size must be positive, got 0"),
    ],
)  # fmt: skip
def test_bad_option_values_are_named_up_front(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err, err
    command = " ".join(argv[: 2 if argv[0] in ("synth", "generate", "bench") else 1])
    assert re.search(rf"spatialvit {command}: error: ", err), err
    assert not any(tmp_path.iterdir()), "a refused command wrote files"


# ---------------------------------------------------------------------------- files that are not checkpoints


@pytest.mark.parametrize(
    ("name", "content", "looks"),
    [
        ("config.yaml", "model: vit_micro_patch4\nepochs: 2\n", "a YAML file, starting 'model: vit_micro_patch4'"),
        ("notes.txt", "hello\n", "a text file, starting 'hello'"),
        ("rows.json", '{"a": 1}', "a JSON file, starting '{\"a\": 1}'"),
        ("empty.pt", "", "an empty file"),
    ],
)
def test_a_resume_or_checkpoint_path_that_is_no_checkpoint_says_what_it_is(name, content, looks, tmp_path, capsys):
    path = tmp_path / name
    path.write_text(content)
    for argv in (["train", "--resume", str(path), "--out", str(tmp_path / "run")], ["eval", "--checkpoint", str(path)]):
        code, _, err = run(argv, capsys)
        assert code == 2
        assert f"{str(path)!r} is not a spatialvit checkpoint (it looks like {looks};" in err, err


def test_a_bare_state_dict_is_named(tmp_path, capsys):
    path = tmp_path / "weights.pt"
    torch.save(create_model("resnet_small").state_dict(), path)
    code, _, err = run(["eval", "--checkpoint", str(path)], capsys)
    assert code == 2 and "is not a spatialvit checkpoint" in err and "a bare state_dict?" in err


@pytest.fixture(scope="module")
def other_checkpoints(tmp_path_factory):
    """A model.pt of `synth train` and a denoiser.pt of `generate train`, both from tiny real runs."""
    root = tmp_path_factory.mktemp("other")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    synth = ["synth", "train", "--steps", "2", "--eval-every", "1", "--n-train", "20", "--n-test", "20"]
    synth += ["--data", "grid=1x4,d=8,group=1x2", "--out", str(root / "synth"), "--no-progress"]
    assert main(synth) == 0
    generate = ["generate", "train", "--img-size", "8", "--patch-size", "2", "--batch-size", "8", "--steps", "1"]
    generate += ["--per-class", "1", "--sample-steps", "1", "--out", str(root / "gen"), "--no-progress"]
    assert main(generate) == 0
    torch.set_num_threads(threads)
    return {"synth": root / "synth" / "model.pt", "denoiser": root / "gen" / "denoiser.pt"}


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("synth", "is the simplified model of `spatialvit synth train`, not a classifier: measure its patch "
         "association with `spatialvit synth associate`"),
        ("denoiser", "is a denoiser checkpoint of `spatialvit generate train`, not a classifier: score it with "
         "`spatialvit generate evaluate`"),
    ],
)  # fmt: skip
def test_eval_of_another_commands_checkpoint_names_the_command(kind, says, other_checkpoints, tmp_path, capsys):
    path = other_checkpoints[kind]
    code, _, err = run(["eval", "--checkpoint", str(path), "--out", str(tmp_path)], capsys)
    assert code == 2 and f"{str(path)!r} {says}" in err, err
    assert "unknown model" not in err
    code, _, err = run(["sensitivity", "--checkpoint", str(path), "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and says in err


# ------------------------------------------------------------------------------------------------------ bench


def test_bench_prints_no_profiler_lines(tmp_path, capfd):
    argv = ["bench", "models", "--size", "micro", "--img-size", "8", "--threads", "1", "--batch-size", "2"]
    assert main([*argv, "--repeats", "1", "--no-timm", "--out", str(tmp_path), "--no-progress"]) == 0
    out, err = capfd.readouterr()
    assert "| vit_micro_patch4 |" in out  # the bench ran, through the profiler
    assert not [line for line in (out + err).splitlines() if "USDT" in line or "profiler_start" in line], err
