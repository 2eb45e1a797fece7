"""Closed-form meta-derivatives against torch autograd of independently written losses."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fobtheory.problems import (CosineTask, LogisticTask, MetaProblem, QuadraticTask, logistic_tasks,
                                quadratic_tasks, relu_tasks)
from fobtheory.testing import logistic_problems, quadratic_problems



def torch_losses(task):
    """f and F written again in torch (logaddexp, cos, matrix forms), independent of the oracles.
    (torch's softplus is linear above 20: not exact enough for a 1e-12 comparison.)"""
    T = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    if isinstance(task, QuadraticTask):
        A, a, B, b = T(task.A), T(task.a), T(task.B), T(task.b)
        return (lambda x: 0.5 * (x - a) @ A @ (x - a)), (lambda y: 0.5 * (y - b) @ B @ (y - b))
    if isinstance(task, LogisticTask):
        Z, y, Zq, yq = T(task.Z), T(task.y), T(task.Zq), T(task.yq)

        def loss(Z, y, reg):
            return lambda w: torch.logaddexp(torch.zeros(()), -y * (Z @ w)).mean() + 0.5 * reg * w @ w

        return loss(Z, y, task.reg), loss(Zq, yq, task.query_reg)
    if isinstance(task, CosineTask):
        return (lambda x: -torch.cos(x).sum()), (lambda y: 0.5 * ((y - task.target) ** 2).sum())
    raise TypeError(task)


def autograd_meta(task, x, K):
    f, F = torch_losses(task)

    def Phi(x):
        for _ in range(K):
            (g,) = torch.autograd.grad(f(x), x, create_graph=True)
            x = x - task.alpha * g
        return F(x)

    x = torch.tensor(x, requires_grad=True)
    (grad,) = torch.autograd.grad(Phi(x), x)
    hess = torch.autograd.functional.hessian(Phi, x.detach())
    return Phi(x).item(), grad.numpy(), hess.numpy()


def rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


any_problem = st.one_of(quadratic_problems(), logistic_problems())


@given(any_problem, st.integers(1, 4), st.integers(0, 2**31))
def test_meta_grad_and_hessian_match_autograd(problem, K, seed):
    task = problem[0]
    x = np.random.default_rng(seed).standard_normal(task.dim)
    loss, grad, hess = autograd_meta(task, x, K)
    assert math.isclose(task.meta_loss(x, K), loss, rel_tol=1e-12, abs_tol=1e-300)
    assert rel(task.meta_grad(x, K), grad) < 1e-10
    assert rel(task.meta_hessian(x, K), hess) < 1e-10


@given(st.floats(0.05, 0.95), st.floats(-30, 30), st.floats(-3, 3), st.integers(1, 4))
def test_cosine_task_matches_autograd(alpha, x, target, K):
    task = CosineTask(alpha=alpha, target=target)
    loss, grad, hess = autograd_meta(task, np.array([x]), K)
    assert math.isclose(task.meta_loss([x], K), loss, rel_tol=1e-12, abs_tol=1e-14)
    assert rel(task.meta_grad([x], K), grad) < 1e-10 or abs(grad[0]) < 1e-12
    assert rel(task.meta_hessian([x], K), hess) < 1e-10


def test_cosine_closed_forms_of_the_docstring():
    a, x, t = 0.5, 7.3, 0.4
    task = CosineTask(alpha=a, target=t)
    r = x - a * math.sin(x) - t
    assert task.meta_grad([x])[0] == pytest.approx((1 - a * math.cos(x)) * r, rel=1e-14)
    assert task.meta_hessian([x])[0, 0] == pytest.approx((1 - a * math.cos(x)) ** 2 + a * math.sin(x) * r, rel=1e-14)
    assert task.smoothness_constants() == pytest.approx(((1 + a) ** 2, a / (1 - a)))


def test_quadratic_closed_form_is_the_matrix_power(rng):
    task = quadratic_tasks(1, 6, seed=3)[0]
    x = rng.standard_normal(6)
    M3 = np.linalg.matrix_power(np.eye(6) - task.alpha * task.A, 3)
    xK = task.a + M3 @ (x - task.a)
    np.testing.assert_allclose(task.adapt(x, 3), xK, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(task.meta_grad(x, 3), M3 @ task.B @ (xK - task.b), rtol=1e-12)
    np.testing.assert_allclose(task.meta_hessian(x, 3), M3 @ task.B @ M3, rtol=1e-12)
    assert task.smoothness_constants()[1] == 0


def test_generators_are_seeded_and_respect_the_requested_spectrum():
    p1, p2, p3 = quadratic_tasks(3, 5, seed=7), quadratic_tasks(3, 5, seed=7), quadratic_tasks(3, 5, seed=8)
    assert np.array_equal(p1[2].A, p2[2].A) and not np.array_equal(p1[2].A, p3[2].A)
    eig = np.linalg.eigvalsh(quadratic_tasks(1, 5, L=2.0, condition=100.0)[0].A)
    np.testing.assert_allclose(eig, np.geomspace(0.02, 2.0, 5), rtol=1e-10)
    assert quadratic_tasks(1, 5, L=2.0, alpha_L=0.3).alpha == pytest.approx(0.15)
    q = logistic_tasks(4, 6, seed=1)
    assert max(t.alpha * t.L for t in q) == pytest.approx(0.5)
    assert np.array_equal(q[3].Z, logistic_tasks(4, 6, seed=1)[3].Z)


def test_logistic_constants_bound_the_derivatives(rng):
    task = logistic_tasks(1, 5, n_samples=12, seed=2)[0]
    for _ in range(20):
        x, v = 3 * rng.standard_normal(5), rng.standard_normal(5)
        assert np.linalg.norm(task.inner_hess(x), 2) <= task.L * (1 + 1e-12)
        assert np.linalg.norm(task.inner_third(x, v), 2) <= task.rho * np.linalg.norm(v) * (1 + 1e-12)
        assert np.linalg.norm(task.outer_hess(x), 2) <= task.L_F * (1 + 1e-12)


def test_meta_problem_is_a_sequence_of_tasks_with_mean_derivatives(rng):
    problem = logistic_tasks(3, 4, seed=0)
    x = rng.standard_normal(4)
    assert len(problem) == 3 and list(problem)[1] is problem[1]
    np.testing.assert_allclose(problem.meta_grad(x, 2), sum(t.meta_grad(x, 2) for t in problem) / 3, rtol=1e-14)
    c = problem.constants()
    assert c["L1"] == pytest.approx(problem.alpha * c["rho"] / (1 - problem.alpha * c["L"]))


def test_oracles_accept_torch_and_complex_input(rng):
    for task in (quadratic_tasks(1, 4)[0], logistic_tasks(1, 4)[0], CosineTask()):
        x = rng.standard_normal(task.dim)
        g = task.inner_grad(x)
        np.testing.assert_allclose(task.inner_grad(torch.tensor(x)).numpy(), g, rtol=1e-14)
        np.testing.assert_allclose(task.outer_grad(torch.tensor(x)).numpy(), task.outer_grad(x), rtol=1e-14)
        # holomorphic: the complex step recovers the Hessian-vector product
        v, h = rng.standard_normal(task.dim), 1e-20
        hv = np.imag(task.inner_grad(x + 1j * h * v)) / h
        np.testing.assert_allclose(hv, task.inner_hess(x) @ v, rtol=1e-12, atol=1e-14)
        hvt = torch.imag(task.inner_grad(torch.tensor(x + 1j * h * v))).numpy() / h
        np.testing.assert_allclose(hvt, hv, rtol=1e-12, atol=1e-14)


def test_logistic_sigmoid_is_stable_far_out():
    task = LogisticTask([[1.0]], [1.0], [[1.0]], [1.0], alpha=0.1, reg=0.0)
    for w in (-800.0, 800.0):
        g = task.inner_grad(np.array([w]))
        assert np.isfinite(g).all()
    assert task.inner_grad(np.array([-800.0]))[0] == pytest.approx(-1.0)


@pytest.mark.parametrize("make, match", [
    (lambda: quadratic_tasks(2, 3, alpha=1.5), r"task 0: alpha\*L must be < 1"),
    (lambda: logistic_tasks(2, 3, alpha=100.0), r"alpha\*L must be < 1"),
    (lambda: CosineTask(alpha=1.0), r"alpha\*L must be < 1.*alpha=1.*L=1"),
    (lambda: CosineTask(alpha=-0.1), r"alpha must be a finite number > 0"),
    (lambda: quadratic_tasks(0, 3), r"n_tasks must be an integer >= 1"),
    (lambda: quadratic_tasks(2, 3, condition=0.5), r"condition must be >= 1"),
    (lambda: quadratic_tasks(2, 3, alpha_L=1.0), r"alpha_L must be in \(0, 1\)"),
    (lambda: QuadraticTask(np.eye(2), [0, 0, 0], np.eye(2), [0, 0], alpha=0.1), r"x must have shape \(2,\)"),
    (lambda: QuadraticTask([[1, 2], [0, 1]], [0, 0], np.eye(2), [0, 0], alpha=0.1), r"A must be symmetric"),
    (lambda: LogisticTask([[1.0]], [0.5], [[1.0]], [1.0], alpha=0.1), r"support labels must be -1 or \+1"),
    (lambda: MetaProblem([]), r"at least one task"),
    (lambda: CosineTask().meta_grad([0.0], inner_steps=0), r"inner_steps must be an integer >= 1"),
    (lambda: CosineTask().meta_grad([np.nan]), r"x must be finite"),
])
def test_bad_problem_input_is_refused_with_a_clear_message(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _mixed():
    q, lg = quadratic_tasks(1, 2, alpha=0.1)[0], logistic_tasks(1, 2, alpha=0.1)[0]
    return MetaProblem([q, lg])


@pytest.mark.parametrize("make", [
    lambda: quadratic_tasks(3, 4, seed=1), lambda: logistic_tasks(3, 4, seed=1),
    lambda: MetaProblem([CosineTask(target=0.3), CosineTask(target=-1.0)]), _mixed,
    lambda: MetaProblem([*logistic_tasks(1, 2, n_samples=5, alpha=0.1), *logistic_tasks(1, 2, n_samples=7, alpha=0.1)]),
], ids=["quadratic", "logistic", "cosine", "mixed classes", "unequal sample counts"])
def test_stacked_oracles_equal_the_task_oracles_row_by_row(make, rng):
    problem = make()
    inner, outer = problem.stacked_oracles()
    B = len(problem)
    real = rng.standard_normal((2 * B, problem.dim))
    for points in (real, real + 1j * rng.standard_normal(real.shape)):  # holomorphic, like the tasks'
        for stacked, name in ((inner, "inner_grad"), (outer, "outer_grad")):
            expected = np.stack([getattr(problem[r % B], name)(p) for r, p in enumerate(points)])
            np.testing.assert_allclose(stacked(points), expected, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(stacked(torch.tensor(points)).numpy(), expected, rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# the piecewise-smooth ReLU regression family


def _relu_torch_loss(task, w, support=True):
    """The task's loss written with torch.relu, for autograd."""
    Z = torch.as_tensor(task.Z if support else task.Zq)
    t = torch.as_tensor(task.t if support else task.tq)
    r = torch.relu(Z @ w) - t
    return torch.mean(torch.log(torch.cosh(r))) + 0.5 * task.reg * w @ w


def test_relu_task_derivatives_match_autograd_off_the_kinks():
    from fobtheory.problems import relu_tasks

    for task in relu_tasks(3, 6, seed=1):
        x = np.random.default_rng(2).standard_normal(6)
        assert task.kink_distances(x).min() > 1e-6
        w = torch.tensor(x, requires_grad=True)
        g = torch.autograd.grad(_relu_torch_loss(task, w), w, create_graph=True)[0]
        H = torch.autograd.functional.hessian(lambda u: _relu_torch_loss(task, u), torch.tensor(x))
        v = np.random.default_rng(3).standard_normal(6)
        D3 = torch.autograd.functional.jacobian(
            lambda u: torch.autograd.functional.hessian(lambda q: _relu_torch_loss(task, q), u, create_graph=True)
            @ torch.tensor(v), torch.tensor(x))
        np.testing.assert_allclose(task.inner_grad(x), g.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(task.inner_hess(x), H.numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(task.inner_third(x, v), D3.numpy(), rtol=1e-9, atol=1e-12)
        assert abs(task.inner_loss(x) - float(_relu_torch_loss(task, torch.tensor(x)))) < 1e-14


def test_relu_task_anchored_oracle_is_the_gradient_of_the_anchor_piece():
    from fobtheory.problems import relu_tasks

    task = relu_tasks(1, 5, seed=4)[0]
    x = task.next_to_kink(np.random.default_rng(5).standard_normal(5), gap=1e-9)
    assert task.kink_distances(x).min() == pytest.approx(1e-9, rel=1e-3)
    j = int(np.argmin(task.kink_distances(x)))
    across = x - 1e-3 * np.sign(task.Z[j] @ x) * task.Z[j]  # crosses kink j
    jump = task.inner_grad(across) - task.inner_grad(across, anchor=x)
    expected = -np.tanh(-task.t[j]) * task.Z[j] / len(task.t) * np.sign(task.Z[j] @ x)
    np.testing.assert_allclose(jump, expected, atol=1e-3 * np.abs(expected).max())
    np.testing.assert_array_equal(task.inner_grad(x, anchor=x), task.inner_grad(x))


def test_relu_family_stacked_oracles_pass_anchors_to_every_task():
    from fobtheory.problems import relu_tasks

    problem = relu_tasks(3, 4, seed=6)
    inner, _ = problem.stacked_oracles()
    rng = np.random.default_rng(7)
    A, P = rng.standard_normal((3, 4)), rng.standard_normal((6, 4))
    rows = inner(P, anchor=A)
    for i in range(6):
        np.testing.assert_allclose(rows[i], problem[i % 3].inner_grad(P[i], anchor=A[i % 3]), rtol=1e-13)


def test_frozen_differences_converge_next_to_a_kink_where_plain_ones_do_not():
    from fobtheory.estimators import fob_maml
    from fobtheory.problems import relu_tasks
    from fobtheory.rates import fit_rate

    task = relu_tasks(1, 8, seed=8)[0]
    x = task.next_to_kink(np.random.default_rng(9).standard_normal(8) / 3, gap=1e-13)
    exact = task.meta_grad(x)
    deltas = np.geomspace(1e-5, 1e-1, 9)
    plain_oracle = lambda w: task.inner_grad(w)  # noqa: E731 (no anchor parameter: plain differences)
    err = lambda inner, d: np.linalg.norm(  # noqa: E731
        fob_maml(x, inner, task.outer_grad, alpha=task.alpha, delta=d) - exact) / np.linalg.norm(exact)
    frozen = [err(task.inner_grad, d) for d in deltas]
    plain = [err(plain_oracle, d) for d in deltas]
    assert fit_rate(deltas, frozen).covers(2, 0.1)
    assert min(plain) > 1e-2 and plain[0] > plain[-1]  # no convergence: the jump / delta grows


@given(any_problem)
def test_a_problem_prints_the_call_that_rebuilds_it(problem):
    """repr names the family, dimension, seed and every argument, and evaluating it gives the same tasks."""
    text = repr(problem)
    assert text.startswith(("quadratic_tasks(", "logistic_tasks(")) and f"dim={problem.dim}," in text
    assert "seed=" in text
    import fobtheory.problems as problems

    again = eval(text, vars(problems))  # the repr is the factory call
    x = np.linspace(-1, 1, problem.dim)
    for i, task in enumerate(problem):
        assert repr(task) == f"{text}[{i}]"
        np.testing.assert_array_equal(eval(repr(task), vars(problems)).meta_grad(x), task.meta_grad(x))
    np.testing.assert_array_equal(again.meta_grad(x), problem.meta_grad(x))


def test_a_task_built_by_hand_prints_its_class_dimension_and_alpha():
    assert repr(CosineTask(alpha=0.25)) == "<CosineTask dim=1 alpha=0.25>"
    assert repr(MetaProblem([CosineTask(), CosineTask()])) == "<MetaProblem of 2 CosineTask tasks, dim=1 alpha=0.5>"


@pytest.mark.parametrize("method", ["inner_loss", "outer_loss", "inner_grad", "outer_grad", "inner_hess",
                                    "outer_hess", "inner_third", "inner_hvp", "kink_distances"])
@pytest.mark.parametrize("make", [lambda: quadratic_tasks(1, 3, seed=4), lambda: logistic_tasks(1, 3, seed=4),
                                  lambda: relu_tasks(1, 3, seed=4)])
def test_a_point_of_the_wrong_dimension_is_one_clear_value_error(method, make):
    task = make()[0]
    if not hasattr(task, method):
        pytest.skip(f"{type(task).__name__} has no {method}")
    name = "y" if method.startswith("outer") else "x"
    extra = (np.ones(3),) if method in ("inner_third", "inner_hvp") else ()
    for wrong in (np.ones(2), np.ones(4), torch.ones(2, dtype=torch.float64), [1.0, 2.0]):
        with pytest.raises(ValueError, match=rf"^{name} must have shape \(3,\) in {method} of "
                                             rf"\w+_tasks\(n_tasks=1, dim=3, .*seed=4\)\[0\], got shape \((2|4),\)$"):
            getattr(task, method)(wrong, *extra)
    getattr(task, method)(np.ones(3), *extra)  # the right shape passes


def test_a_meta_quantity_at_a_point_of_the_wrong_dimension_names_x():
    problem = quadratic_tasks(2, 4)
    for method in ("meta_loss", "meta_grad", "meta_hessian"):
        with pytest.raises(ValueError, match=r"^x must have shape \(4,\), got \(3,\)$"):
            getattr(problem, method)(np.ones(3))
