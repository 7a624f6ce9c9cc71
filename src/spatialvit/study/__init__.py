"""The headline study: several models on one dataset, sensitivity sweep, attention probes, one report."""

from .config import DEFAULT_MODELS, StudyConfig
from .runner import COLUMNS, WALL_CLOCK, StudyResult, run_study

__all__ = ["COLUMNS", "DEFAULT_MODELS", "WALL_CLOCK", "StudyConfig", "StudyResult", "run_study"]
