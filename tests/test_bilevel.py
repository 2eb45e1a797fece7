"""The bilevel family (ridge with a learned regulariser), FO-B and F2SA-p on it, and its experiment."""
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fobtheory import symbolic
from fobtheory.bilevel import RidgeTasks, f2sa_p, fob_hypergrad, ridge_tasks
from fobtheory.experiments import bilevel as bl
from fobtheory.experiments import execute
from fobtheory.results import VERDICTS, load_results
from fobtheory.stencils import scheme_order, stencil_for

instances = st.builds(lambda B, d, seed, mu: ridge_tasks(B, d, mu=mu, seed=seed),
                      st.integers(1, 3), st.integers(1, 5), st.integers(0, 2**31), st.sampled_from([0.0, 0.1, 1.0]))


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _torch_value(problem: RidgeTasks, x: torch.Tensor) -> torch.Tensor:
    """``sum_b Phi_b(x_b)`` in torch: w* by a differentiable linear solve, then F."""
    A, b, Av, bv = (torch.tensor(v) for v in (problem.A, problem.b, problem.A_val, problem.b_val))
    n = A.shape[1]
    H = A.transpose(1, 2) @ A / n + torch.diag_embed(torch.exp(x))
    w = torch.linalg.solve(H, (A.transpose(1, 2) @ b[..., None] / n))[..., 0]
    r = (Av @ w[..., None])[..., 0] - bv
    return ((r**2).mean(-1) / 2 + problem.mu * (x**2).sum(-1) / 2).sum()


@settings(max_examples=30, deadline=None)
@given(instances)
def test_closed_form_hypergradient_equals_autograd_and_finite_differences(inst):
    problem, x = inst
    exact = problem.hypergrad(x)
    xt = torch.tensor(x, requires_grad=True)
    (auto,) = torch.autograd.grad(_torch_value(problem, xt), xt)
    assert _rel(exact, auto.numpy()) < 1e-10
    h, eye = 1e-5, np.eye(problem.dim)
    fd = np.stack([(problem.value(x + h * eye[i]) - problem.value(x - h * eye[i])) / (2 * h)
                   for i in range(problem.dim)], axis=1)
    assert np.abs(fd - exact).max() <= 1e-7 * max(1.0, np.abs(exact).max())


@settings(max_examples=30, deadline=None)
@given(instances, st.one_of(st.just(0.0), st.floats(1e-6, 0.4), st.floats(-0.4, -1e-6)))
def test_perturbed_solutions_are_stationary_and_match_the_series(inst, fraction):
    """``w_t`` zeroes ``grad_w (g + t F)`` (autograd), the penalty form gives the same point, and
    G(t) is the sum of its Taylor series inside the radius, with ``g_1 = grad Phi``."""
    problem, x = inst
    t = fraction * float(problem.radius(x).min())
    w = problem.lower_solution(x, t)
    wt = torch.tensor(w, requires_grad=True)
    A, b, Av, bv = (torch.tensor(v) for v in (problem.A, problem.b, problem.A_val, problem.b_val))
    loss = (((A[:, None] @ wt[..., None])[..., 0] - b[:, None]) ** 2).mean(-1).sum() / 2 \
        + (torch.exp(torch.tensor(x))[:, None] * wt**2).sum() / 2 \
        + t * (((Av[:, None] @ wt[..., None])[..., 0] - bv[:, None]) ** 2).mean(-1).sum() / 2
    (grad,) = torch.autograd.grad(loss, wt)
    assert grad.abs().max() < 1e-10 * max(1.0, float(np.abs(w).max()))
    total = problem.lower_loss(x, w) + t * problem.upper_loss(x, w)
    assert np.allclose(total.sum(), float(loss.detach()) + t * (problem.mu * (x**2).sum() / 2), rtol=1e-12, atol=1e-12)
    moved = w + 1e-3 * np.random.default_rng(0).standard_normal(w.shape)  # |t| < radius: strongly convex
    assert np.all(problem.lower_loss(x, moved) + t * problem.upper_loss(x, moved) > total)
    if t != 0:
        assert _rel(problem.penalty_solution(x, 1 / t), w) < 1e-10
    series = problem.perturbation_series(x, 60)
    G = problem.lower_grad_x(x, w)[:, 0] + t * problem.mu * x
    assert _rel(np.einsum("k,kbd->bd", t ** np.arange(61), series), G) < 1e-10
    assert _rel(series[1], problem.hypergrad(x)) < 1e-10


@settings(max_examples=30, deadline=None)
@given(instances, st.sampled_from([1, 2, 3, 5, 8, "onesided3", "onesided5"]), st.floats(0.05, 0.2))
def test_estimator_error_is_the_stencil_series(inst, scheme, fraction):
    """``estimate - grad Phi = sum_(m > p) M_m g_m delta^(m-1)`` (M_m the stencil's moments),
    to roundoff, inside the radius: the leading term is ``M_(p+1) g_(p+1) delta^p``."""
    problem, x = inst
    p = scheme_order(scheme)
    reach = max(abs(s) for s in stencil_for(scheme).offsets)
    delta = fraction * float(problem.radius(x).min()) / reach
    series = problem.perturbation_series(x, 80)
    predicted = sum(float(symbolic.moment(scheme, m)) * series[m] * delta ** (m - 1) for m in range(p + 1, 81))
    error = fob_hypergrad(problem, x, delta=delta, scheme=scheme) - problem.hypergrad(x)
    roundoff = 1e-13 * np.abs(series[0]).max() / delta
    assert np.abs(error - predicted).max() <= roundoff + 1e-9 * np.abs(predicted).max()


@pytest.mark.parametrize("scheme, delta", [(1, 1e-5), (2, 1e-3), (3, 2e-3), ("onesided3", 1e-3)])
def test_error_over_delta_p_is_the_leading_term(scheme, delta):
    """At a small delta the measured ``(estimate - grad Phi) / delta^p`` is within 3% of
    ``M_(p+1) g_(p+1)``: the centred p = 3 stencil's term is -1/3 of the one-sided one's."""
    problem, x = ridge_tasks(4, 6, seed=3)
    p = scheme_order(scheme)
    leading = float(symbolic.moment(scheme, p + 1)) * problem.perturbation_series(x, p + 1)[p + 1]
    measured = (fob_hypergrad(problem, x, delta=delta, scheme=scheme) - problem.hypergrad(x)) / delta**p
    assert _rel(measured, leading) < 0.03


@settings(max_examples=30, deadline=None)
@given(instances, st.sampled_from([1, 2, 3, 5, 8, "onesided3"]), st.floats(1e-3, 0.2))
def test_f2sa_p_equals_fob_at_delta_one_over_lambda(inst, scheme, fraction):
    problem, x = inst
    reach = max(abs(s) for s in stencil_for(scheme).offsets)
    delta = fraction * float(problem.radius(x).min()) / reach
    fob = fob_hypergrad(problem, x, delta=delta, scheme=scheme)
    f2sa = f2sa_p(problem, x, lam=1 / delta, scheme=scheme)
    scale = np.abs(problem.perturbation_series(x, 0)[0]).max()
    assert np.abs(fob - f2sa).max() <= 1e-11 * max(scale, np.abs(fob).max()) / delta


def test_f2sa_is_the_penalty_gradient_at_p_1():
    """p = 1: F2SA's ``grad_x F(x, y_lam) + lam (grad_x g(x, y_lam) - grad_x g(x, z))``, written out."""
    problem, x = ridge_tasks(3, 4, mu=0.5, seed=2)
    lam = 50.0
    y = problem.penalty_solution(x, lam)[:, 0]
    z = problem.lower_solution(x)[:, 0]
    direct = problem.mu * x + lam * (np.exp(x) * y**2 / 2 - np.exp(x) * z**2 / 2)
    assert _rel(f2sa_p(problem, x, lam=lam, scheme="forward"), direct) < 1e-13


def test_gradient_descent_converges_to_the_perturbed_solution():
    problem, x = ridge_tasks(2, 4, seed=1)
    t = np.array([-0.1, 0.0, 0.2])
    paths = problem.descent_iterates(x, t, [0, 5, 400], np.zeros((2, 3, 4)))
    exact = problem.lower_solution(x, t)
    gaps = [np.abs(paths[T] - exact).max() for T in (0, 5, 400)]
    assert gaps[0] > gaps[1] > 1e3 * gaps[2] and gaps[2] < 1e-12


@pytest.mark.parametrize("call, message", [
    (lambda P, x: fob_hypergrad(P, x, delta=0.0), "delta must be a finite number > 0"),
    (lambda P, x: f2sa_p(P, x, lam=-1.0), "lam must be a finite number > 0"),
    (lambda P, x: P.hypergrad(x[:1]), r"x must be a finite \(2, 3\) array"),
    (lambda P, x: P.penalty_solution(x, [0.0]), "lam must be nonzero"),
    (lambda P, x: P.descent_iterates(x, [0.0], [3], np.zeros((1, 1, 3))), r"start must have shape \(2, 1, 3\)"),
    (lambda P, x: fob_hypergrad(P, x, delta=0.1, scheme="onesided0"), "scheme must be"),
    (lambda P, x: RidgeTasks(P.A, P.b, P.A_val, P.b_val, mu=-1.0), "mu must be a finite number >= 0"),
])
def test_bad_input_names_the_parameter(call, message):
    P, x = ridge_tasks(2, 3, seed=0)
    with pytest.raises(ValueError, match=message):
        call(P, x)


# ---------------------------------------------------------------------------------------------
# the experiment

CLAIMS = {"bilevel_f2sa_identity", "bilevel_rates", "bilevel_eps_rates"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bilevel")
    execute("bilevel", quick=True, out=out, echo=lambda *_: None)
    return out, load_results(out / "bilevel.json")


def test_quick_run_writes_results_and_a_figure_and_confirms_its_claims(quick):
    out, results = quick
    assert (out / "bilevel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {c["id"] for c in results["claims"]} == CLAIMS
    assert all(c["verdict"] in VERDICTS and c["measured"] for c in results["claims"])
    # must show: the identity, slopes p for p = 1..8, and p/(p+1) in eps
    assert all(c["verdict"] == "confirmed" for c in results["claims"]), results["claims"]
    orders = {f["scheme"]: f["slope"] for f in results["summary"]["fits"]}
    assert set(orders) >= {1, 2, 3, 5, 8}


def test_the_figure_redraws_from_the_json_alone(quick, tmp_path):
    out, _ = quick
    results = load_results(out / "bilevel.json")
    (path,) = bl.plot(results, tmp_path)
    assert Path(path).stat().st_size > 10_000


def test_same_seed_same_numbers():
    def tiny(seed):
        cfg = bl.config(quick=True, seed=seed)
        cfg.update(n_tasks=2, dim=3, n_boot=20, schemes=[2], eps_schemes=[1], steps=list(range(2, 60, 6)))
        return bl.run(cfg)["records"]

    first, again, other = tiny(3), tiny(3), tiny(4)
    assert first == again and first != other


@pytest.mark.parametrize("key, value, message", [
    ("n_tasks", 1, "n_tasks must be an integer >= 2"),
    ("deltas", [1e-3, 1e-4, 1e-2, 1e-1], "deltas must be an increasing list"),
    ("radius_fraction", 1.5, r"radius_fraction must lie in \(0, 1\)"),
    ("eps_range", [1e-3, 1e-6], "eps_range must be"),
    ("schemes", ["central"], "scheme must be"),
])
def test_bad_config_values_name_the_parameter(key, value, message):
    cfg = bl.config(quick=True)
    cfg[key] = value
    with pytest.raises(ValueError, match=message):
        bl.run(cfg)
