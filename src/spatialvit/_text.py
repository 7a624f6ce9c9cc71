"""Counts in messages: ``plural(1, "epoch")`` is ``"1 epoch"``, ``plural(3, "epoch")`` is ``"3 epochs"``."""

from __future__ import annotations


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``n`` and ``noun`` in the number ``n`` asks for: singular for exactly 1 (and -1), else ``plural_form`` or
    the regular English plural (class -> classes, batch -> batches, entry -> entries, epoch -> epochs). Thousands
    get commas."""
    if abs(n) == 1:
        word = noun
    elif plural_form is not None:
        word = plural_form
    elif noun.endswith(("s", "x", "z", "sh", "tch", "nch", "rch")):  # batches, benches; but epochs
        word = noun + "es"
    elif noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        word = noun[:-1] + "ies"
    else:
        word = noun + "s"
    return f"{n:,} {word}"
