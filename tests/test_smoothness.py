"""(L0, L1) probe: eigsh against dense norms, autograd against closed forms, the envelope
LP against brute force, and the quick experiment's schema."""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fobtheory.experiments import execute
from fobtheory.experiments import smoothness as experiment
from fobtheory.problems import CosineTask, logistic_tasks, quadratic_tasks
from fobtheory.results import load_results
from fobtheory.smoothness import (covered, fit_envelope, ray_points, spectral_norm, task_norms, theory_constants,
                                  torch_norms)

# ---------------------------------------------------------------------------------------------
# spectral norm by eigsh (ARPACK's Lanczos)


@given(dim=st.integers(1, 40), seed=st.integers(0, 2**32 - 1), shift=st.floats(-3, 3), rank=st.integers(0, 40))
def test_spectral_norm_matches_numpy_eigvalsh(dim, seed, shift, rank):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((dim, min(rank, dim)))
    A = B @ np.diag(rng.choice([-1.0, 1.0], B.shape[1])) @ B.T + shift * np.eye(dim)  # indefinite, any rank
    exact = np.abs(np.linalg.eigvalsh(A)).max()
    assert spectral_norm(lambda v: A @ v, dim, tol=1e-12, seed=seed % 100) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_spectral_norm_reports_non_convergence():
    A = np.diag(np.linspace(1.0, 1.001, 200))  # clustered spectrum: slow
    with pytest.raises(RuntimeError, match="max_iters"):
        spectral_norm(lambda v: A @ v, 200, tol=1e-15, max_iters=3)


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
def test_spectral_norm_of_zero_operator_is_zero(dim):
    assert spectral_norm(lambda v: 0 * v, dim) == 0.0


# ---------------------------------------------------------------------------------------------
# closed forms against autograd


def _torch_phi(task):
    """One-step MAML objective of a logistic task, written independently in torch."""
    T = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    Z, y, Zq, yq = T(task.Z), T(task.y), T(task.Zq), T(task.yq)

    def loss(Z, y, reg):
        return lambda w: torch.logaddexp(torch.zeros((), dtype=torch.float64), -y * (Z @ w)).mean() + 0.5 * reg * w @ w

    f, F = loss(Z, y, task.reg), loss(Zq, yq, task.query_reg)

    def phi(x):
        (g,) = torch.autograd.grad(f(x), x, create_graph=True)
        return F(x - task.alpha * g)

    return phi


def test_torch_hvp_path_matches_closed_forms():
    task = logistic_tasks(1, 6, seed=3)[0]
    points, _ = ray_points(6, [0.1, 1.0, 10.0], 4, seed=1)
    g_auto, h_auto = torch_norms(_torch_phi(task), points, tol=1e-12)
    g_exact, h_exact = task_norms(task, points)
    np.testing.assert_allclose(g_auto, g_exact, rtol=1e-10)
    np.testing.assert_allclose(h_auto, h_exact, rtol=1e-8)


def test_cosine_norms_match_the_formula():
    a, t = 0.5, 0.3
    task = CosineTask(alpha=a, target=t)
    x = np.linspace(-20, 20, 41)
    g, h = task_norms(task, x[:, None])
    np.testing.assert_allclose(g, np.abs((1 - a * np.cos(x)) * (x - a * np.sin(x) - t)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, np.abs((1 - a * np.cos(x)) ** 2 + a * np.sin(x) * (x - a * np.sin(x) - t)),
                               rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# sampling


def test_ray_points_lie_at_the_radii_on_opposite_rays():
    radii = [0.5, 2.0, 8.0]
    points, r = ray_points(5, radii, 4, center=np.ones(5), seed=0)
    assert points.shape == (12, 5) and r.tolist() == radii * 4
    np.testing.assert_allclose(np.linalg.norm(points - 1, axis=1), r)
    np.testing.assert_allclose(points[:3] - 1, -(points[6:9] - 1))  # ray 0 and ray 2 are opposite


def test_ray_points_in_one_dimension_see_both_sides():
    points, _ = ray_points(1, [1.0], 2, seed=7)
    assert sorted(points.ravel().tolist()) == [-1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# the envelope LP


def _objective(fit, g):
    return fit.L0 + fit.L1 * np.mean(g)


def _brute_force(g, h):
    """Least mean envelope over all candidate lines: vertices of the LP's feasible set are
    lines through two points, horizontal lines and lines through the origin."""
    with np.errstate(over="ignore", invalid="ignore"):  # steep lines overflow: never feasible and minimal
        candidates = [(h.max(), 0.0)]
        candidates += [(0.0, hi / gi) for gi, hi in zip(g, h) if gi > 0]
        for i, j in itertools.combinations(range(len(g)), 2):
            if g[i] != g[j]:
                L1 = (h[j] - h[i]) / (g[j] - g[i])
                candidates.append((h[i] - L1 * g[i], L1))
        feasible = [(L0, L1) for L0, L1 in candidates
                    if L0 >= -1e-12 and L1 >= -1e-12 and np.all(h <= L0 + L1 * g + 1e-9 * h.max())]
        return min(L0 + L1 * np.mean(g) for L0, L1 in feasible)


norms = st.floats(0, 100, allow_subnormal=False)
clouds = st.integers(1, 25).flatmap(lambda n: st.tuples(st.lists(norms, min_size=n, max_size=n),
                                                       st.lists(norms, min_size=n, max_size=n)))


@given(clouds)
def test_envelope_covers_every_point_and_is_minimal(cloud):
    g, h = map(np.array, cloud)
    fit = fit_envelope(g, h)
    assert fit.L0 >= 0 and fit.L1 >= 0
    assert covered(g, h, fit.L0, fit.L1, rtol=0).all()  # exactly, in floating point
    if fit.L0 > 1e-9 * max(h.max(), 1e-300):
        assert not covered(g, h, fit.L0 * (1 - 1e-6), fit.L1, rtol=0).all()
    if fit.L1 * g.max() > 1e-9 * h.max():
        assert not covered(g, h, fit.L0, fit.L1 * (1 - 1e-6), rtol=0).all()
    assert _objective(fit, g) <= _brute_force(g, h) * (1 + 1e-7) + 1e-12


def test_envelope_recovers_a_known_line():
    g = np.linspace(0, 10, 30)
    h = 2 + 3 * g - np.where(np.arange(30) % 3 == 0, 0, 1)  # every third point on the line, the rest below
    fit = fit_envelope(g, h)
    assert (fit.L0, fit.L1) == pytest.approx((2.0, 3.0), rel=1e-9)


def test_envelope_with_zero_gradients_is_flat():
    fit = fit_envelope(np.zeros(4), [1.0, 3.0, 2.0, 0.5])
    assert (fit.L0, fit.L1) == (3.0, 0.0)


def test_envelope_input_validation():
    with pytest.raises(ValueError, match="one length"):
        fit_envelope([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite and >= 0"):
        fit_envelope([1.0, -2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="finite and >= 0"):
        fit_envelope([1.0, math.nan], [1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# the families


def test_quadratic_tasks_fit_has_no_L1_term():
    problem = quadratic_tasks(3, 6, seed=2)
    points, _ = ray_points(6, np.geomspace(0.1, 1e3, 9), 4, seed=0)
    norms = [task_norms(t, points) for t in problem.tasks]
    fit = fit_envelope(np.concatenate([n[0] for n in norms]), np.concatenate([n[1] for n in norms]))
    assert fit.relative_L1 < 1e-8
    L0, L1 = theory_constants(problem)
    assert L1 == 0 and fit.L0 <= L0


def test_cosine_fit_approaches_the_asymptotic_slope_and_stays_under_theory():
    """At large |x|, |Phi''| / |Phi'| -> a |sin x| / (1 - a cos x), whose supremum is
    a / sqrt(1 - a^2): the least envelope's L1 tends to it, below theory's a / (1 - a)."""
    a = 0.5
    task = CosineTask(alpha=a)
    points, _ = ray_points(1, np.linspace(0.1, 2000, 5000), 2, seed=0)
    g, h = task_norms(task, points)
    fit = fit_envelope(g, h)
    L0, L1 = theory_constants(task)
    assert fit.L1 == pytest.approx(a / math.sqrt(1 - a * a), rel=0.02)
    assert fit.L0 <= L0 and fit.L1 <= L1 and covered(g, h, L0, L1).all()


def test_quick_experiment_writes_valid_results(tmp_path):
    results = execute("smoothness", quick=True, out=tmp_path, echo=lambda *_: None)
    loaded = load_results(tmp_path / "smoothness.json")
    assert loaded["experiment"] == "smoothness"
    assert {"family", "radius", "grad_norm", "hess_norm"} <= set(loaded["records"][0])
    assert {r["family"] for r in loaded["records"]} == {"quadratic", "logistic", "cosine", "mlp"}
    claims = {c["id"]: c["verdict"] for c in results["claims"]}
    assert claims["L1_zero_quadratic"] == "confirmed" and claims["theory_bound_holds"] == "confirmed"
    assert claims["hess_unbounded_cosine"] == "confirmed"
    # bounded derivatives (logistic): predicted L-smooth, not the (L0, L1) growth
    assert claims["L1_zero_logistic"] == "confirmed" and claims["hess_bounded_logistic"] == "confirmed"
    assert "L1_positive_logistic" not in claims and "hess_unbounded_logistic" not in claims
    # the figure is drawn from the results file alone
    assert [p.name for p in experiment.plot(loaded, tmp_path / "again")] == ["smoothness.png"]
