"""fobtheory.testing used the way its docstring tells a user to."""
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings

from fobtheory.estimators import fo_maml, fob_maml
from fobtheory.testing import assert_order, meta_tasks, points, relative_error


@settings(max_examples=10)
@given(meta_tasks(families=("logistic",)))
def test_user_can_property_test_their_estimator_in_three_lines(task):
    assert_order(partial(fob_maml, scheme="symmetric"), task, expected=2, tol=0.15)


def my_centered_estimator(x, inner_grad, outer_grad, *, alpha, delta, inner_steps=1):
    """What a user might write: one step, symmetric Hessian-vector product."""
    v = outer_grad(x - alpha * inner_grad(x))
    return v - alpha * (inner_grad(x + delta * v) - inner_grad(x - delta * v)) / (2 * delta)


@settings(max_examples=10)
@given(meta_tasks())
def test_a_hand_written_estimator_passes(task):
    assert_order(my_centered_estimator, task, expected=2, tol=0.15)


def test_a_biased_estimator_fails_the_rate_check():
    from fobtheory.problems import logistic_tasks

    task = logistic_tasks(1, 5, seed=3)[0]
    biased = lambda x, f, F, *, alpha, delta, inner_steps=1: fo_maml(x, f, F, alpha=alpha)  # noqa: E731
    with pytest.raises(AssertionError, match="no truncation window|empirical order"):
        assert_order(biased, task, expected=2)
    wrong_order = partial(fob_maml, scheme="forward")
    with pytest.raises(AssertionError, match=r"empirical order 1\.0.* is not 2"):
        assert_order(wrong_order, task, expected=2, tol=0.15)


@given(points(3))
def test_points_strategy_draws_bounded_vectors(x):
    assert x.shape == (3,) and np.all(np.abs(x) <= 2)


def test_relative_error_handles_a_zero_reference():
    assert relative_error([1.0, 0.0], [0.0, 0.0]) == 1.0
    with pytest.raises(ValueError, match="families must be among"):
        meta_tasks(families=("cubic",))
