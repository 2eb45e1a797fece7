"""Argument checks shared by every module: each error names the parameter and its range."""
from __future__ import annotations

import math

import numpy as np


def positive(name: str, value) -> float:
    """``value`` as a float, refusing anything but a finite number > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def integer(name: str, value, low: int = 1) -> int:
    """``value`` as an int, refusing booleans, non-integers and values below ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)
