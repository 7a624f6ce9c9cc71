"""A study's runs as tasks on a Ray cluster (``executor: ray``; ``docs/cluster.md``). Imported only for that
executor: the rest of spatialvit needs no Ray.

Each (model, seed) run is one task, declared with the resources its config asks for (``train.threads`` CPUs, and
one GPU when it trains on CUDA). Every node must see the study folder at the same path (a shared filesystem): the
runs write their checkpoints there, and each task first checks that it sees the file the driver wrote there.

Faults: a task whose worker process or node dies is submitted again, at most :data:`RETRIES` times, and continues
from its last checkpoint (the runs have ``resume="auto"``, an exact resume), so the tables equal those of an
uninterrupted study. The driver resubmits it itself (Ray's own ``max_retries`` is 0) so that every retry is logged
with the node it died on. An exception raised by the run (a config error, a NaN loss, a missing dataset) is not
retried: it fails the study once, with the run's message and its node. Ctrl-C cancels every task.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

# Set before Ray is imported (it reads RAY_DEDUP_LOGS then): the workers' forwarded lines (each run's epochs) neither
# merged as "[repeated 2x across cluster]" (they differ only in their numbers) nor, in a redirected log, coloured.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
if not sys.stderr.isatty():
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")

import ray
from ray.exceptions import (
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    RayTaskError,
    WorkerCrashedError,
)

from .._text import plural
from ..config import AUTO
from ..train.config import TrainConfig
from .executors import RunResult, log_done, train_run

log = logging.getLogger(__name__)

# Times a run is submitted again after its worker process or its node died (system failures, not its own errors).
RETRIES = 3
SYSTEM_FAILURES = (WorkerCrashedError, NodeDiedError, OutOfMemoryError, ObjectLostError)
# Under the study folder: the file every task must see (a fresh token per study invocation)...
STORAGE_CHECK = Path("runs") / ".storage_check"
# ...and in each run folder, where the run's current attempt runs: {"study", "attempt", "node", "pid"}.
TASK_FILE = "ray_task.json"


class RunFailedError(RuntimeError):
    """A run failed for a reason that a retry cannot fix: its own exception, relayed with its node."""


class _RunError(Exception):
    """A run's own exception as its task raises it: ``(node, message)`` (Ray keeps no node with a user's error)."""


def _node() -> str:
    """This node, as ``hostname (ip)``."""
    return f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"


def _write_json(path: Path, value: dict) -> None:
    """Write ``path`` atomically (the driver polls it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def _run_task(train: TrainConfig, out: str, token: str, attempt: int) -> RunResult:
    """The task of one run, on a worker: check that the study folder ``out`` is the driver's (it holds ``token``),
    record where this attempt runs, and train (or continue, or reuse) the run. Its errors name the node."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
    node = _node()
    check = Path(out) / STORAGE_CHECK
    if not check.is_file() or check.read_text() != token:
        raise _RunError(
            node,
            f"the study folder {out!r} (--out) on this node is not the driver's (it lacks {STORAGE_CHECK} with this "
            "study's token): on a Ray cluster --out must be on a filesystem that every node mounts at the same path "
            "(docs/cluster.md)",
        )
    try:
        run_dir = Path(train.out)
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / TASK_FILE, {"study": token, "attempt": attempt, "node": node, "pid": os.getpid()})
        return train_run(train)
    except Exception as err:
        raise _RunError(node, str(err)) from err


class RayExecutor:
    """Trains a study's runs as Ray tasks; see the module docstring. Use :meth:`connect`."""

    def __init__(self, out: Path) -> None:
        self.out = out.absolute()  # relative paths would mean other folders on other nodes
        self.task = ray.remote(max_retries=0)(_run_task)

    @classmethod
    @contextmanager
    def connect(cls, address: str | None, out: Path) -> Iterator[RayExecutor]:
        """Join the cluster at ``address`` (``None``: Ray's rule: ``RAY_ADDRESS``, else a cluster ``ray start``
        began on this machine, else a new local one) for the duration of the block; a Ray session this process
        already has (``ray.init`` by a caller) is used and left open."""
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("executor ray schedules the runs itself: start the study without torchrun")
        started = not ray.is_initialized()
        if started:
            ray.init(address=address)
        try:
            yield cls(out)
        finally:
            if started:
                ray.shutdown()

    def train(self, jobs: list[TrainConfig]) -> list[RunResult]:
        if not jobs:
            return []
        jobs = [replace(job, out=str(Path(job.out).absolute()), progress=False) for job in jobs]
        token = uuid.uuid4().hex
        check = self.out / STORAGE_CHECK
        check.parent.mkdir(parents=True, exist_ok=True)
        check.write_text(token)
        try:
            return _Schedule(self, jobs, token).run()
        finally:
            check.unlink(missing_ok=True)

    def resources(self, job: TrainConfig) -> dict[str, float]:
        """What the task of ``job`` declares: ``train.threads`` CPUs (1 for torch's choice), and one GPU when it
        trains on CUDA (``cuda``, or ``auto`` on a cluster that has GPUs)."""
        gpus = ray.cluster_resources().get("GPU", 0)
        return {"num_cpus": job.threads or 1, "num_gpus": int(job.device == "cuda" or (job.device == AUTO and gpus))}


class _Schedule:
    """One :meth:`RayExecutor.train`: submits the tasks, logs them starting and finishing, resubmits the ones whose
    worker died, relays a run's own error, and cancels every task when it stops early."""

    def __init__(self, executor: RayExecutor, jobs: list[TrainConfig], token: str) -> None:
        self.executor, self.jobs, self.token = executor, jobs, token
        self.attempts = [0] * len(jobs)
        self.started = [False] * len(jobs)
        self.pending: dict[ray.ObjectRef, int] = {}

    def run(self) -> list[RunResult]:
        need = self.executor.resources(self.jobs[0])
        _check_feasible(need)
        total = ray.cluster_resources()
        log.info("== training %s as Ray tasks on %s (%d CPUs, %d GPUs), each with %s%s; a run whose worker dies "
                 "is retried up to %d times", plural(len(self.jobs), "run"), plural(len(ray.nodes()), "node"),
                 total.get("CPU", 0), total.get("GPU", 0), plural(need["num_cpus"], "CPU"),
                 " and 1 GPU" if need["num_gpus"] else "", RETRIES)  # fmt: skip
        start, results = time.perf_counter(), []
        try:
            for i in range(len(self.jobs)):
                self._submit(i)
            while self.pending:
                ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=1.0)  # a timeout: Ctrl-C is seen
                self._log_started()
                for ref in ready:
                    result = self._result(ref)
                    if result is not None:
                        results.append(result)
                        log_done(result, len(results), len(self.jobs), start, self._state())
        except BaseException:
            for ref in self.pending:
                ray.cancel(ref, force=True)
            raise
        return results

    def _submit(self, i: int) -> None:
        job = self.jobs[i]
        self.attempts[i] += 1
        self.started[i] = False
        options = {"name": f"train {job.model} seed {job.seed}", **self.executor.resources(job)}
        ref = self.executor.task.options(**options).remote(job, str(self.executor.out), self.token, self.attempts[i])
        self.pending[ref] = i

    def _result(self, ref: ray.ObjectRef) -> RunResult | None:
        """The finished run of ``ref``; ``None`` when its worker died and it was submitted again."""
        i = self.pending.pop(ref)
        job = self.jobs[i]
        try:
            return ray.get(ref)
        except RayTaskError as err:  # the run's own exception: retrying would fail the same way
            node, message = err.cause.args if isinstance(err.cause, _RunError) else ("unknown", str(err.cause))
            raise RunFailedError(f"[{job.model}, seed {job.seed}] failed on node {node}: {message}") from None
        except SYSTEM_FAILURES as err:
            where = self._where(i)
            if self.attempts[i] > RETRIES:
                died = plural(self.attempts[i], "time")
                raise RunFailedError(
                    f"[{job.model}, seed {job.seed}] its worker died {died} (last {where}: {type(err).__name__}); "
                    "its last checkpoint is kept: continue with --resume"
                ) from None
            log.warning("[%s, seed %d] its worker died %s (%s); retry %d of %d, continuing from its last checkpoint",
                        job.model, job.seed, where, type(err).__name__, self.attempts[i], RETRIES)  # fmt: skip
            self._submit(i)
            return None

    def _task_info(self, i: int) -> dict | None:
        """What the current attempt of run ``i`` recorded when it started (``None``: not started yet)."""
        try:
            info = json.loads((Path(self.jobs[i].out) / TASK_FILE).read_text())
        except (OSError, ValueError):
            return None
        return info if info.get("study") == self.token and info.get("attempt") == self.attempts[i] else None

    def _log_started(self) -> None:
        for i in self.pending.values():
            if not self.started[i] and (info := self._task_info(i)):
                self.started[i] = True
                job, again = self.jobs[i], f", attempt {self.attempts[i]}" if self.attempts[i] > 1 else ""
                log.info("[%s, seed %d] started on node %s (pid %d%s)", job.model, job.seed, info["node"],
                         info["pid"], again)  # fmt: skip

    def _where(self, i: int) -> str:
        info = self._task_info(i)
        return f"on node {info['node']} (pid {info['pid']})" if info else "before it started"

    def _state(self) -> str:
        running = sum(self.started[i] for i in self.pending.values())
        return f"{running} running, {len(self.pending) - running} queued"


def _check_feasible(need: dict[str, float]) -> None:
    """Fail now, not hang, when no node of the cluster has the resources that one run asks for."""
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    if not any(r.get("CPU", 0) >= need["num_cpus"] and r.get("GPU", 0) >= need["num_gpus"] for r in nodes):
        largest = max(((r.get("CPU", 0), r.get("GPU", 0)) for r in nodes), default=(0, 0))
        raise ValueError(
            f"each run asks Ray for {need['num_cpus']} CPUs and {need['num_gpus']} GPUs (train.threads, "
            f"train.device), but the largest node of the cluster has {largest[0]:.0f} CPUs and {largest[1]:.0f} GPUs"
        )
