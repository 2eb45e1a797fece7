"""FO-B-MAML, FO-MAML and Reptile against closed-form meta-gradients."""
from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fobtheory.estimators import FixedPointError, fo_maml, fob_maml, reptile
from fobtheory.problems import CosineTask, QuadraticTask, logistic_tasks, quadratic_tasks
from fobtheory.testing import assert_order, error_curve, quadratic_problems, relative_error

LOGISTIC = logistic_tasks(3, 10, seed=1)


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("J", [1, "solve"])
@pytest.mark.parametrize("scheme, order, tol", [("forward", 1, 0.1), ("symmetric", 2, 0.15), (4, 4, 0.3)])
def test_error_slope_on_logistic_tasks(scheme, order, tol, J, K):
    for task in LOGISTIC[:2]:
        est = partial(fob_maml, scheme=scheme, fixed_point_iters=J)
        fit = assert_order(est, task, order, tol=tol, inner_steps=K, allow_exact=False)
        assert fit.n_points >= 5


@pytest.mark.parametrize("p", [3, 5])
def test_centred_odd_stencils_beat_one_sided_ones_by_their_moment_ratio(p):
    """Same p perturbed solves (equal gradient calls), both of order p, and in the truncation
    regime the errors differ by the ratio of the stencils' moments M_(p+1) = sum_j w_j s_j^(p+1)
    (the path derivative cancels): 1/3 at p = 3, 1/10 at p = 5."""
    from fobtheory.symbolic import moment

    task = LOGISTIC[0]
    x = np.linspace(-1, 1, task.dim) / 3
    exact = task.meta_grad(x)
    ratio = float(abs(moment(p, p + 1) / moment(f"onesided{p}", p + 1)))
    delta, rel = {3: (2e-3, 0.05), 5: (1e-2, 0.1)}[p]  # next-order term and roundoff both small
    out = {}
    for scheme in (p, f"onesided{p}"):
        assert_order(partial(fob_maml, scheme=scheme), task, p, tol=0.25, allow_exact=False)
        est, info = fob_maml(x, task.inner_grad, task.outer_grad, alpha=task.alpha, delta=delta, scheme=scheme,
                             return_info=True)
        out[scheme] = (relative_error(est, exact), info.grad_calls)
    assert out[p][1] == out[f"onesided{p}"][1] == p + 2
    assert out[p][0] / out[f"onesided{p}"][0] == pytest.approx(ratio, rel=rel)


def test_complex_step_is_second_order_and_has_no_roundoff_floor():
    task = LOGISTIC[0]
    est = partial(fob_maml, scheme="complex")
    assert_order(est, task, 2, tol=0.1, allow_exact=False)
    errors = error_curve(est, task, deltas=[1e-9, 1e-12])
    assert errors.max() < 1e-14
    symmetric = error_curve(partial(fob_maml, scheme="symmetric"), task, deltas=np.geomspace(1e-9, 1e-1, 33))
    assert symmetric.min() > 10 * errors.max()


@given(quadratic_problems(), st.floats(1e-3, 1.0), st.sampled_from(["forward", "symmetric", 4, 3]),
       st.integers(1, 3), st.integers(0, 2**31))
def test_one_iteration_is_exact_on_quadratic_inner_losses(problem, delta, scheme, K, seed):
    """With J = 1 each step differences a linear gradient: exact for every delta."""
    task = problem[0]
    x = np.random.default_rng(seed).standard_normal(task.dim)
    est = fob_maml(x, task.inner_grad, task.outer_grad, alpha=task.alpha, delta=delta, scheme=scheme, inner_steps=K)
    exact = task.meta_grad(x, K)
    roundoff = 1e3 * np.finfo(float).eps * (np.linalg.norm(exact) + task.alpha * task.L * (np.linalg.norm(x - task.a) + 1) / delta)
    assert np.linalg.norm(est - exact) <= roundoff


def test_larger_J_is_not_exact_on_quadratics_forward_from_2_symmetric_from_3():
    """The solved y(t) is polynomial in t of degree J for quadratic f and F."""
    task = quadratic_tasks(1, 5, seed=4)[0]
    x = np.ones(5)
    exact = task.meta_grad(x)

    def err(scheme, J, delta=1e-2):
        return relative_error(fob_maml(x, task.inner_grad, task.outer_grad, alpha=task.alpha, delta=delta,
                                       scheme=scheme, fixed_point_iters=J), exact)

    assert err("forward", 1) < 1e-12 and err("symmetric", 2) < 1e-12
    assert err("forward", 2) > 1e-5 and err("symmetric", 3) > 1e-7
    assert err("forward", 2, 1e-3) == pytest.approx(err("forward", 2) / 10, rel=0.01)


def test_fo_maml_and_reptile_bias_is_irreducible_on_generic_tasks():
    for task in LOGISTIC:
        x = np.full(task.dim, 0.3)
        exact = task.meta_grad(x)
        for est in (fo_maml, reptile):
            assert relative_error(est(x, task.inner_grad, task.outer_grad, alpha=task.alpha), exact) > 1e-2
        best_fob = min(error_curve(partial(fob_maml, scheme="symmetric"), task, x, deltas=[1e-4, 1e-5]))
        assert best_fob < 1e-9


def test_fo_maml_bias_vanishes_linearly_as_alpha_goes_to_zero():
    base = logistic_tasks(1, 6, seed=5)[0]
    x = np.full(6, 0.2)
    alphas = np.array([1e-2, 1e-3, 1e-4])
    errors = []
    for a in alphas:
        task = type(base)(base.Z, base.y, base.Zq, base.yq, alpha=a, reg=base.reg)
        errors.append(relative_error(fo_maml(x, task.inner_grad, task.outer_grad, alpha=a), task.meta_grad(x)))
    slope = np.polyfit(np.log10(alphas), np.log10(errors), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.05)


def test_fo_maml_is_exact_and_reptile_bias_vanishes_when_the_inner_loss_is_flat():
    """f = 0: phi is the identity, so grad Phi = grad F; Reptile is O(alpha) away."""
    B = np.diag([1.0, 3.0])
    task = QuadraticTask(np.zeros((2, 2)), [0, 0], B, [1.0, -1.0], alpha=0.5)
    x = np.array([0.3, 0.7])
    exact = task.meta_grad(x)
    assert relative_error(fo_maml(x, task.inner_grad, task.outer_grad, alpha=0.5), exact) < 1e-15
    errs = [relative_error(reptile(x, task.inner_grad, task.outer_grad, alpha=a), exact) for a in (1e-2, 1e-3, 1e-4)]
    assert errs[0] > 1e-3
    assert errs[1] == pytest.approx(errs[0] / 10, rel=0.01) and errs[2] == pytest.approx(errs[0] / 100, rel=0.01)


ALL_CALLS = [
    ("forward", 1, 1), ("symmetric", 1, 1), ("symmetric", 3, 1), (4, 2, 1), ("complex", 2, 1),
    ("forward", 1, 3), ("symmetric", 2, "solve"), ("complex", 1, "solve"), (3, 1, 2),
]


@pytest.mark.parametrize("scheme, K, J", ALL_CALLS)
def test_numpy_and_torch_give_the_same_answer(scheme, K, J):
    task = LOGISTIC[2]
    x = np.linspace(-1, 1, task.dim)
    kw = dict(alpha=task.alpha, delta=1e-3, scheme=scheme, inner_steps=K, fixed_point_iters=J, normalize=True)
    g_np = fob_maml(x, task.inner_grad, task.outer_grad, **kw)
    g_t = fob_maml(torch.tensor(x), task.inner_grad, task.outer_grad, **kw)
    assert isinstance(g_np, np.ndarray) and isinstance(g_t, torch.Tensor) and g_t.dtype == torch.float64
    assert relative_error(g_t.numpy(), g_np) < 1e-12
    for est in (fo_maml, reptile):
        a, b = est(x, task.inner_grad, task.outer_grad, alpha=task.alpha, inner_steps=K), \
            est(torch.tensor(x), task.inner_grad, task.outer_grad, alpha=task.alpha, inner_steps=K)
        assert relative_error(b.numpy(), a) < 1e-12


def test_float32_tensors_stay_float32_and_any_shape_is_accepted():
    task = LOGISTIC[0]
    x = torch.zeros(task.dim, dtype=torch.float32)
    g = fob_maml(x, task.inner_grad, task.outer_grad, alpha=task.alpha, delta=1e-2, normalize=True)
    assert g.dtype == torch.float32
    assert relative_error(g.numpy(), task.meta_grad(np.zeros(task.dim))) < 1e-4
    # a matrix-shaped parameter with elementwise oracles
    X = np.arange(6.0).reshape(2, 3) / 10
    G = fob_maml(X, np.sin, lambda y: y - 1, alpha=0.5, delta=1e-4)
    exact = (1 - 0.5 * np.cos(X)) * (X - 0.5 * np.sin(X) - 1)
    np.testing.assert_allclose(G, exact, rtol=1e-7)


@pytest.mark.parametrize("scheme, J, K, calls", [
    ("forward", 1, 4, 2 * 4 + 1), ("symmetric", 1, 4, 3 * 4 + 1), (4, 1, 2, 5 * 2 + 1),
    ("complex", 1, 3, 2 * 3 + 1), ("forward", 3, 1, 2 + 2 * 2 + 1), ("symmetric", 2, 2, 3 * 2 + 1 + 2 * 2),
])
def test_gradient_call_counts(scheme, J, K, calls):
    task = LOGISTIC[0]
    _, info = fob_maml(np.zeros(task.dim), task.inner_grad, task.outer_grad, alpha=task.alpha, delta=1e-3,
                       scheme=scheme, inner_steps=K, fixed_point_iters=J, return_info=True)
    assert info.grad_calls == calls
    _, info = fo_maml(np.zeros(task.dim), task.inner_grad, task.outer_grad, alpha=task.alpha, inner_steps=K,
                      return_info=True)
    assert info.grad_calls == K + 1


def test_normalize_moves_the_parameters_by_delta():
    task = LOGISTIC[0]
    x = np.full(task.dim, 0.1)
    seen = []

    def inner_grad(u):
        seen.append(np.linalg.norm(u - x))
        return task.inner_grad(u)

    fob_maml(x, inner_grad, task.outer_grad, alpha=task.alpha, delta=0.01, scheme="symmetric", normalize=True)
    assert seen[0] == 0 and seen[1:] == pytest.approx([0.01, 0.01], rel=1e-12)


def test_solved_fixed_point_reaches_its_tolerance_and_reports_it():
    task = LOGISTIC[0]
    x = np.zeros(task.dim)
    _, info = fob_maml(x, task.inner_grad, task.outer_grad, alpha=task.alpha, delta=0.1, fixed_point_iters="solve",
                       fixed_point_tol=1e-13, return_info=True)
    assert len(info.fixed_point_iters) == 2 and min(info.fixed_point_iters) >= 3
    assert info.fixed_point_residual <= 1e-13


def test_a_diverging_fixed_point_raises_with_the_numbers():
    task = CosineTask(alpha=0.5)
    with pytest.raises(FixedPointError, match=r"at backward step 0 diverges \(delta=5,.*contraction ratio .* >= 1"
                                              r".*reduce delta"):
        fob_maml(np.array([3.0]), task.inner_grad, task.outer_grad, alpha=0.5, delta=5.0, fixed_point_iters=10)
    with pytest.raises(ValueError, match=r"\(delta=0.5\) did not reach fixed_point_tol.*max_fixed_point_iters=3"):
        fob_maml(np.array([3.0]), task.inner_grad, task.outer_grad, alpha=0.5, delta=0.5,
                 fixed_point_iters="solve", max_fixed_point_iters=3)


def kinked_task():
    """f(x) = sum max(x, 0)^2 / 2: grad f = relu(x), hess f = diag(x > 0), a kink at 0."""
    return (lambda x: np.maximum(x, 0)), (lambda y: y - 1.0)


def test_kink_guard_shrinks_the_step_when_the_one_sided_differences_disagree():
    inner, outer = kinked_task()
    x = np.array([2e-3, -3e-3, 0.5])
    alpha = 0.5
    xK = x - alpha * np.maximum(x, 0)
    exact = (1 - alpha * (x > 0)) * (xK - 1)
    kw = dict(alpha=alpha, delta=1e-2, scheme="symmetric", normalize=True)
    plain = fob_maml(x, inner, outer, **kw)
    guarded, info = fob_maml(x, inner, outer, kink_tol=0.1, return_info=True, **kw)
    assert relative_error(plain, exact) > 1e-3
    assert relative_error(guarded, exact) < 1e-12
    assert info.kink_retries >= 1 and info.kink_unresolved == 0
    _, quiet = fob_maml(np.array([0.5, 0.7, 0.9]), inner, outer, kink_tol=0.1, return_info=True, **kw)
    assert quiet.kink_retries == 0


good = dict(alpha=0.1, delta=1e-3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(delta=0.0), r"delta must be a finite number > 0, got 0"),
    (dict(delta=-1e-3), r"delta must be a finite number > 0"),
    (dict(delta=float("nan")), r"delta must be a finite number > 0"),
    (dict(delta=float("inf")), r"delta must be a finite number > 0"),
    (dict(alpha=0.0), r"alpha must be a finite number > 0"),
    (dict(inner_steps=0), r"inner_steps must be an integer >= 1, got 0"),
    (dict(inner_steps=1.5), r"inner_steps must be an integer >= 1"),
    (dict(fixed_point_iters=0), r"fixed_point_iters must be an integer >= 1, got 0"),
    (dict(fixed_point_iters="lots"), r"fixed_point_iters must be an integer >= 1"),
    (dict(scheme="central"), r"scheme must be 'forward', 'symmetric', 'complex', 'onesided<p>' \(p >= 1\) or an integer"),
    (dict(scheme=0), r"scheme order must be an integer >= 1"),
    (dict(kink_tol=-1.0), r"kink_tol must be a finite number > 0"),
])
def test_bad_parameters_are_refused_with_the_valid_range(kwargs, match):
    task = CosineTask()
    with pytest.raises(ValueError, match=match):
        fob_maml(np.array([1.0]), task.inner_grad, task.outer_grad, **{**good, **kwargs})


@pytest.mark.parametrize("est", [partial(fob_maml, delta=1e-3), fo_maml, reptile])
def test_bad_points_and_oracles_are_refused(est):
    task = CosineTask()
    with pytest.raises(ValueError, match=r"x must be finite"):
        est(np.array([np.nan]), task.inner_grad, task.outer_grad, alpha=0.1)
    with pytest.raises(ValueError, match=r"x must be a real floating"):
        est(np.array([1j]), task.inner_grad, task.outer_grad, alpha=0.1)
    with pytest.raises(ValueError, match=r"inner_grad returned non-finite values.*step 0"):
        est(np.array([1.0]), lambda x: x * np.nan, task.outer_grad, alpha=0.1)
    with pytest.raises(ValueError, match=r"outer_grad returned non-finite values"):
        est(np.array([1.0]), task.inner_grad, lambda y: y + np.inf, alpha=0.1)
    with pytest.raises(ValueError, match=r"inner_grad returned shape \(2,\) for a point of shape \(1,\)"):
        est(np.array([1.0]), lambda x: np.ones(2), task.outer_grad, alpha=0.1)
    with pytest.raises(ValueError, match=r"outer_grad must return the input's type \(Tensor\)"):
        est(torch.ones(1, dtype=torch.float64), task.inner_grad, lambda y: np.ones(1), alpha=0.1)


def test_complex_step_refuses_oracles_that_are_not_holomorphic():
    with pytest.raises(ValueError, match=r"scheme='complex' needs holomorphic oracles.*inner_grad returned a real"):
        fob_maml(np.array([1.0]), lambda x: np.real(np.sin(x)), lambda y: y, alpha=0.1, delta=1e-8, scheme="complex")


def test_integer_lists_are_accepted_as_float64():
    task = CosineTask()
    g = fob_maml([1, 2], np.sin, lambda y: y, alpha=0.5, delta=1e-4)
    assert isinstance(g, np.ndarray) and g.dtype == np.float64


def stacked(problem, name):
    """The vectorised oracle of a task batch: row r of the input belongs to task r mod B."""
    def oracle(points):
        return np.stack([getattr(problem[r % len(problem)], name)(p) for r, p in enumerate(points)])
    return oracle


@given(st.integers(0, 2**31), st.sampled_from([
    dict(scheme="symmetric"), dict(scheme="forward", normalize=True), dict(scheme=4, inner_steps=2, normalize=True),
    dict(scheme="complex", fixed_point_iters=2), dict(scheme="symmetric", fixed_point_iters="solve"),
    dict(scheme="symmetric", normalize=True, kink_tol=1e-9)]))
def test_a_batch_of_tasks_gives_each_task_its_own_estimate(seed, kw):
    problem = logistic_tasks(3, 4, seed=seed % 1000)
    X = np.random.default_rng(seed).standard_normal((3, 4))
    X[1] = 0.0  # a row whose gradient may be tiny must not disturb the others
    batched, info = fob_maml(X, stacked(problem, "inner_grad"), stacked(problem, "outer_grad"), alpha=problem.alpha,
                             delta=1e-3, batched=True, return_info=True, **kw)
    retries = unresolved = 0
    for i, task in enumerate(problem):
        one, one_info = fob_maml(X[i], task.inner_grad, task.outer_grad, alpha=task.alpha, delta=1e-3,
                                 return_info=True, **kw)
        np.testing.assert_allclose(batched[i], one, rtol=1e-12, atol=1e-15)
        retries, unresolved = retries + one_info.kink_retries, unresolved + one_info.kink_unresolved
    assert (info.kink_retries, info.kink_unresolved) == (retries, unresolved)
    if "kink_tol" in kw:  # the absurd tolerance fires
        assert retries > 0
    for est in (fo_maml, reptile):
        rows = est(X, stacked(problem, "inner_grad"), stacked(problem, "outer_grad"), alpha=problem.alpha, batched=True)
        for i, task in enumerate(problem):
            np.testing.assert_allclose(rows[i], est(X[i], task.inner_grad, task.outer_grad, alpha=task.alpha), rtol=1e-14)


def test_a_batch_evaluates_a_stencil_in_one_oracle_call():
    problem = logistic_tasks(2, 3, seed=0)
    _, info = fob_maml(np.zeros((2, 3)), stacked(problem, "inner_grad"), stacked(problem, "outer_grad"),
                       alpha=problem.alpha, delta=1e-3, scheme=4, batched=True, return_info=True)
    assert info.inner_grad_calls == 2  # the inner step, then the four stencil points together


def test_kink_guard_does_not_chase_roundoff():
    """In float32 at a tiny delta the one-sided differences disagree from roundoff alone;
    shrinking would make it worse, so the guard keeps the first step."""
    task = LOGISTIC[0]
    x = torch.linspace(-1, 1, task.dim, dtype=torch.float32)
    kw = dict(alpha=task.alpha, delta=1e-5, scheme="symmetric", normalize=True)
    plain = fob_maml(x, task.inner_grad, task.outer_grad, **kw)
    guarded, info = fob_maml(x, task.inner_grad, task.outer_grad, kink_tol=1e-3, return_info=True, **kw)
    assert info.kink_retries == 1 and info.kink_unresolved == 1  # tried once, saw it get worse
    assert torch.equal(plain, guarded)


@pytest.mark.parametrize("scheme, extra", [("forward", lambda K: K * (K + 1) // 2), ("symmetric", lambda K: K * (K - 1) // 2),
                                           ("complex", lambda K: K * (K - 1) // 2)])
def test_recomputing_the_iterates_gives_the_same_estimate_for_more_calls(scheme, extra):
    task = LOGISTIC[1]
    x = np.linspace(-1, 1, task.dim)
    kw = dict(alpha=task.alpha, delta=1e-4, scheme=scheme, inner_steps=4, return_info=True)
    stored, a = fob_maml(x, task.inner_grad, task.outer_grad, **kw)
    recomputed, b = fob_maml(x, task.inner_grad, task.outer_grad, store_iterates=False, **kw)
    np.testing.assert_array_equal(stored, recomputed)
    assert b.grad_calls == a.grad_calls + extra(4)


def test_unstacked_stencil_gives_the_same_estimate_one_point_per_call():
    problem = logistic_tasks(2, 3, seed=1)
    X = np.ones((2, 3))
    kw = dict(alpha=problem.alpha, delta=1e-3, scheme=4, batched=True, return_info=True)
    stacked_est, a = fob_maml(X, stacked(problem, "inner_grad"), stacked(problem, "outer_grad"), **kw)
    single_est, b = fob_maml(X, stacked(problem, "inner_grad"), stacked(problem, "outer_grad"), stack_stencil=False, **kw)
    np.testing.assert_array_equal(stacked_est, single_est)
    assert (a.inner_grad_calls, b.inner_grad_calls) == (2, 5)


def test_a_diverging_batch_raises_the_fixed_point_error():
    with pytest.raises(FixedPointError, match=r"contraction ratio .* >= 1"):
        fob_maml(np.ones((2, 1)), np.sin, lambda P: 10 * P, alpha=0.5, delta=1.0, fixed_point_iters=2, batched=True)


def test_the_fixed_point_error_names_the_delta_the_step_and_the_tasks_that_diverge():
    """Task b has outer curvature c_b: tasks 1 and 3 diverge with c = 10 (delta c > 1), and with c = 1.2
    contract too slowly to reach the tolerance in 25 iterations; tasks 0 and 2 (c = 0.1) converge."""
    curvature = np.array([[0.1], [10.0], [0.1], [10.0]])
    outer = lambda P: curvature * P  # noqa: E731
    for scheme in ("forward", "symmetric", "complex"):
        with pytest.raises(FixedPointError,
                           match=r"at backward step 1 for tasks 1, 3 of the batch diverges \(delta=0.5,"):
            fob_maml(np.ones((4, 1)), np.sin, outer, alpha=0.5, delta=0.5, scheme=scheme, inner_steps=2,
                     fixed_point_iters=5, batched=True)
    with pytest.raises(FixedPointError, match=r"at backward step 1 for tasks 1, 3 of the batch \(delta=0.5\) did not"):
        fob_maml(np.ones((4, 1)), np.sin, lambda P: np.array([[0.1], [1.2], [0.1], [1.2]]) * P, alpha=0.5,
                 delta=0.5, inner_steps=2, fixed_point_iters="solve", max_fixed_point_iters=25, batched=True)
