"""Training config: defaults, YAML loading with clear errors, and CLI flags overriding YAML values."""

import argparse
from pathlib import Path

import pytest
import yaml

from spatialvit.cli import build_parser
from spatialvit.cli.train import build_config
from spatialvit.train import TrainConfig


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["train", *argv])


def test_yaml_then_flags_override(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("epochs: 7\nlr: 1e-3\nbatch_size: 16\nmodel_kwargs:\n  drop_path_rate: 0.1\n")
    cfg = build_config(parse("--config", str(path), "--epochs", "3", "--model-arg", "depth=2", "--no-amp"))
    assert cfg.epochs == 3  # flag beats YAML
    assert cfg.lr == 1e-3 and cfg.batch_size == 16  # YAML beats defaults ("1e-3" is a string to YAML 1.1)
    assert cfg.model_kwargs == {"drop_path_rate": 0.1, "depth": 2}
    assert cfg.amp is False
    assert cfg.weight_decay == TrainConfig().weight_decay  # untouched default
    assert build_config(parse("--clip-grad", "none")).clip_grad is None


def test_config_round_trips_through_yaml(tmp_path):
    cfg = TrainConfig(epochs=4, model_kwargs={"depth": 2}, clip_grad=None, out="runs/x")
    again = TrainConfig.from_yaml(cfg.to_yaml(tmp_path / "config.yaml"))
    assert again == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["epochs"] == 4


def test_default_config_file_loads():
    # The file is the default run written out.
    assert TrainConfig.from_yaml(Path(__file__).parents[1] / "configs" / "digits_micro.yaml") == TrainConfig()


IMAGENET_RECIPES = {"rmt_t": 0.1, "sdt_t": 0.1, "rmt_s": 0.15, "sdt_s": 0.15}  # model: RMT's drop path


@pytest.mark.parametrize("model", IMAGENET_RECIPES)
def test_imagenet_recipes_are_rmts(model):
    """configs/imagenet_{rmt,sdt}_{t,s}.yaml: one model each, RMT's recipe (spec/hierarchical.md), a torchrun line."""
    from spatialvit.models import list_models, model_defaults

    path = Path(__file__).parents[1] / "configs" / f"imagenet_{model}.yaml"
    cfg = TrainConfig.from_yaml(path)
    assert cfg.model == model and model in list_models() and model_defaults(model)["img_size"] == cfg.img_size == 224
    assert cfg.data == "folder:/data/imagenet" and cfg.model_kwargs == {"drop_path_rate": IMAGENET_RECIPES[model]}
    optim = (cfg.lr, cfg.ref_batch, cfg.min_lr, cfg.weight_decay, cfg.epochs, cfg.warmup_epochs, cfg.clip_grad)
    assert optim == (5e-4, 512, 1e-5, 0.05, 300, 5, None)
    aug = (cfg.randaugment_ops, cfg.randaugment_magnitude, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.label_smoothing)
    assert aug == (2, 9, 0.8, 1.0, 0.1) and cfg.flip
    assert (cfg.random_erasing, cfg.repeated_aug, cfg.ema_decay) == (0.25, 3, 0.99996)
    assert cfg.out == f"runs/imagenet_{model}" and cfg.num_workers > 0
    header = path.read_text().splitlines()[0]
    assert header.startswith("# torchrun --nproc_per_node=") and f"--config configs/imagenet_{model}.yaml" in header


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("lrr: 0.1\n", KeyError, r"unknown config key 'lrr'\. Did you mean: lr\?.*Valid keys: model, data"),
        ("epochs: ten\n", ValueError, r"'epochs' must be int, got 'ten'"),
        ("epochs: 0\n", ValueError, "epochs must be positive"),
        ("label_smoothing: 1.5\n", ValueError, r"label_smoothing must be in \[0, 1\)"),
        ("warmup_epochs: 50\n", ValueError, "must not exceed epochs"),
        ("device: tpu\n", ValueError, "device must be auto, cpu, cuda"),
        ("- a list\n", ValueError, "must be a mapping"),
        ("epochs: [\n", ValueError, "not valid YAML"),
    ],
)
def test_bad_yaml_names_the_problem(tmp_path, text, error, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(error, match=match) as info:
        TrainConfig.from_yaml(path)
    assert "bad.yaml" in str(info.value)


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match=r"config file 'nope\.yaml' does not exist"):
        TrainConfig.from_yaml("nope.yaml")


def test_bad_flag_values():
    with pytest.raises(ValueError, match="--model-arg expects KEY=VALUE"):
        build_config(parse("--model-arg", "depth"))
    with pytest.raises(SystemExit):
        parse("--epochs", "many")
