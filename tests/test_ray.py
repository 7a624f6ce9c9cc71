"""Studies on a Ray cluster (``executor: ray``, docs/cluster.md): a real local cluster of 2 CPUs trains a tiny study
(two micro ViTs x two seeds, 200 training images, 3 epochs) whose per-seed tables equal the local pool's; a worker
killed mid-run is retried from its checkpoint; a run's own error fails the study once; an --out the workers do not
see is named; Ctrl-C cancels the tasks and prints the resume command. Skipped when Ray is not installed."""

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from spatialvit.study import WALL_CLOCK, StudyConfig, run_study

SRC = str(Path(__file__).resolve().parents[1] / "src")
MICRO = {"embed_dim": 16, "depth": 2, "num_heads": 2}
SMALL = {
    "data": "digits",
    "img_size": 16,
    "models": ["vit_micro_patch4", "vit_posattn_micro_patch4"],
    "model_kwargs": {"vit_micro_patch4": MICRO, "vit_posattn_micro_patch4": MICRO},
    "train": {"epochs": 3, "batch_size": 32, "warmup_epochs": 0.5, "train_limit": 200, "device": "cpu", "threads": 1},
    "sensitivity": {"shuffle_grids": [2, 4], "mask_ratios": [0.5], "repeats": 2, "limit": 64},
    "probes": {"images": 8, "example_images": 1},
    "seeds": [0, 1],
    "progress": False,
}


def small(out, **changes) -> StudyConfig:
    return StudyConfig.from_dict({**SMALL, "out": str(out), **changes})


def per_seed(out: Path) -> list[dict[str, str]]:
    """comparison_seeds.csv without the wall-clock columns."""
    with open(out / "comparison_seeds.csv") as f:
        return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for the module; the study uses it (a Ray session it finds) and leaves it open."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The study trained by the local pool (2 worker processes)."""
    return run_study(small(tmp_path_factory.mktemp("local"), workers=2))


@pytest.fixture(scope="module")
def on_ray(cluster, tmp_path_factory):
    return run_study(small(tmp_path_factory.mktemp("ray"), executor="ray"))


def test_the_local_pool_imports_no_ray(local):
    """The default executor needs no Ray (this module's cluster fixture imports it only later)."""
    assert "ray" not in sys.modules and len(local.per_seed) == 4


def test_ray_study_per_seed_tables_equal_the_local_pools(local, on_ray):
    assert [r["source"] for r in on_ray.per_seed] == ["trained"] * 4
    assert per_seed(on_ray.out) == per_seed(local.out)
    assert not (on_ray.out / "runs" / ".storage_check").exists()  # the driver's check file is removed after use


def test_resume_on_ray_reuses_every_finished_run(on_ray, caplog):
    caplog.set_level("INFO", logger="spatialvit.study")
    checkpoints = sorted(on_ray.out.glob("runs/*/*/last.pt"))
    mtimes = [p.stat().st_mtime_ns for p in checkpoints]
    again = run_study(small(on_ray.out, executor="ray", resume=True))
    assert len(checkpoints) == 4 and [p.stat().st_mtime_ns for p in checkpoints] == mtimes
    assert per_seed(again.out) == per_seed(on_ray.out)
    assert "(4/4); 0 running, 0 queued" in caplog.text


def test_a_killed_worker_is_retried_from_its_last_checkpoint(local, cluster, tmp_path, caplog):
    """SIGKILL the worker process of a running task (its pid from the task's ray_task.json) after the run's first
    epoch: the driver logs the retry, the run continues from its checkpoint, the tables equal the pool's."""
    caplog.set_level("INFO", logger="spatialvit.study")
    out = tmp_path / "study"
    outcome = {}

    def study():
        try:
            outcome["result"] = run_study(small(out, executor="ray"))
        except BaseException as err:  # re-raised by the test
            outcome["error"] = err

    thread = threading.Thread(target=study)
    thread.start()
    run = out / "runs" / "vit_micro_patch4" / "seed0"
    deadline = time.time() + 600
    while not (run / "last.pt").is_file():  # epoch 1 is checkpointed, epoch 2 under way
        assert time.time() < deadline and thread.is_alive(), outcome
        time.sleep(0.02)
    os.kill(json.loads((run / "ray_task.json").read_text())["pid"], signal.SIGKILL)
    thread.join(timeout=900)
    if "error" in outcome:
        raise outcome["error"]
    assert "[vit_micro_patch4, seed 0] its worker died on node" in caplog.text
    assert "(WorkerCrashedError); retry 1 of 3, continuing from its last checkpoint" in caplog.text
    assert "[vit_micro_patch4, seed 0] started on node" in caplog.text and ", attempt 2)" in caplog.text
    assert per_seed(out) == per_seed(local.out)


def test_a_run_that_raises_fails_the_study_once_without_retries(cluster, tmp_path, caplog):
    caplog.set_level("INFO", logger="spatialvit.study")
    kwargs = {"vit_micro_patch4": {**MICRO, "patch_size": 5}, "vit_posattn_micro_patch4": MICRO}
    from spatialvit.study.ray_executor import RunFailedError

    with pytest.raises(RunFailedError, match=r"^\[vit_micro_patch4, seed \d\] failed on node .+: cannot build "
                                             r"'vit_micro_patch4' .+ is not divisible by patch_size=5"):  # fmt: skip
        run_study(small(tmp_path, executor="ray", model_kwargs=kwargs))
    assert "retry" not in caplog.text and "done in" not in caplog.text


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc/self/cwd")
def test_an_out_the_workers_do_not_see_is_named(cluster, tmp_path, monkeypatch):
    """``/proc/self/cwd/study`` is a different folder for the driver (moved to tmp_path) than for the workers (in
    the folder the cluster started in), as a node-local path is on the nodes of a cluster."""
    from spatialvit.study.ray_executor import RunFailedError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunFailedError, match=r"failed on node \S+ \([\d.]+\): the study folder '/proc/self/cwd/study' "
                                             r"\(--out\) on this node is not the driver's"):  # fmt: skip
        one = {"models": ["vit_micro_patch4"], "model_kwargs": {"vit_micro_patch4": MICRO}, "seeds": [0]}
        run_study(small("/proc/self/cwd/study", executor="ray", **one))
    assert (tmp_path / "study" / "study_config.yaml").is_file()  # the driver's side of the folder...
    assert not (tmp_path / "study" / "runs" / "vit_micro_patch4").exists()  # ...where no run wrote


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie left to an init that does not reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a terminal would (see tests/test_interrupt.py)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_ctrl_c_cancels_the_tasks_exits_130_and_prints_the_resume_command(cluster, tmp_path):
    """Ctrl-C on a driver that started its own local cluster: every task's worker is gone, the command to go on is
    printed (with --executor ray), the exit status is 130."""
    out = tmp_path / "study"
    args = ["study", "--executor", "ray", "--models", "vit_micro_patch4", "--seeds", "0,1", "--img-size", "8",
            "--epochs", "50", "--batch-size", "8", "--threads", "1", "--no-progress", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "spatialvit", *args], env=env, text=True,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, preexec_fn=_default_sigint)  # fmt: skip
    deadline = time.time() + 600
    while len(list(out.glob("runs/*/*/last.pt"))) < 1:
        assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.05)
    pids = [json.loads(p.read_text())["pid"] for p in out.glob("runs/*/*/ray_task.json")]
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    command = err.split("continue with: ")[1].strip().splitlines()[0]
    assert shlex.split(command)[:4] == ["spatialvit", "study", "--executor", "ray"] and command.endswith("--resume")
    deadline = time.time() + 60  # the workers of the driver's own cluster stop with it
    while any(_alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert pids and not any(_alive(pid) for pid in pids)
