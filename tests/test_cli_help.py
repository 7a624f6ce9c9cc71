"""Help pages: fast (no torch at parse time), complete (defaults, metavars that say what to type, examples that
parse), and the lazy package attributes that make them fast keep the library's names importable."""

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from spatialvit._text import plural
from spatialvit.cli import build_parser, help_pages
from spatialvit.cli.common import GENERIC, HelpFormatter

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("torch", "numpy", "matplotlib", "scipy", "sklearn", "tqdm", "ray")


PAGES = help_pages()
PATHS = [" ".join(path) or "(top level)" for path, _ in PAGES]


def test_help_imports_no_torch():
    """Building the parser and printing every help page (in a fresh interpreter) imports none of the heavy
    libraries; `import spatialvit` neither."""
    code = f"""
import contextlib, io, sys
import spatialvit
from spatialvit.cli import main
paths = {[path for path, _ in PAGES]!r}
for path in paths:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main([*path, "--help"])
        except SystemExit as exit_:
            assert exit_.code == 0, path
print(",".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"--help imported {proc.stdout.strip()}"


@pytest.mark.parametrize(("path", "parser"), PAGES, ids=PATHS)
def test_every_option_says_what_to_type_and_its_default_once(path, parser):
    text = parser.format_help()
    assert "%%" not in text and "%(" not in text
    formatter = HelpFormatter(parser.prog)
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.help == argparse.SUPPRESS:
            continue
        metavar = formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
        flag = action.option_strings[-1]
        assert metavar.strip("[]") != GENERIC, f"{flag}: metavar {metavar} says nothing"
        assert not (metavar.isupper() and "_" in metavar), f"{flag}: metavar {metavar} is a dest, not what to type"
        help_text = formatter._get_help_string(action)
        shown = help_text % {"default": action.default} if "%(default)" in help_text else help_text
        assert shown.count("(default:") <= 1, f"{flag}: {shown}"
        if not action.required and action.dest != "help":
            assert "default" in shown or "none:" in shown or "(0:" in shown, f"{flag} does not say its default"
            assert "(default: none)" not in shown or "none:" in shown or "null:" in shown, f"{flag}: what is none?"


@pytest.mark.parametrize(("path", "parser"), [p for p in PAGES if p[0]], ids=[p for p in PATHS if p != "(top level)"])
def test_every_command_ends_with_examples_that_parse(path, parser):
    text = parser.format_help()
    assert "\nexamples:\n" in text, f"spatialvit {' '.join(path)} --help has no examples"
    examples = [line.strip() for line in text.split("\nexamples:\n", 1)[1].splitlines() if line.strip()]
    assert examples
    mine = [e for e in examples if shlex.split(e, comments=True)[1 : 1 + len(path)] == path]
    assert mine, f"no example of spatialvit {' '.join(path)}"
    for example in examples:
        argv = shlex.split(example, comments=True)
        argv = argv[argv.index("spatialvit") + 1 :] if "spatialvit" in argv else argv
        build_parser().parse_args(argv)  # a SystemExit here is an example that does not parse


def test_bench_help_lists_its_sub_commands():
    bench = dict((" ".join(path), parser) for path, parser in PAGES)["bench"]
    text = bench.format_help()
    assert "models    every ViT family against the plain ViT of its size" in text
    assert text.count("every ViT family against the plain ViT of its size") == 1


def test_eval_help_names_the_unit():
    text = " ".join(dict((" ".join(path), parser) for path, parser in PAGES)["eval"].format_help().split())
    assert "Accuracies are fractions in [0, 1]" in text and "%%" not in text


def test_config_flags_get_metavars_from_their_key():
    help_of = {" ".join(path): " ".join(parser.format_help().split()) for path, parser in PAGES}
    for flag in ("--model NAME", "--data SPEC", "--device DEV", "--out DIR", "--config FILE"):
        assert flag in help_of["train"]
    assert "--size micro|tiny|small" in help_of["bench models"]
    assert "--sampler euler|heun" in help_of["generate sample"]
    assert "--split test|train" in help_of["sensitivity"]
    assert "--stop-after N" in help_of["train"] and "run to the end of the schedule" in help_of["train"]


@pytest.mark.parametrize(
    ("n", "noun", "text"),
    [(1, "epoch", "1 epoch"), (3, "epoch", "3 epochs"), (1, "channel", "1 channel"), (0, "class", "0 classes"),
     (2, "entry", "2 entries"), (2, "day", "2 days"), (1, "class", "1 class"), (12000, "image", "12,000 images"),
     (2, "batch", "2 batches")],
)  # fmt: skip
def test_plural(n, noun, text):
    assert plural(n, noun) == text
    assert plural(2, "index", "indices") == "2 indices" and plural(1, "index", "indices") == "1 index"


def test_lazy_packages_keep_every_name():
    import spatialvit
    import spatialvit.bench
    import spatialvit.generation
    import spatialvit.probes
    import spatialvit.study
    import spatialvit.train
    from spatialvit.bench.models import BenchConfig as bench_from_old_home
    from spatialvit.generation.loop import DenoiserConfig as denoiser_from_old_home
    from spatialvit.generation.sampler import SamplingConfig as sampling_from_old_home
    from spatialvit.probes.compare import SensitivityRunConfig as run_from_old_home
    from spatialvit.probes.sensitivity import SweepConfig as sweep_from_old_home
    from spatialvit.synth.config import ACTIVATION_NAMES
    from spatialvit.synth.experiments import FitSettings as fit_from_old_home
    from spatialvit.synth.model import ACTIVATIONS

    for package in (spatialvit, spatialvit.bench, spatialvit.generation, spatialvit.probes, spatialvit.study,
                    spatialvit.train):  # fmt: skip
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
            assert name in dir(package)
    assert spatialvit.create_model("vit_micro_patch4").patch_size == 4
    assert spatialvit.probes.association.association_report is not None
    assert spatialvit.bench.BenchConfig is bench_from_old_home
    assert spatialvit.generation.DenoiserConfig is denoiser_from_old_home
    assert spatialvit.generation.SamplingConfig is sampling_from_old_home
    assert spatialvit.probes.SensitivityRunConfig is run_from_old_home
    assert spatialvit.probes.SweepConfig is sweep_from_old_home
    assert spatialvit.study.StudyConfig().train.epochs == 12
    assert fit_from_old_home().steps == 300
    assert tuple(sorted(ACTIVATIONS)) == ACTIVATION_NAMES
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        spatialvit.train.nothing  # noqa: B018
