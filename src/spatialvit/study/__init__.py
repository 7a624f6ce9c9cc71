"""The headline study: several models on one dataset, sensitivity sweep, attention probes, one report.

Names are imported on first use (:mod:`spatialvit._lazy`): ``StudyConfig`` alone needs no torch."""

from .._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_MODELS": ".config",
    "StudyConfig": ".config",
    "COLUMNS": ".runner",
    "WALL_CLOCK": ".runner",
    "StudyResult": ".runner",
    "run_study": ".runner",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
