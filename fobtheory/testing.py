"""Property-test your own meta-gradient estimator against closed forms.

Three lines::

    from hypothesis import given
    from fobtheory.testing import meta_tasks, assert_order

    @given(meta_tasks())
    def test_my_estimator_is_second_order(task):
        assert_order(my_estimator, task, expected=2, tol=0.15)

An estimator is any callable ``est(x, inner_grad, outer_grad, *, alpha, delta, inner_steps)``
returning an array like x; ``fobtheory.estimators.fob_maml`` with ``functools.partial``
is one. This module needs hypothesis (the ``test`` extra).
"""
from __future__ import annotations

from functools import partial

import numpy as np
from hypothesis import strategies as st

from .problems import MetaTask, logistic_tasks, quadratic_tasks
from .rates import RateFit, fit_rate, relative_error

DEFAULT_DELTAS = np.geomspace(1e-9, 1e-1, 33)


@st.composite
def quadratic_problems(draw, n_tasks: int = 1, dims=st.integers(1, 8)):
    """A random quadratic MetaProblem: dimension, conditioning, alpha*L and seed drawn."""
    return quadratic_tasks(
        n_tasks,
        draw(dims),
        alpha_L=draw(st.floats(0.05, 0.9)),
        condition=draw(st.floats(1.0, 100.0)),
        outer_condition=draw(st.floats(1.0, 100.0)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@st.composite
def logistic_problems(draw, n_tasks: int = 1, dims=st.integers(1, 8)):
    """A random logistic MetaProblem: dimension, sample size, alpha*L, feature scale, seed."""
    return logistic_tasks(
        n_tasks,
        draw(dims),
        n_samples=draw(st.integers(4, 30)),
        alpha_L=draw(st.floats(0.05, 0.9)),
        feature_scale=draw(st.floats(0.3, 3.0)),
        reg=draw(st.floats(0.0, 0.5)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def meta_tasks(families=("quadratic", "logistic"), dims=st.integers(1, 8)):
    """One random task of the named families."""
    makers = {"quadratic": quadratic_problems, "logistic": logistic_problems}
    unknown = set(families) - set(makers)
    if unknown:
        raise ValueError(f"families must be among {sorted(makers)}, got {sorted(unknown)}")
    return st.one_of([makers[f](dims=dims) for f in families]).map(lambda problem: problem[0])


def points(dim: int, scale: float = 2.0):
    """Points of ``R^dim`` with entries in ``[-scale, scale]`` (float64 numpy arrays)."""
    return st.lists(st.floats(-scale, scale), min_size=dim, max_size=dim).map(np.array)


def error_curve(estimator, task: MetaTask, x=None, *, deltas=DEFAULT_DELTAS, inner_steps: int = 1) -> np.ndarray:
    """Relative error of ``estimator`` against ``task.meta_grad`` at each delta."""
    x = np.full(task.dim, 0.5) if x is None else np.asarray(x, dtype=float)
    exact = task.meta_grad(x, inner_steps)
    run = partial(estimator, x, task.inner_grad, task.outer_grad, alpha=task.alpha, inner_steps=inner_steps)
    return np.array([relative_error(run(delta=float(d)), exact) for d in deltas])


def empirical_order(estimator, task: MetaTask, x=None, *, deltas=DEFAULT_DELTAS, inner_steps: int = 1,
                    **fit_options) -> RateFit:
    """The error rate of ``estimator`` in delta, fitted inside the truncation window."""
    errors = error_curve(estimator, task, x, deltas=deltas, inner_steps=inner_steps)
    return fit_rate(deltas, errors, **fit_options)


def assert_order(estimator, task: MetaTask, expected: float, *, tol: float = 0.15, x=None,
                 deltas=DEFAULT_DELTAS, inner_steps: int = 1, allow_exact: bool = True, **fit_options) -> RateFit:
    """Assert that ``estimator`` converges at rate ``delta^expected`` on ``task``.

    An estimator that is exact up to roundoff (no truncation window, as FO-B-MAML is on
    quadratic tasks) passes when ``allow_exact``: its error at the largest delta, where
    roundoff is smallest and truncation largest, must then be below ``1e-8``.
    """
    errors = error_curve(estimator, task, x, deltas=deltas, inner_steps=inner_steps)
    fit = fit_rate(deltas, errors, **fit_options)
    if not fit.ok:
        at_largest = float(errors[int(np.argmax(deltas))])
        if allow_exact and at_largest < 1e-8:
            return fit
        raise AssertionError(f"{fit.reason}; error {at_largest:.3g} at the largest delta")
    if not fit.covers(expected, tol):
        raise AssertionError(
            f"empirical order {fit.slope:.3f} (95% CI {fit.ci_low:.3f}..{fit.ci_high:.3f}, {fit.n_points} points "
            f"in delta {fit.window[0]:.2g}..{fit.window[1]:.2g}) is not {expected} +- {tol}"
        )
    return fit
