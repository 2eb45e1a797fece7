"""fobtheory.symbolic against the closed-form task, high-precision evaluation and the estimators."""
from itertools import product

import mpmath
import numpy as np
import pytest
import sympy as sp

from fobtheory import symbolic as S
from fobtheory.estimators import fob_maml
from fobtheory.problems import CosineTask, quadratic_tasks
from fobtheory.stencils import scheme_order, stencil_for
from fobtheory.testing import relative_error

POINTS = [(-2.3, 0.5, 0.4), (0.7, 0.3, -1.1), (1.9, 0.8, 2.0)]  # (x, alpha, target)


@pytest.mark.parametrize("K", [1, 2, 3])
def test_meta_gradient_equals_the_closed_form_task(K):
    grad = S.meta_grad_evaluator(K)
    for x, a, c in POINTS:
        task = CosineTask(alpha=a, target=c)
        assert grad(x, a, c) == pytest.approx(task.meta_grad(np.array([x]), K)[0], rel=1e-12, abs=1e-14)


def test_one_step_meta_gradient_is_the_textbook_formula():
    x, a, c = S.x, S.alpha, S.target
    assert sp.simplify(S.meta_grad(1) - (1 - a * sp.cos(x)) * (x - a * sp.sin(x) - c)) == 0


# identities are checked at these points, in high-precision arithmetic
AT = [{S.x: sp.Rational(7, 10), S.alpha: sp.Rational(1, 2), S.target: sp.Rational(-3, 10)},
      {S.x: sp.Rational(-21, 10), S.alpha: sp.Rational(4, 5), S.target: sp.Rational(13, 10)}]


def _same(a, b, at) -> bool:
    return abs(sp.N((a - b).subs(at), 40)) < 1e-30


def _point(at):
    """``(x, alpha, target)`` as mpmath numbers (at the working precision)."""
    return tuple(mpmath.mpf(at[k].p) / at[k].q for k in (S.x, S.alpha, S.target))


def _mp(expr, at):
    """``expr`` evaluated at ``at`` in mpmath."""
    return sp.lambdify((S.x, S.alpha, S.target), expr, "mpmath")(*_point(at))


def _phi(a):
    return lambda z: z - a * mpmath.sin(z)


@pytest.mark.parametrize("at", AT)
@pytest.mark.parametrize("scheme", ["forward", "symmetric", 4, "complex"])
def test_error_coefficients_match_the_estimator_in_high_precision(scheme, at):
    """Independent route for J = 1: the estimator's own formula at h = 1e-30 in 300-digit
    arithmetic; peeling off e_1 h, e_2 h^2, ... leaves each next coefficient."""
    with mpmath.workdps(300):
        x, a, c = _point(at)
        phi = _phi(a)
        v = phi(x) - c
        y = lambda t: phi(x - t * v)  # noqa: E731  (one fixed-point iteration)
        h = mpmath.mpf("1e-30")
        if scheme == "complex":
            estimate = -mpmath.im(y(1j * h)) / h
        else:
            stencil = stencil_for(scheme)
            estimate = -sum(mpmath.mpf(w.numerator) / w.denominator * y(s * h) for s, w in
                            zip(stencil.offsets, stencil.weights)) / h
        residual = estimate - _mp(S.meta_grad(1), at)
        for k, e_k in enumerate(S.error_coefficients(scheme, 1, order=scheme_order(scheme) + 2)[1:], start=1):
            e_k = _mp(e_k, at)
            assert abs(residual / h**k - e_k) < mpmath.mpf("1e-25"), k
            residual -= e_k * h**k


@pytest.mark.parametrize("at", AT)
def test_solved_path_matches_the_fixed_point_in_high_precision(at):
    """y*(t) from iterating u = x - t F'(phi(u)) to 100 digits at t = 1e-20 against the Taylor
    polynomial of ``path_derivatives("solve")``: the remainder is O(t^4)."""
    with mpmath.workdps(100):
        x, a, c = _point(at)
        phi = _phi(a)
        t = mpmath.mpf("1e-20")
        u = x
        for _ in range(8):
            u = x - t * (phi(u) - c)
        taylor = sum(_mp(d, at) * t**m / mpmath.factorial(m) for m, d in enumerate(S.path_derivatives("solve", 3)))
        assert abs(phi(u) - taylor) < mpmath.mpf("1e-75")


def test_iterations_agree_with_the_solve_up_to_their_order():
    """u_J - u* = O(t^(J+1)): y_J has the solved derivatives up to order J, not the next one;
    every path has -y'(0) = grad Phi."""
    solved = S.path_derivatives("solve", 3)
    for J, at in product((1, 2), AT):
        path = S.path_derivatives(J, 3)
        assert all(_same(path[m], solved[m], at) for m in range(J + 1))
        assert not _same(path[J + 1], solved[J + 1], at)
        assert _same(path[1], -S.meta_grad(1), at)


@pytest.mark.parametrize("scheme, delta", [("forward", 1e-5), ("symmetric", 1e-3), (4, 1e-2), ("complex", 1e-3)])
@pytest.mark.parametrize("J", [1, 2, "solve"])
def test_measured_error_over_delta_p_matches_the_leading_constant(scheme, delta, J):
    """(estimate - grad Phi) / delta^p at a small delta: within 2% of c_p, sign included."""
    p = scheme_order(scheme)
    constant = S.constant_evaluator(scheme, J)
    for x, a, c in POINTS:
        task = CosineTask(alpha=a, target=c)
        X = np.array([x])
        est = fob_maml(X, task.inner_grad, task.outer_grad, alpha=a, delta=delta, scheme=scheme, fixed_point_iters=J)
        measured = (est[0] - task.meta_grad(X)[0]) / delta**p
        expected = constant(x, a, c)
        assert np.sign(measured) == np.sign(expected)
        assert measured == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("scheme, degree", [("forward", 1), ("symmetric", 2), ("complex", 2), (4, 4)])
def test_exact_degree_predicts_exactness_on_quadratic_tasks(scheme, degree):
    """On a quadratic task y_J(t) has degree J: the estimator is exact iff J <= exact_degree."""
    assert S.exact_degree(scheme) == degree
    task = quadratic_tasks(1, 4, seed=3)[0]
    x = np.linspace(-1, 1, 4)

    def error(J):
        est = fob_maml(x, task.inner_grad, task.outer_grad, alpha=task.alpha, delta=0.05, scheme=scheme,
                       fixed_point_iters=J)
        return relative_error(est, task.meta_grad(x))

    assert error(degree) < 1e-12 and error(degree + 1) > 1e-9


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="fixed_point_iters must be an integer >= 1 or 'solve'"):
        S.path_derivatives(0, 2)
    with pytest.raises(ValueError, match="inner_steps must be an integer >= 1"):
        S.meta_grad(0)
    with pytest.raises(ValueError, match="scheme must be"):
        S.leading_constant("central")
