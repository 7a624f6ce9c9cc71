"""What a study's runs were trained on and for how long, read from their checkpoints: the check that a loaded
checkpoint fits the study's data, the training budget the report states per run, and the leftovers of a study
that failed before its first run finished (which do not block a re-run)."""

from __future__ import annotations

from pathlib import Path

from ..data import load_dataset
from ..train.checkpoint import check_data, describe_budget, load_checkpoint, trained_on
from .config import StudyConfig


def check_checkpoints(config: StudyConfig) -> None:
    """Refuse a checkpoint trained on other data or at another image size than the study's (one line naming both),
    unless ``config.other_data``."""
    if not config.checkpoints:
        return
    size = load_dataset(config.data, "test", config.img_size).info.img_size
    for path in config.checkpoints.values():
        check_data(path, load_checkpoint(path), config.data, size, other_data=config.other_data,
                   flag="--data", allow_flag="--other-data (YAML other_data: true)")  # fmt: skip


def run_paths(config: StudyConfig) -> dict[str, list[tuple[int | None, Path]]]:
    """Per model, ``(seed, checkpoint)`` of its runs: the given checkpoint (seed ``None``), or each seed's last.pt."""
    return {
        name: [(None, Path(config.checkpoints[name]))] if name in config.checkpoints
        else [(seed, Path(config.train_config(name, seed).out) / "last.pt") for seed in config.seeds]
        for name in config.models
    }  # fmt: skip


def budgets(config: StudyConfig) -> list[str]:
    """One sentence per model: how its runs were trained (epochs run of the schedule, training images, data and
    size), read from each run's checkpoint; runs with the same budget are named together."""
    lines = []
    for name, runs in run_paths(config).items():
        found = [(seed, path, load_checkpoint(path)) for seed, path in runs if path.is_file()]
        if not found:
            continue
        said: dict[str, list[int | None]] = {}
        for seed, _, ckpt in found:
            said.setdefault(describe_budget(trained_on(ckpt)), []).append(seed)
        loaded = name in config.checkpoints
        parts = []
        for text, seeds in said.items():
            who = "" if loaded or len(said) == 1 else f" (seeds {', '.join(map(str, seeds))})"
            parts.append(text + who)
        source = f"loaded from {config.checkpoints[name]}, trained for" if loaded else "trained for"
        other = ""
        if loaded and check_data(runs[0][1], found[0][2], config.data, None, other_data=True):
            other = f"; scored here on {config.data} (other_data: data other than it was trained on)"
        lines.append(f"`{name}`: {source} {'; '.join(parts)}{other}.")
    return lines


def failed_start(out: Path) -> bool:
    """Whether ``out`` holds only what a study leaves when it fails before any run has a checkpoint:
    ``study_config.yaml`` and run folders without a checkpoint (re-running may then replace them)."""
    if not out.is_dir():
        return False
    entries = {p.name for p in out.iterdir()}
    runs = out / "runs"
    return entries <= {"study_config.yaml", "runs"} and not (runs.is_dir() and any(runs.rglob("*.pt")))
