"""Confidence intervals honest at a handful of seeds or tasks.

With n values (per-seed accuracy differences, per-task slopes, ...) the two-sided t interval
``mean +- t_(1 - a/2, n - 1) sd / sqrt(n)`` has the stated coverage for normal values at any
n >= 2, where a bootstrap over n = 3 values spans little more than their range.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def t_interval(values, level: float = 0.95) -> dict:
    """Mean of ``values`` and its two-sided t interval at ``level`` (n - 1 degrees of
    freedom): ``{"mean", "low", "high", "n"}``, ``low`` and ``high`` None with fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return dict(mean=mean, low=None, high=None, n=len(x))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return dict(mean=mean, low=mean - half, high=mean + half, n=len(x))
