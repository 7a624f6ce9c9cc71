"""What every command shares at run time, one room per job: :mod:`.device` (the device, the writing rank),
:mod:`.wrappers` (the ``Normalize`` + classifier pair), :mod:`.outputs` (the guard against overwriting earlier
work), :mod:`.resume` (the exit status after Ctrl-C and the command that continues), :mod:`.progress` (progress
bars, time left).

Names are imported on first use (:mod:`spatialvit._lazy`): :mod:`.outputs`, :mod:`.resume` and :mod:`.progress`
need no torch."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".device": "is_main_process resolve_device",
        ".outputs": "OutputExistsError claim_outputs describe_changes existing_outputs",
        ".progress": "eta progress_bar",
        ".resume": "INTERRUPTED resume_command",
        ".wrappers": "split_classifier with_normalize",
    },
)
