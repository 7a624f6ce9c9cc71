"""Our Config mechanism against jsonargparse and tyro on one real config (TrainConfig, 40 fields): `--help` time,
the error message for a bad value, and a YAML round-trip. Needs jsonargparse and tyro (a throwaway venv:
``python -m venv /tmp/cfg && /tmp/cfg/bin/pip install -c constraints.txt jsonargparse tyro pyyaml``; torch is not
needed: the configs import without it). Run: ``PYTHONPATH=src /tmp/cfg/bin/python benchmarks/config_libraries.py``.
Results: docs/architecture.md ("Configuration")."""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys

HELP = {
    "ours": "import argparse; from spatialvit.config import add_arguments; from spatialvit.train.config import "
    "TrainConfig; p = argparse.ArgumentParser(); add_arguments(p, TrainConfig); p.parse_args(['--help'])",
    "jsonargparse": "from jsonargparse import ArgumentParser; from spatialvit.train.config import TrainConfig; "
    "p = ArgumentParser(); p.add_class_arguments(TrainConfig); p.parse_args(['--help'])",
    "tyro": "import tyro; from spatialvit.train.config import TrainConfig; tyro.cli(TrainConfig, args=['--help'])",
}
BAD = {  # --epochs takes an int; give it text
    "ours": "import argparse; from spatialvit.config import add_arguments; from spatialvit.train.config import "
    "TrainConfig; p = argparse.ArgumentParser(prog='train'); add_arguments(p, TrainConfig); "
    "p.parse_args(['--epochs', 'ten'])",
    "jsonargparse": "from jsonargparse import ArgumentParser; from spatialvit.train.config import TrainConfig; "
    "p = ArgumentParser(prog='train'); p.add_class_arguments(TrainConfig); p.parse_args(['--epochs', 'ten'])",
    "tyro": "import tyro; from spatialvit.train.config import TrainConfig; "
    "tyro.cli(TrainConfig, prog='train', args=['--epochs', 'ten'])",
}
ROUND_TRIP = {
    "ours": "import tempfile, pathlib; from spatialvit.train.config import TrainConfig; c = TrainConfig(epochs=3, "
    "lr=0.01); f = pathlib.Path(tempfile.mkdtemp()) / 'c.yaml'; c.to_yaml(f); print(TrainConfig.from_yaml(f) == c)",
    "jsonargparse": "from jsonargparse import ArgumentParser; from spatialvit.train.config import TrainConfig; "
    "p = ArgumentParser(); p.add_class_arguments(TrainConfig, 'train'); c = p.parse_args(['--train.epochs', '3', "
    "'--train.lr', '0.01']); back = p.parse_string(p.dump(c)); print(p.instantiate_classes(back).train == "
    "TrainConfig(epochs=3, lr=0.01))",
    "tyro": "import tyro, yaml; from spatialvit.train.config import TrainConfig; c = tyro.cli(TrainConfig, "
    "args=['--epochs', '3', '--lr', '0.01']); print(TrainConfig(**yaml.safe_load(yaml.safe_dump(c.to_dict()))) == c)",
}


def run(code: str) -> tuple[float, subprocess.CompletedProcess]:
    """The CPU seconds (user + system) of a fresh interpreter running ``code``, and its result. CPU time, not wall
    time: it does not grow with the load of a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done


def main() -> None:
    bare = statistics.median(run("pass")[0] for _ in range(5))
    print(f"python -c pass: {bare:.3f} s CPU")
    for name in HELP:
        times = [run(HELP[name])[0] for _ in range(5)]
        _, bad = run(BAD[name])
        _, trip = run(ROUND_TRIP[name])
        message = (bad.stderr.strip().splitlines() or ["(none)"])[-1]
        result = trip.stdout.strip() or trip.stderr.strip().splitlines()[-1]
        print(f"{name}: --help median {statistics.median(times):.3f} s CPU (min {min(times):.3f})")
        print(f"  bad value: {message[:300]}")
        print(f"  YAML round-trip equal: {result[:300]}")


if __name__ == "__main__":
    main()
