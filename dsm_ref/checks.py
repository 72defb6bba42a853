"""Argument checks that share one wording: what was wrong, and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["check_choice"]


def check_choice(kind: str, value: str, allowed: Iterable[str]) -> str:
    """``value`` if it is one of ``allowed``, else ``ValueError("unknown <kind> ...; expected one
    of ...")``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; expected one of: {', '.join(allowed)}")
    return value
