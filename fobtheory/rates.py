"""Empirical convergence rates: log-log slopes inside the truncation window, with intervals.

A finite-difference error against the step ``delta`` has two regimes:

    error(delta) ~ C delta^p  +  R / delta
                  truncation     roundoff (R ~ eps_mach * scale)

The *truncation window* is the contiguous range of deltas where the error is at least
``floor_factor`` times the roundoff estimate ``max(R / delta, eps_mach)`` and below
``max_error`` (beyond which the asymptotic regime has not started). ``R`` is estimated from
the points left of the error minimum, where roundoff dominates. Slopes are least squares in
log-log on the geometric mean over tasks, with a bootstrap interval over tasks.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

EPS64 = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class RateFit:
    """A fitted power law ``error ~ C x^slope`` (or the reason there is none)."""

    slope: float
    ci_low: float
    ci_high: float
    constant: float  # C
    window: tuple[float, float] | None  # (x_min, x_max) of the fitted points
    n_points: int
    roundoff: float  # estimated R in R / x
    reason: str = ""  # why no window was found; "" when the fit exists

    @property
    def ok(self) -> bool:
        return self.window is not None

    def covers(self, expected: float, tol: float) -> bool:
        """True when the fit exists and ``|slope - expected| <= tol``."""
        return self.ok and abs(self.slope - expected) <= tol

    def as_dict(self) -> dict:
        return asdict(self)


def fit_slope(x, y) -> tuple[float, float]:
    """Least-squares ``(slope, intercept)`` of ``log10 y`` against ``log10 x``.

    Needs at least 4 points, all positive and finite: fewer points give a slope that
    says nothing.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of one length, got {x.shape} and {y.shape}")
    if len(x) < 4:
        raise ValueError(f"a slope needs at least 4 points, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all() and (x > 0).all() and (y > 0).all()):
        raise ValueError("x and y must be positive and finite for a log-log fit")
    slope, intercept = np.polyfit(np.log10(x), np.log10(y), 1)
    return float(slope), float(intercept)


def _slopes(lx: np.ndarray, LY: np.ndarray) -> np.ndarray:
    """Least-squares slopes of each row of ``LY`` against ``lx`` (the bootstrap, vectorised)."""
    c = lx - lx.mean()
    return LY @ c / (c @ c)


def relative_error(estimate, exact) -> float:
    """``|estimate - exact| / |exact|`` (absolute error when exact is zero)."""
    estimate, exact = np.asarray(estimate, dtype=float), np.asarray(exact, dtype=float)
    scale = np.linalg.norm(exact)
    return float(np.linalg.norm(estimate - exact) / (scale if scale > 0 else 1.0))


RESOLUTION = EPS64 / 2  # unit roundoff: the smallest relative error float64 reports


def geometric_mean(errors, axis: int = 0) -> np.ndarray:
    """Geometric mean of relative errors; an exact zero (estimate equal to the truth to the
    last bit) counts as the float64 resolution, not as -infinity in log space."""
    return np.exp(np.mean(np.log(np.maximum(np.asarray(errors, dtype=float), RESOLUTION)), axis=axis))


def _curve(errors) -> np.ndarray:
    """Geometric mean over tasks (rows) of one curve or a (tasks, points) array."""
    return geometric_mean(np.atleast_2d(errors), axis=0)


def roundoff_estimate(deltas, errors) -> float:
    """``R`` of the roundoff model ``R / delta``: the median of ``error * delta`` over the
    points left of the error minimum (0 when the error decreases all the way down)."""
    d, e = np.asarray(deltas, dtype=float), _curve(errors)
    order = np.argsort(d)
    d, e = d[order], e[order]
    left = slice(0, int(np.argmin(e)))
    return float(np.median(e[left] * d[left])) if left.stop > 0 else 0.0


def truncation_window(deltas, errors, *, floor_factor: float = 100.0, max_error: float = 1e-2,
                      eps: float = EPS64) -> np.ndarray:
    """Boolean mask (in the order of ``deltas``) of the longest contiguous run of deltas
    whose error lies in ``[floor_factor * max(R / delta, eps), max_error]``."""
    d = np.asarray(deltas, dtype=float)
    e = _curve(errors)
    R = roundoff_estimate(d, errors)
    good = (e >= floor_factor * np.maximum(R / d, eps)) & (e <= max_error)
    order = np.argsort(d)
    best, run = (0, 0), None
    for rank, idx in enumerate(order):
        if good[idx]:
            run = (run[0], rank + 1) if run else (rank, rank + 1)
            if run[1] - run[0] > best[1] - best[0]:
                best = run
        else:
            run = None
    mask = np.zeros(len(d), dtype=bool)
    mask[order[best[0]:best[1]]] = True
    return mask


def fit_power_law(x, errors, *, mask=None, n_boot: int = 1000, seed: int = 0, roundoff: float = 0.0) -> RateFit:
    """Slope of the geometric-mean curve over ``mask`` with a 95% interval.

    ``errors`` is one curve or a (tasks, points) array; the interval is a bootstrap over
    tasks, or +-1.96 standard errors of the regression for a single curve.
    """
    x = np.asarray(x, dtype=float)
    E = np.atleast_2d(np.asarray(errors, dtype=float))
    if E.shape[1] != len(x):
        raise ValueError(f"errors must have {len(x)} columns (one per x), got shape {E.shape}")
    mask = np.ones(len(x), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    xs = x[mask]
    slope, intercept = fit_slope(xs, _curve(E)[mask])
    if E.shape[0] > 1:
        rng = np.random.default_rng(seed)
        resampled = E[rng.integers(0, E.shape[0], (n_boot, E.shape[0]))][..., mask]  # (boot, task, point)
        boots = _slopes(np.log10(xs), np.log10(geometric_mean(resampled, axis=1)))
        low, high = np.percentile(boots, [2.5, 97.5])
    else:
        lx, ly = np.log10(xs), np.log10(_curve(E)[mask])
        resid = ly - (slope * lx + intercept)
        se = math.sqrt(resid @ resid / (len(xs) - 2) / np.sum((lx - lx.mean()) ** 2))
        low, high = slope - 1.96 * se, slope + 1.96 * se
    return RateFit(slope, float(low), float(high), 10**intercept, (float(xs.min()), float(xs.max())),
                   int(mask.sum()), roundoff)


def fit_rate(deltas, errors, *, min_points: int = 4, floor_factor: float = 100.0, max_error: float = 1e-2,
             eps: float = EPS64, n_boot: int = 1000, seed: int = 0) -> RateFit:
    """Truncation-error rate: find the window, then fit; a window with fewer than
    ``min_points`` points (e.g. an estimator exact to roundoff) gives ``ok == False``."""
    mask = truncation_window(deltas, errors, floor_factor=floor_factor, max_error=max_error, eps=eps)
    R = roundoff_estimate(deltas, errors)
    if mask.sum() < max(min_points, 4):
        return RateFit(math.nan, math.nan, math.nan, math.nan, None, int(mask.sum()), R,
                       f"no truncation window: {int(mask.sum())} point(s) lie between {floor_factor:g}x the "
                       f"roundoff estimate and max_error={max_error:g} (need {max(min_points, 4)})")
    return fit_power_law(deltas, errors, mask=mask, n_boot=n_boot, seed=seed, roundoff=R)
