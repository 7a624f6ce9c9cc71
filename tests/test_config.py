"""The shared config system: one declaration gives checked construction, YAML/dict loading with nested configs,
and command-line flags whose help shows the default."""

import argparse
from dataclasses import dataclass

import pytest

from spatialvit.config import Config, ConfigTypeError, add_arguments, given, option


@dataclass(frozen=True)
class Inner(Config):
    repeats: int = option(2, "draws per setting")
    ratios: list[float] = option(help="fractions", factory=lambda: [0.25, 0.5])


@dataclass(frozen=True)
class Outer(Config):
    name: str = option("run", "a name")
    size: int | None = option(None, "a size (none: native)")
    fast: bool = option(False, "go fast")
    inner: Inner = option(help="nested settings", factory=Inner)

    def validate(self) -> None:
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be positive, got {self.size}")


def test_from_dict_nested_tuples_and_errors():
    cfg = Outer.from_dict({"size": 3, "inner": {"ratios": (0.1,)}})
    assert cfg == Outer(size=3, inner=Inner(ratios=[0.1]))  # a tuple for a list key becomes a list
    with pytest.raises(KeyError, match=r"unknown config key 'nam'\. Did you mean: name\?"):
        Outer.from_dict({"nam": "x"})
    with pytest.raises(ConfigTypeError, match=r"inner\.repeats must be an int, got 1\.5"):
        Outer.from_dict({"inner": {"repeats": 1.5}})
    with pytest.raises(KeyError, match="in inner: unknown config key 'repeat'"):
        Outer.from_dict({"inner": {"repeat": 1}})
    with pytest.raises(ValueError, match="size must be positive"):
        Outer(size=0)
    with pytest.raises(ConfigTypeError, match="'size' must be int or null"):
        Outer(size="big")


def test_flags_from_the_declaration(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser, Outer)
    add_arguments(parser.add_argument_group("inner"), Inner, dest_prefix="inner.")
    args = parser.parse_args(["--size", "none", "--fast", "--ratios", "0.1,0.2"])
    assert given(args, Outer) == {"size": None, "fast": True}
    assert given(args, Inner, dest_prefix="inner.") == {"ratios": [0.1, 0.2]}
    assert given(parser.parse_args([]), Outer) == {}  # nothing given: the YAML or defaults stand
    parser.print_help()
    text = " ".join(capsys.readouterr().out.split())
    assert "--size N a size (none: native) (default: none)" in text
    assert "--fast, --no-fast go fast (default: off)" in text
    assert "--ratios A,B,... fractions (default: 0.25,0.5)" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "ten"])


def _command_configs() -> list[type[Config]]:
    from spatialvit.bench.config import BenchConfig
    from spatialvit.generation.config import GenerateEvalConfig, GenerateSampleConfig, GenerateTrainConfig
    from spatialvit.probes.config import SensitivityRunConfig
    from spatialvit.study.config import StudyConfig
    from spatialvit.synth.config import AssociateConfig, SynthTrainConfig, SynthTransferConfig
    from spatialvit.train.config import EvalConfig, TrainConfig

    train = [TrainConfig, EvalConfig, SensitivityRunConfig, BenchConfig, StudyConfig]
    return [*train, GenerateTrainConfig, GenerateSampleConfig, GenerateEvalConfig, SynthTrainConfig,
            SynthTransferConfig, AssociateConfig]  # fmt: skip


def test_every_command_declares_its_run_options_through_the_shared_ones():
    """device, threads and progress read the same everywhere; seed says what it seeds, overwrite what it replaces,
    out takes a folder (or a file): one declaration per run option, whatever the command."""
    import dataclasses

    from spatialvit import run_options as run

    shared = {"device": run.device(), "threads": run.threads(), "progress": run.progress()}
    seen = set()
    for cls in _command_configs():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in set(run.RUN_OPTIONS) & set(fields):
            seen.add(name)
            meta = fields[name].metadata
            if name in shared:
                assert meta["help"] == shared[name].metadata["help"], (cls.__name__, name)
            elif name == "seed":
                assert meta["help"].startswith("random seed of "), (cls.__name__, meta["help"])
            elif name == "overwrite":
                assert meta["help"].startswith("replace ") and "deleting those files first" in meta["help"]
            else:
                assert meta["metavar"] in ("DIR", "FILE"), (cls.__name__, name)
    assert seen == set(run.RUN_OPTIONS)


def test_generate_and_synth_read_yaml_flags_and_presets(tmp_path):
    from spatialvit.cli import build_parser
    from spatialvit.cli.synth import _setup
    from spatialvit.config import from_args
    from spatialvit.generation.config import GenerateTrainConfig
    from spatialvit.synth.config import SynthTrainConfig, SynthTransferConfig

    parser = build_parser()
    # synth: defaults <- the preset <- the file <- the flags; the preset's data options come first
    (tmp_path / "s.yaml").write_text("preset: small\ndata: d=20\nfit: {lr: 0.2}\n")
    args = parser.parse_args(["synth", "train", "--config", str(tmp_path / "s.yaml"), "--steps", "7"])
    config = _setup(args, SynthTrainConfig)
    assert (config.fit.steps, config.fit.lr, config.fit.attn_lr, config.n_train) == (7, 0.2, 100.0, 50_000)
    assert config.data_spec() == "grid=1x10,d=100,group=1x2,partition=random,d=20"
    assert config == SynthTrainConfig.from_yaml(config.to_yaml(tmp_path / "back.yaml"))  # YAML round trip
    image = _setup(parser.parse_args(["synth", "transfer", "--ns", "4,8", "--seeds", "2"]), SynthTransferConfig)
    assert (image.preset, image.fit.steps, image.ns, image.num_seeds) == ("image", 600, [4, 8], 2)
    with pytest.raises(KeyError, match="small"):
        _setup(parser.parse_args(["synth", "train", "--preset", "smal"]), SynthTrainConfig)
    # generate: nested denoiser: and sampling: keys, flat flags
    (tmp_path / "g.yaml").write_text("mixer: cag\ndenoiser: {steps: 9}\nsampling: {per_class: 2}\n")
    args = parser.parse_args(["generate", "train", "--config", str(tmp_path / "g.yaml"), "--lr", "0.01",
                              "--attn-kwargs", '{"alpha": 2}', "--out", "x"])  # fmt: skip
    config = from_args(args, GenerateTrainConfig, nested=("denoiser", "sampling"), config_file=args.config)
    assert (config.mixer, config.denoiser.steps, config.denoiser.lr, config.sampling.per_class) == ("cag", 9, 0.01, 2)
    assert config.attn_kwargs == {"alpha": 2} and config.out == "x"
    assert config == GenerateTrainConfig.from_yaml(config.to_yaml(tmp_path / "gback.yaml"))
    (tmp_path / "bad.yaml").write_text("denoiser: {step: 9}\n")
    args = parser.parse_args(["generate", "train", "--config", str(tmp_path / "bad.yaml")])
    with pytest.raises(KeyError, match="step"):
        from_args(args, GenerateTrainConfig, nested=("denoiser", "sampling"), config_file=args.config)
