"""What every check shares: running the learner's function case by case, comparing its answer
with the reference, and turning the first disagreement into one or two readable sentences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["Mismatch", "run_check", "call", "as_tensor", "expect_close", "expect_equal",
           "same", "describe"]


class Mismatch(Exception):
    """The learner's answer disagrees with the reference on one case; the message says which
    case, what was expected, what came back, and gives a hint."""


def run_check(exercise: str, function: Callable, cases: Callable[[], str]) -> bool:
    """Run ``cases()`` (which calls ``function`` through :func:`call` and raises
    :class:`Mismatch` at the first wrong answer) and print the verdict in one line.

    A stub that raises ``NotImplementedError`` gets "not attempted yet"; ``True`` only when every
    case agrees, and then ``cases()``'s return value says what was checked.
    """
    name = getattr(function, "__name__", repr(function))
    try:
        summary = cases()
    except NotImplementedError:
        print(f"{exercise}: not attempted yet. Replace `raise NotImplementedError` in `{name}` "
              "with your code, then run this cell again.")
        return False
    except Mismatch as err:
        print(f"{exercise}: not right yet. {err}")
        return False
    print(f"{exercise}: correct. {summary}")
    return True


def call(function: Callable, case: str, *args: Any, hint: str = "", **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``; an exception other than ``NotImplementedError`` becomes a
    :class:`Mismatch` that names the case (and adds ``hint``)."""
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # the learner's code: any error is an answer to report
        message = f"On {case} your function raised {type(err).__name__}: {err}"
        raise Mismatch(f"{message.rstrip('.')}." + (f" {hint}" if hint else "")) from None


def as_tensor(value: Any, case: str, dtype: torch.dtype = torch.float64) -> Tensor:
    """The learner's answer as a tensor of ``dtype`` (lists, numpy arrays and numbers accepted)."""
    try:  # Python floats straight to ``dtype``: through float32 they would lose digits
        return value.to(dtype) if isinstance(value, Tensor) else torch.as_tensor(value, dtype=dtype)
    except Exception as err:
        raise Mismatch(f"On {case} your function returned {type(value).__name__}, which is not "
                       f"a tensor of numbers ({err}).") from None


def describe(x: Tensor) -> str:
    """A short text of a tensor: the values if there are a few, else the shape."""
    if x.numel() <= 6:
        values = [round(v, 6) if isinstance(v, float) else v for v in x.flatten().tolist()]
        return str(values[0] if x.ndim == 0 else values)
    return f"a tensor of shape {tuple(x.shape)}"


def same(got: Tensor, expected: Tensor, atol: float = 1e-9, rtol: float = 1e-7) -> bool:
    """Same shape and close values (nan never matches)."""
    return (got.shape == expected.shape
            and bool(torch.isfinite(got).all() or not torch.isfinite(expected).all())
            and torch.allclose(got.to(expected.dtype), expected, atol=atol, rtol=rtol))


def expect_close(got: Any, expected: Tensor, case: str, hint: str = "", *,
                 atol: float = 1e-9, rtol: float = 1e-7) -> Tensor:
    """Raise :class:`Mismatch` unless ``got`` has ``expected``'s shape and values; the message
    shows the first entry that differs. Returns ``got`` as a tensor."""
    got = as_tensor(got, case, expected.dtype if expected.is_floating_point() else torch.float64)
    tail = f" {hint}" if hint else ""
    if got.shape != expected.shape:
        raise Mismatch(f"On {case} expected shape {tuple(expected.shape)}, got "
                       f"{tuple(got.shape)}.{tail}")
    if same(got, expected.to(got.dtype), atol, rtol):
        return got
    if not torch.isfinite(got).all():
        raise Mismatch(f"On {case} your answer has nan or inf entries, expected "
                       f"{describe(expected)}.{tail}")
    bad = ~torch.isclose(got, expected.to(got.dtype), atol=atol, rtol=rtol)
    index = tuple(int(i) for i in bad.nonzero()[0]) if got.ndim else ()
    where = f" at index {index}" if index else ""
    raise Mismatch(f"On {case} expected {expected[index].item():.6g}{where}, got "
                   f"{got[index].item():.6g}.{tail}")


def expect_equal(got: Any, expected: Any, case: str, hint: str = "") -> None:
    """Raise :class:`Mismatch` unless ``got == expected`` (ints, tuples, lists)."""
    if got != expected:
        raise Mismatch(f"On {case} expected {expected}, got {got}." + (f" {hint}" if hint else ""))
