"""Argument checks shared by every public constructor and command.

Each check returns the value as a plain Python type (so configs serialize and
numpy scalars such as ``np.float32(0.5)`` or ``np.int64(2)`` are accepted) or
raises a :class:`ValueError` in Keras' style, naming the argument and the value
received:

>>> check_number("beta", 0.7, minimum=0.0, exclusive_minimum=True)
0.7
>>> check_number("beta", float("inf"), minimum=0.0)
Traceback (most recent call last):
...
ValueError: `beta` must be a finite number >= 0. Received: beta=inf
>>> check_int("k", 2, minimum=1)
2
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import numpy as np

#: The largest float32 number: a parameter above it overflows in float32 math.
FLOAT32_MAX = 3.4028234663852886e38


def _received(name: str, value: Any) -> str:
    return f"Received: {name}={value!r}"


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    allow_none: bool = False,
    allow_inf: bool = False,
) -> float | None:
    """A real number (int, float or numpy scalar; not bool, not NaN) as ``float``.

    Infinite values and values beyond float32's range are refused unless
    ``allow_inf`` (then ``+inf`` passes as ``inf``). ``minimum``/``maximum`` are
    inclusive bounds (``exclusive_minimum`` makes the minimum strict).
    """
    if value is None and allow_none:
        return None
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum:g}")
    if maximum is not None:
        bounds.append(f"<= {maximum:g}")
    what = "a finite number" if not allow_inf else "a number"
    expected = f"`{name}` must be {what}" + (" " + " and ".join(bounds) if bounds else "")
    if allow_none:
        expected += " or None"
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ValueError(f"{expected}. {_received(name, value)}")
    number = float(value)
    if math.isnan(number) or (not allow_inf and (math.isinf(number) or abs(number) > FLOAT32_MAX)):
        raise ValueError(f"{expected}. {_received(name, value)}")
    too_small = minimum is not None and (number <= minimum if exclusive_minimum else number < minimum)
    if too_small or (maximum is not None and number > maximum):
        raise ValueError(f"{expected}. {_received(name, value)}")
    return number


def check_positive(name: str, value: Any, *, maximum: float | None = None, allow_none: bool = False) -> float | None:
    """A finite number ``> 0`` (and ``<= maximum``) as ``float``."""
    return check_number(name, value, minimum=0.0, exclusive_minimum=True, maximum=maximum, allow_none=allow_none)


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """An integer (Python or numpy; not bool, not float) within the bounds, as ``int``."""
    if value is None and allow_none:
        return None
    bounds = []
    if minimum is not None:
        bounds.append(f">= {minimum}")
    if maximum is not None:
        bounds.append(f"<= {maximum}")
    expected = "`{}` must be an int{}{}".format(
        name, " " + " and ".join(bounds) if bounds else "", " or None" if allow_none else ""
    )
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{expected}. {_received(name, value)}")
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{expected}. {_received(name, value)}")
    return number


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (numpy bools too) as ``bool``."""
    if not _is_bool(value):
        raise ValueError(f"`{name}` must be True or False. {_received(name, value)}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """One of ``choices``; the message lists them."""
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {listed}. {_received(name, value)}")
    return value


__all__ = ["FLOAT32_MAX", "check_bool", "check_choice", "check_int", "check_number", "check_positive"]
