"""Ctrl-C: a training run stopped mid-epoch exits with status 130 and no traceback, keeps its last complete
checkpoint, and prints the exact command that continues it; that command reproduces the uninterrupted run."""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spatialvit.runtime import resume_command
from spatialvit.train import load_checkpoint

SRC = str(Path(__file__).resolve().parents[1] / "src")
ARGS = [
    "--model", "vit_micro_patch4", "--data", "digits", "--img-size", "8", "--model-arg", "embed_dim=16",
    "--model-arg", "depth=1", "--model-arg", "num_heads=2", "--epochs", "3", "--batch-size", "8",
    "--warmup-epochs", "0.5", "--device", "cpu", "--threads", "1", "--no-progress",
]  # fmt: skip


def _default_sigint() -> None:
    # A process started in the background by a non-interactive shell inherits SIGINT as ignored, and Python then
    # installs no KeyboardInterrupt handler: give the child the default disposition, as a terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "spatialvit", *args], env=env, text=True, preexec_fn=_default_sigint, **kw
    )


def test_resume_command_drops_overwrite_and_adds_resume():
    assert resume_command(["train", "--out", "a b", "--overwrite"]) == "spatialvit train --out 'a b' --resume"
    assert resume_command(["study", "--resume"]) == "spatialvit study --resume"


@pytest.mark.slow
def test_sigint_mid_epoch_then_the_printed_command_finishes_the_run(tmp_path):
    out = tmp_path / "run"
    proc = run(["train", *ARGS, "--out", str(out)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (out / "last.pt").is_file():  # the first epoch is complete...
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)  # ...and the second one under way
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert load_checkpoint(out / "last.pt")["epoch"] >= 1  # the last complete checkpoint is intact
    command = err.split("continue with: ")[1].strip().splitlines()[0]
    assert command.startswith("spatialvit train ") and command.endswith("--resume")
    resumed = run(shlex.split(command)[1:], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    assert resumed.wait(timeout=300) == 0
    full = run(["train", *ARGS, "--out", str(tmp_path / "full")], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    assert full.wait(timeout=300) == 0
    a, b = load_checkpoint(out / "last.pt"), load_checkpoint(tmp_path / "full" / "last.pt")
    keys = ("train_loss", "test_loss", "test_top1")
    assert [[r[k] for k in keys] for r in a["metrics"]] == [[r[k] for k in keys] for r in b["metrics"]]


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"PPid:\t{pid}\n" in status.read_text():
                found.add(int(status.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_sigint_stops_a_study_training_in_worker_processes(tmp_path):
    out = tmp_path / "study"
    args = ["study", "--models", "vit_micro_patch4", "--seeds", "0,1", "--img-size", "8", "--epochs", "50",
            "--batch-size", "8", "--threads", "1", "--workers", "2", "--no-progress", "--out", str(out)]  # fmt: skip
    proc = run(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(list(out.glob("runs/*/*/last.pt"))) < 2:  # both workers are training
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "leaked" not in err and "continue with: spatialvit study" in err
    assert len(workers) >= 2 and not any(Path(f"/proc/{pid}").exists() for pid in workers)
