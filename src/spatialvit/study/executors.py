"""Where a study's training runs execute: one after another, in a pool of local processes, or as tasks on a Ray
cluster (:mod:`.ray_executor`, imported only for ``executor: ray``).

Every executor has one method, ``train(jobs) -> list[RunResult]``: it trains each :class:`TrainConfig` (or reuses
its finished run, or continues its interrupted one: the study's runs have ``resume="auto"``) and returns the results
in any order. Since a run's numbers are fixed by its config and seed, every executor gives the same tables.
:func:`spatialvit.study.runner.open_executor` picks the one a study config asks for.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple, Protocol

from .._text import plural
from ..train.config import TrainConfig
from ..train.loop import fit

log = logging.getLogger(__name__)


class RunResult(NamedTuple):
    """One trained (or reused) run: its model, seed, last checkpoint and the seconds it took."""

    model: str
    seed: int
    checkpoint: Path
    seconds: float


class Executor(Protocol):
    """Trains a list of runs; returns their results in any order."""

    def train(self, jobs: list[TrainConfig]) -> list[RunResult]: ...


def train_run(train: TrainConfig) -> RunResult:
    """Train (or reuse, or continue) one run."""
    t0 = time.perf_counter()
    return RunResult(train.model, train.seed, fit(train).last_checkpoint, time.perf_counter() - t0)


def log_done(result: RunResult, done: int, total: int, start: float, state: str = "") -> None:
    """The line of a finished run: its time, the runs done so far, ``state`` (what is running and queued, where the
    executor knows) and the time the others will take at the mean pace so far."""
    left = (time.perf_counter() - start) / done * (total - done)
    log.info("[%s, seed %d] done in %.0f s (%d/%d)%s; about %.0f s left for the other runs", result.model,
             result.seed, result.seconds, done, total, f"; {state}" if state else "", left)  # fmt: skip


class InTurn:
    """One run after another in this process (a GPU, ``workers`` 1, or every rank under ``torchrun``)."""

    def train(self, jobs: list[TrainConfig]) -> list[RunResult]:
        start, results = time.perf_counter(), []
        for i, train in enumerate(jobs, 1):
            done = (Path(train.out) / "last.pt").is_file()
            log.info("== run %d/%d: %s, seed %d, %s (%d epochs)", i, len(jobs), train.model, train.seed,
                     "checking" if done else "training", train.epochs)  # fmt: skip
            results.append(train_run(train))
            log_done(results[-1], i, len(jobs), start)
        return results


def _worker_init() -> None:
    """A worker process: Ctrl-C is the parent's to handle (it stops the workers); log lines go to stderr."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)


def _train_logged(train: TrainConfig) -> RunResult:
    """:func:`train_run` in a worker, its log lines prefixed with the run (several runs write to one stream)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"[{train.model}, seed {train.seed}] %(message)s"))
    return train_run(train)


class ProcessPool:
    """``workers`` forked processes on this machine, one run at a time each, in job order; a failing run or Ctrl-C
    stops them all (checkpoints are written atomically, so ``--resume`` continues). Forked: no start-up imports,
    and no named semaphores left for Python's resource tracker to warn about when they are stopped."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def train(self, jobs: list[TrainConfig]) -> list[RunResult]:
        if len(jobs) < 2:
            return InTurn().train(jobs)
        log.info("== training %s in %s, threads=%s each", plural(len(jobs), "run"),
                 plural(self.workers, "worker process"), jobs[0].threads)  # fmt: skip
        start = time.perf_counter()
        pool = multiprocessing.get_context("fork").Pool(min(self.workers, len(jobs)), initializer=_worker_init)
        results = []
        try:
            quiet = [replace(train, progress=False) for train in jobs]  # bars of several processes would clash
            pending = pool.imap_unordered(_train_logged, quiet)
            while len(results) < len(jobs):
                try:  # a timeout, so that Ctrl-C is seen while waiting
                    results.append(pending.next(timeout=0.5))
                except multiprocessing.TimeoutError:
                    continue
                log_done(results[-1], len(results), len(jobs), start)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
        return results
