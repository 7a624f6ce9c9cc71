"""The headline study: several models on one dataset, sensitivity sweep, attention probes, one report.

Names are imported on first use (:mod:`spatialvit._lazy`): ``StudyConfig`` alone needs no torch."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".config": "DEFAULT_MODELS StudyConfig",
        ".runner": "COLUMNS WALL_CLOCK StudyResult run_study",
    },
)
