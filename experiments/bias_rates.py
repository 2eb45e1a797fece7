"""Bias rates of FO-B-MAML: error against delta, and best error against solve accuracy eps.

Theory: the docs' Theory page, "Estimators and their bias". Float64 throughout; ``normalize=False``, so delta is the step ``t`` of
the perturbed problem ``u = x - t grad F(phi(u))`` (the parameter displacement is delta |v|).
Every error is relative, ``|estimate - grad Phi| / |grad Phi|``, against the closed form.

**Regime 1 (exact oracles, float64).** For each family (quadratic, logistic, the 1-D cosine
task), scheme (forward, symmetric, order 4, complex step), J and K of the configured sweeps:
error against delta on a log grid. Slopes by :func:`fobtheory.rates.fit_rate` (log-log least
squares inside the automatically found truncation window, bootstrap 95% interval over tasks);
an estimator exact up to roundoff has no window, and the fit says so. On quadratics the
perturbed path ``y_J(t)`` is a polynomial of degree J in t (not polynomial when solved), so a
scheme is exact iff J <= its exact degree (:func:`fobtheory.symbolic.exact_degree`).

**Regime 2 (inexact solves).** The perturbed solutions ``y(s_j delta) = u_j - alpha grad f(u_j)``
carry errors of norm ``eps |grad Phi(x)|`` in seeded random directions, injected through the
inner oracle: every call returns ``grad f(u) + (eps |grad Phi(x)| / alpha) r``, r uniform on the
unit sphere and drawn afresh per call (the outer oracle is exact). So eps is the accuracy of
the perturbed solutions relative to ``|grad Phi|``. With J = K = 1 the estimate is
``-(1/delta) sum_j c_j y(s_j delta)``, hence ``error ~ C delta^p + |c|_2 eps / delta`` (``|c|_2``
the norm of the stencil weights), minimised at ``delta* = (|c|_2 eps / (p C))^(1/(p+1))`` with
``error* = (p+1) C delta*^p``, proportional to ``eps^(p/(p+1))``. Per eps: the error at the best
delta of the grid (the one minimising the mean error over tasks: one delta for all tasks, as
a user would choose it) and at delta* (C from the regime-1 fit). Float64 roundoff is the case
``eps ~ eps_mach``: the best regime-1 error is compared with ``error*(eps_mach)``.

**Kinks.** On piecewise-smooth tasks (:class:`fobtheory.problems.ReluRegressionTask`), every
other evaluation point sits ``kink_gap`` from a kink, as trained ReLU units do: a plain
difference crosses it at every delta and measures the gradient's jump / delta, while the
anchored oracles (pattern of the anchor frozen; Theory page, "Frozen activation patterns") difference the smooth
piece that the closed form differentiates. Errors are reported by their tail over tasks.

**Centred against one-sided odd stencils.** For p = 3 and 5, the default (most centred
offsets containing 0: -1..2, -2..3) and the one-sided stencil (0..p) cost the same p perturbed
solves. At equal delta, in the truncation window, their errors differ by the ratio of the
stencils' moments ``M_(p+1) = sum_j c_j s_j^(p+1)`` (the path derivative cancels): 1/3 at p = 3,
1/10 at p = 5, measured at the smallest delta inside both windows (bootstrap 95% interval over
tasks). At equal cost each stencil is taken at its own best delta of the grid, and the ratio of
the best errors is set beside the noise model's ``(C_c / C_o)^(1/(p+1)) (|c_c| / |c_o|)^(p/(p+1))``
(fitted constants C, weight norms |c|).

**Constants.** On the cosine tasks, ``(estimate - grad Phi) / delta^p`` at one small delta
against the exact leading constant of :mod:`fobtheory.symbolic`.
"""
from __future__ import annotations

import math
from itertools import product
from pathlib import Path

import numpy as np
from fobtheory.progress import track

from fobtheory import symbolic
from fobtheory.checks import integer, positive
from fobtheory.estimators import FixedPointError, fo_maml, fob_maml, reptile
from fobtheory.plotting import METHOD_COLORS, close, mark_quick, panels, reference_slope, style
from fobtheory.problems import CosineTask, MetaProblem, logistic_tasks, quadratic_tasks, relu_tasks
from fobtheory.rates import EPS64, RESOLUTION, fit_power_law, fit_rate, geometric_mean, relative_error
from fobtheory.results import claim, make_results, save_figure, verdict
from fobtheory.stencils import scheme_order, stencil_for

NAME = "bias_rates"
FAMILIES = ("quadratic", "logistic", "cosine")
ESTIMATORS = {"forward": "fob_forward", "symmetric": "fob_symmetric", 4: "fob_order4", "complex": "fob_complex",
              3: "fob_order3", "onesided3": "fob_onesided3", 5: "fob_order5", "onesided5": "fob_onesided5"}
STENCIL_ORDERS = (3, 5)  # odd orders: centred (F2SA-p's) against one-sided stencils
BASELINES = {"fo_maml": fo_maml, "reptile": reptile}
COSINE_ALPHA = 0.5


def log_grid(low: float, high: float, per_decade: float) -> list[float]:
    """``per_decade`` points per decade from low to high, rounded to 3 significant digits."""
    n = round(math.log10(high / low) * per_decade) + 1
    return [float(f"{d:.3g}") for d in np.geomspace(low, high, n)]


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    schemes = ["forward", "symmetric", 4, "complex"]
    sweeps = [
        # every family, every scheme: one fixed-point iteration and the exact solve
        {"families": list(FAMILIES), "schemes": schemes, "J": [1, "solve"], "K": [1]},
        # the J-dependence of the bias, and of exactness on quadratics
        {"families": ["quadratic", "logistic"], "schemes": ["forward", "symmetric", 4], "J": [2, 5], "K": [1]},
        # K = 3 inner steps: the backward recursion keeps the rates
        {"families": ["quadratic", "logistic"], "schemes": ["forward", "symmetric"], "J": [1, "solve"], "K": [3]},
    ]
    if quick:
        sweeps = [{"families": list(FAMILIES), "schemes": ["forward", "symmetric", "complex"], "J": [1, "solve"], "K": [1]},
                  {"families": ["quadratic"], "schemes": ["forward", "symmetric"], "J": [2], "K": [1]}]
    return {
        "seed": seed,
        "device": "cpu",  # closed-form numpy problems in float64
        "n_tasks": 4 if quick else 20,
        "dim": 5 if quick else 10,
        "deltas": log_grid(1e-9, 1.0, 3),
        "sweeps": sweeps,
        "baseline_K": [1] if quick else [1, 3],
        "eps": log_grid(1e-14, 1e-2, 0.5 if quick else 1),
        # 1-D tasks need many of them: a random direction in 1-D is a sign, and the noise terms cancel often
        "eps_families": ["logistic"] if quick else ["logistic", "cosine"],
        "eps_schemes": ["forward", "symmetric"],
        "stencil_families": ["logistic"] if quick else ["logistic", "cosine"],
        "stencil_deltas": log_grid(1e-4, 1.0, 6 if quick else 4),  # order 5's window spans about a decade
        "stencil_J": ["solve"],
        "constant_schemes": ["forward", "symmetric", "complex"] if quick else schemes,
        "constant_J": [1, "solve"],
        # delta of the constant check: next-order term and roundoff both below 0.5% of c_p delta^p
        "constant_deltas": {"forward": 1e-5, "symmetric": 1e-3, "4": 1e-2, "complex": 1e-3},
        "floor_factor": 100.0,
        "max_error": 1e-2,
        "n_boot": 200 if quick else 1000,
        "tolerance": {"delta": 0.1, "order4": 0.25, "eps": 0.08, "constant": 0.02, "stencil_ratio": 0.15},
        "irreducible_factor": 100.0,  # baseline error / best FO-B-MAML error
        "complex_floor": 1e-13,
        "float64_factor": 10.0,  # measured / predicted float64 floor
        "kink_gap": 1e-13,  # distance of every other evaluation point of the ReLU tasks to a kink
        "kink_error": 1e-2,  # plain differences "do not converge" if their worst error stays above this
    }


# ---------------------------------------------------------------------------------------------
# configuration checks


def _check_J(J):
    if J != "solve":
        integer("J (fixed_point_iters)", J)
    return J


def check_config(cfg: dict) -> dict:
    """Validate the parameters that ``run`` reads; each error names the parameter and its range."""
    integer("n_tasks", cfg["n_tasks"], 2)
    integer("dim", cfg["dim"])
    integer("n_boot", cfg["n_boot"])
    for name in ("deltas", "eps", "stencil_deltas"):
        values = [positive(name, v) for v in cfg[name]]
        if len(values) < 4 or values != sorted(values):
            raise ValueError(f"{name} must be an increasing list of at least 4 numbers > 0, got {cfg[name]!r}")
    if max(cfg["eps"]) >= 1:
        raise ValueError(f"eps must lie in (0, 1) (relative oracle accuracy), got max {max(cfg['eps'])}")
    for sweep in cfg["sweeps"]:
        for family in sweep["families"]:
            _family_name(family)
        for scheme in sweep["schemes"]:
            scheme_order(scheme)
        for J in sweep["J"]:
            _check_J(J)
        for K in sweep["K"]:
            integer("K (inner_steps)", K)
    for family in cfg["eps_families"]:
        _family_name(family)
    for scheme in cfg["eps_schemes"]:
        if scheme == "complex":
            raise ValueError("eps_schemes must be real stencils ('forward', 'symmetric' or an order): the noise "
                             "model perturbs real gradients, got 'complex'")
        scheme_order(scheme)
    for family in cfg["stencil_families"]:
        _family_name(family)
    for J in cfg["stencil_J"]:
        _check_J(J)
    for scheme in cfg["constant_schemes"]:
        positive(f"constant_deltas[{str(scheme)!r}]", cfg["constant_deltas"].get(str(scheme)))
    for J in cfg["constant_J"]:
        _check_J(J)
    return cfg


def _family_name(name: str) -> str:
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {name!r}")
    return name


# ---------------------------------------------------------------------------------------------
# task families, batched


class Family:
    """B tasks of one family, an evaluation point per task, batched oracles, exact meta-gradients."""

    def __init__(self, name: str, n_tasks: int, dim: int, seed: int):
        self.name = _family_name(name)
        rng = np.random.default_rng([seed, FAMILIES.index(name)])
        if name == "quadratic":
            self.tasks = list(quadratic_tasks(n_tasks, dim, seed=seed))
            self.X = rng.standard_normal((n_tasks, dim))
        elif name == "logistic":
            self.tasks = list(logistic_tasks(n_tasks, dim, seed=seed))
            self.X = 2 * rng.standard_normal((n_tasks, dim)) / math.sqrt(dim)
        else:  # targets at distance 0.5..2 from phi(x): |grad Phi| >= 0.25
            x = rng.uniform(-3, 3, n_tasks)
            gap = rng.uniform(0.5, 2, n_tasks) * rng.choice([-1.0, 1.0], n_tasks)
            self.tasks = [CosineTask(alpha=COSINE_ALPHA, target=xi - COSINE_ALPHA * math.sin(xi) + gi)
                          for xi, gi in zip(x, gap)]
            self.X = x[:, None]
        self.alpha = self.tasks[0].alpha
        self.inner, self.outer = MetaProblem(self.tasks).stacked_oracles()
        self._exact = {}

    def exact(self, K: int) -> np.ndarray:
        """``grad Phi_b(x_b)`` for every task (closed form, computed once per K)."""
        if K not in self._exact:
            self._exact[K] = np.stack([t.meta_grad(x, K) for t, x in zip(self.tasks, self.X)])
        return self._exact[K]

    def errors(self, estimate, K: int) -> np.ndarray:
        """Relative error of each task's row of ``estimate``."""
        return np.array([relative_error(e, g) for e, g in zip(estimate, self.exact(K))])

    def contracting(self, scheme, delta: float) -> bool:
        """Theory's guarantee that the perturbed fixed point contracts for every task at every
        stencil point ``t = s_j delta``: ``max|s_j| delta L_F (1 + alpha L) < 1``."""
        reach = 1 if scheme == "complex" else max(abs(s) for s in stencil_for(scheme).offsets)
        return all(reach * delta * t.L_F * (1 + t.alpha * t.L) < 1 for t in self.tasks)

    def sweep(self, scheme, J, K: int, deltas, oracles=None) -> np.ndarray:
        """Errors (tasks x deltas) of FO-B-MAML. With J > 1 only deltas where the perturbed
        problem contracts are run; the others, and solves that fail, stay NaN."""
        inner, outer = oracles or (self.inner, self.outer)
        out = np.full((len(self.tasks), len(deltas)), np.nan)
        for i, delta in enumerate(deltas):
            if J != 1 and not self.contracting(scheme, delta):
                continue
            try:
                est = fob_maml(self.X, inner, outer, alpha=self.alpha, delta=delta, scheme=scheme,
                               fixed_point_iters=J, inner_steps=K, batched=True)
            except FixedPointError:
                continue
            out[:, i] = self.errors(est, K)
        return out


def _noisy(oracle, scale: np.ndarray, rng):
    """``oracle(u) + scale_b r`` on each row (task b = row mod B), r uniform on the unit sphere,
    drawn afresh per call."""
    def call(P):
        R = rng.standard_normal(P.shape)
        R /= np.linalg.norm(R, axis=1, keepdims=True)
        return oracle(P) + np.tile(scale, len(P) // len(scale))[:, None] * R
    return call


# ---------------------------------------------------------------------------------------------
# measurements


def _row(family, task, estimator, scheme, J, K, delta, eps, error, **extra) -> dict:
    """One record; the error rounded to 4 significant digits (the fits use the full values)."""
    return {"family": family, "task": task, "estimator": estimator, "scheme": scheme, "J": J, "K": K,
            "delta": delta, "eps": eps, "error": float(f"{error:.4g}"), **extra}


def _curves(cfg: dict) -> list[tuple]:
    """``(family, scheme, J, K)`` of every regime-1 curve, each once, in sweep order."""
    seen = {}
    for s in cfg["sweeps"]:
        for key in product(s["families"], s["schemes"], s["J"], s["K"]):
            seen.setdefault(key, None)
    return list(seen)


def _complete(deltas, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The deltas, and the error columns, where every task has a value; exact zeros (the
    estimate equal to the closed form to the last bit) count as the float64 resolution."""
    keep = ~np.isnan(E).any(axis=0)
    return np.asarray(deltas)[keep], np.maximum(E[:, keep], RESOLUTION)


def delta_sweeps(families: dict, cfg: dict, records: list) -> list[dict]:
    """Regime 1: one fitted curve per (family, scheme, J, K); records every point."""
    deltas = cfg["deltas"]
    fits = []
    for name, scheme, J, K in track(_curves(cfg), desc="bias: error vs delta", unit="curve", leave=False):
        fam = families[name]
        E = fam.sweep(scheme, J, K, deltas)
        for b, i in zip(*np.nonzero(~np.isnan(E))):
            records.append(_row(name, int(b), ESTIMATORS[scheme], scheme, J, K, deltas[i], 0, E[b, i]))
        run_deltas, run_E = _complete(deltas, E)
        fit = fit_rate(run_deltas, run_E, floor_factor=cfg["floor_factor"], max_error=cfg["max_error"],
                       n_boot=cfg["n_boot"], seed=cfg["seed"])
        curve = geometric_mean(run_E)
        best = int(np.argmin(curve))
        fits.append({"family": name, "scheme": scheme, "J": J, "K": K, **fit.as_dict(),
                     "best_error": float(curve[best]), "best_delta": float(run_deltas[best]),
                     "deltas_skipped": [d for d in deltas if d not in run_deltas],  # no contraction guarantee, or the solve failed
                     "predicted_exact": name == "quadratic" and J != "solve" and J <= symbolic.exact_degree(scheme)})
    return fits


def baselines(families: dict, cfg: dict, records: list) -> list[dict]:
    """FO-MAML and Reptile: no delta, so one error per task; geometric mean with a bootstrap
    95% interval over tasks."""
    out = []
    rng = np.random.default_rng(cfg["seed"])
    for (name, fam), K, (method, estimator) in product(families.items(), cfg["baseline_K"], BASELINES.items()):
        err = fam.errors(estimator(fam.X, fam.inner, fam.outer, alpha=fam.alpha, inner_steps=K, batched=True), K)
        records += [_row(name, b, method, None, None, K, None, 0, e) for b, e in enumerate(err)]
        boots = geometric_mean(err[rng.integers(0, len(err), (cfg["n_boot"], len(err)))], axis=1)
        low, high = np.percentile(boots, [2.5, 97.5])
        out.append({"family": name, "estimator": method, "K": K, "error": float(geometric_mean(err)),
                    "ci_low": float(low), "ci_high": float(high)})
    return out


def kink_sweeps(cfg: dict, records: list) -> list[dict]:
    """Plain and frozen-pattern differences on ReLU regression tasks, half of them evaluated
    next to a kink: per scheme, the fit over all tasks and the median and maximum per delta."""
    problem = relu_tasks(cfg["n_tasks"], cfg["dim"], seed=cfg["seed"])
    rng = np.random.default_rng([cfg["seed"], len(FAMILIES)])
    X = 2 * rng.standard_normal((len(problem), cfg["dim"])) / math.sqrt(cfg["dim"])
    near = np.arange(len(problem)) % 2 == 0
    X[near] = [problem[b].next_to_kink(X[b], cfg["kink_gap"]) for b in np.flatnonzero(near)]
    exact = np.stack([t.meta_grad(x) for t, x in zip(problem, X)])
    anchored, outer = problem.stacked_oracles()
    oracles = {True: anchored, False: lambda P: anchored(P)}  # no anchor parameter: plain differences
    deltas = cfg["deltas"]
    out = []
    for scheme, frozen in product(["forward", "symmetric"], [False, True]):
        E = np.array([[relative_error(e, g) for e, g in zip(
            fob_maml(X, oracles[frozen], outer, alpha=problem.alpha, delta=d, scheme=scheme, batched=True), exact)]
            for d in deltas]).T
        records += [_row("relu", b, ESTIMATORS[scheme], scheme, 1, 1, d, 0, E[b, i], frozen=frozen,
                         near_kink=bool(near[b])) for b in range(len(problem)) for i, d in enumerate(deltas)]
        E = np.maximum(E, RESOLUTION)
        fit = fit_rate(deltas, E, floor_factor=cfg["floor_factor"], max_error=cfg["max_error"], n_boot=cfg["n_boot"],
                       seed=cfg["seed"])
        out.append({"family": "relu", "scheme": scheme, "frozen": frozen, **fit.as_dict(),
                    "median": np.median(E, axis=0).tolist(), "max": E.max(axis=0).tolist()})
    return out


def _find(fits: list[dict], **key) -> dict | None:
    return next((f for f in fits if all(f[k] == v for k, v in key.items())), None)


def optimal_step(C: float, gain: float, eps: float, p: int) -> tuple[float, float]:
    """Minimiser ``delta* = (gain eps / (p C))^(1/(p+1))`` of ``C delta^p + gain eps / delta``,
    and the minimum ``(p+1) C delta*^p``."""
    star = (gain * eps / (p * C)) ** (1 / (p + 1))
    return star, (p + 1) * C * star**p


def eps_sweeps(families: dict, cfg: dict, fits: list[dict], records: list) -> list[dict]:
    """Regime 2 (J = K = 1): per eps, the error at the best common delta of the grid (the one
    minimising the mean error over tasks) and at the prescribed delta*(eps)."""
    deltas, eps_grid = cfg["deltas"], cfg["eps"]
    out = []
    jobs = list(product(cfg["eps_families"], cfg["eps_schemes"]))
    for name, scheme in track(jobs, desc="bias: best error vs eps", unit="curve", leave=False):
        fam, p = families[name], scheme_order(scheme)
        gain = float(np.linalg.norm(stencil_for(scheme).float_weights))
        base = _find(fits, family=name, scheme=scheme, J=1, K=1)
        C = base["constant"] if base and base["window"] else None
        unit = np.linalg.norm(fam.exact(1), axis=1) / fam.alpha  # grad f error giving |y error| = |grad Phi|
        best, at_star, stars = [], [], []
        for k, eps in enumerate(eps_grid):
            rng = np.random.default_rng([cfg["seed"], FAMILIES.index(name), p, k])
            oracles = (_noisy(fam.inner, eps * unit, rng), fam.outer)
            E = fam.sweep(scheme, 1, 1, deltas, oracles)
            i = int(np.argmin(E.mean(axis=0)))
            best.append(E[:, i])
            records += [_row(name, b, ESTIMATORS[scheme], scheme, 1, 1, deltas[i], eps, e, point="best")
                        for b, e in enumerate(best[-1])]
            if C is not None:
                stars.append(float(f"{optimal_step(C, gain, eps, p)[0]:.4g}"))
                at_star.append(fam.sweep(scheme, 1, 1, stars[-1:], oracles)[:, 0])
                records += [_row(name, b, ESTIMATORS[scheme], scheme, 1, 1, stars[-1], eps, e, point="prescribed")
                            for b, e in enumerate(at_star[-1])]
        entry = {"family": name, "scheme": scheme, "order": p, "expected_slope": p / (p + 1), "gain": gain,
                 "truncation_constant": C, "best": _eps_fit(eps_grid, best, cfg)}
        if C is not None:
            entry |= {"prescribed": _eps_fit(eps_grid, at_star, cfg), "prescribed_deltas": stars}
        out.append(entry | float64_prediction(entry, base))
    return out


def _eps_fit(eps_grid, errors: list, cfg: dict) -> dict:
    """Power law of the errors (one array over tasks per eps) against eps, bootstrap over tasks."""
    return fit_power_law(eps_grid, np.array(errors).T, n_boot=cfg["n_boot"], seed=cfg["seed"]).as_dict()


def float64_prediction(entry: dict, base: dict | None) -> dict:
    """The best float64 error (regime 1, J = K = 1) beside predictions at eps = eps_mach: the bare
    ``eps_mach^(p/(p+1))``, the noise model ``(p+1) C delta*^p`` (the measured truncation constant
    C: eps_mach^(p/(p+1)) times the problem scale), and the fitted regime-2 law."""
    p, law = entry["order"], entry["best"]
    out = {"float64_measured": base["best_error"] if base else None,
           "float64_bare": EPS64 ** (p / (p + 1)),
           "float64_law": law["constant"] * EPS64 ** law["slope"]}
    if entry["truncation_constant"] is not None:
        out["float64_model"] = optimal_step(entry["truncation_constant"], entry["gain"], EPS64, p)[1]
    return out


def _paired_ratio(a: np.ndarray, b: np.ndarray, cfg: dict) -> tuple[float, float, float]:
    """Geometric mean over tasks of the per-task ratios ``a / b``, with a bootstrap 95% interval."""
    r = np.maximum(a, RESOLUTION) / np.maximum(b, RESOLUTION)
    rng = np.random.default_rng(cfg["seed"])
    boots = geometric_mean(r[rng.integers(0, len(r), (cfg["n_boot"], len(r)))], axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(geometric_mean(r)), float(low), float(high)


def stencil_pairs(families: dict, cfg: dict, records: list) -> list[dict]:
    """Centred against one-sided stencils of order 3 and 5 (K = 1): the error ratio at equal
    delta (smallest delta inside both truncation windows) against the moment ratio, and at
    equal cost (each at its best delta) against the noise model."""
    deltas = np.array(cfg["stencil_deltas"])
    out = []
    jobs = list(product(cfg["stencil_families"], cfg["stencil_J"], STENCIL_ORDERS))
    for name, J, p in track(jobs, desc="bias: centred vs one-sided", unit="pair", leave=False):
        fam, schemes = families[name], (p, f"onesided{p}")
        assert len(stencil_for(p).perturbed_offsets) == len(stencil_for(schemes[1]).perturbed_offsets) == p
        E, fits = {}, {}
        for scheme in schemes:
            E[scheme] = fam.sweep(scheme, J, 1, deltas)
            for b, i in zip(*np.nonzero(~np.isnan(E[scheme]))):
                records.append(_row(name, int(b), ESTIMATORS[scheme], scheme, J, 1, deltas[i], 0, E[scheme][b, i],
                                    point="stencil"))
            fits[scheme] = fit_rate(*_complete(deltas, E[scheme]), floor_factor=cfg["floor_factor"],
                                    max_error=cfg["max_error"], n_boot=cfg["n_boot"], seed=cfg["seed"]).as_dict()
        expected = float(abs(symbolic.moment(p, p + 1) / symbolic.moment(schemes[1], p + 1)))
        entry = {"family": name, "J": J, "order": p, "expected_ratio": expected,
                 "fits": {str(s): fits[s] for s in schemes}}
        windows = [fits[s]["window"] for s in schemes]
        common = [i for i, d in enumerate(deltas) if all(w and w[0] <= d <= w[1] for w in windows)]
        if common:
            i = common[0]
            ratio, low, high = _paired_ratio(E[p][:, i], E[schemes[1]][:, i], cfg)
            entry["equal_delta"] = {"delta": float(deltas[i]), "ratio": ratio, "ci_low": low, "ci_high": high,
                                    "ratios_in_window": [float(geometric_mean(E[p][:, j]) / geometric_mean(E[schemes[1]][:, j]))
                                                         for j in common]}
        curves = {s: geometric_mean(np.where(np.isnan(E[s]), np.inf, E[s])) for s in schemes}
        best = {s: int(np.argmin(curves[s])) for s in schemes}
        entry["equal_cost"] = {"perturbed_solves": p, "best_error": {str(s): float(curves[s][best[s]]) for s in schemes},
                               "best_delta": {str(s): float(deltas[best[s]]) for s in schemes},
                               "ratio": float(curves[p][best[p]] / curves[schemes[1]][best[schemes[1]]])}
        if all(w for w in windows):
            C = [fits[s]["constant"] for s in schemes]
            gains = [float(np.linalg.norm(stencil_for(s).float_weights)) for s in schemes]
            entry["equal_cost"]["model_ratio"] = (C[0] / C[1]) ** (1 / (p + 1)) * (gains[0] / gains[1]) ** (p / (p + 1))
        out.append(entry)
    return out


def constants(family: Family, cfg: dict, records: list) -> list[dict]:
    """Cosine tasks: measured ``(estimate - grad Phi) / delta^p`` against sympy's ``c_p``."""
    x, target = family.X[:, 0], np.array([t.target for t in family.tasks])
    exact = family.exact(1)[:, 0]
    out = []
    for scheme, J in product(cfg["constant_schemes"], cfg["constant_J"]):
        p, delta = scheme_order(scheme), cfg["constant_deltas"][str(scheme)]
        est = fob_maml(family.X, family.inner, family.outer, alpha=family.alpha, delta=delta, scheme=scheme,
                       fixed_point_iters=J, batched=True)[:, 0]
        measured = (est - exact) / delta**p
        exact_c = symbolic.constant_evaluator(scheme, J)(x, family.alpha, target)
        ratio = measured / exact_c
        records += [_row("cosine", b, ESTIMATORS[scheme], scheme, J, 1, delta, 0, abs(est[b] - exact[b]) / abs(exact[b]),
                         point="constant", measured_constant=float(measured[b]), symbolic_constant=float(exact_c[b]))
                    for b in range(len(x))]
        out.append({"scheme": scheme, "J": J, "delta": delta, "order": p,
                    "max_deviation": float(np.max(np.abs(ratio - 1))),
                    "median_deviation": float(np.median(np.abs(ratio - 1))),
                    "signs_agree": bool(np.all(np.sign(measured) == np.sign(exact_c))),
                    "constant_range": [float(np.min(exact_c)), float(np.max(exact_c))]})
    return out


# ---------------------------------------------------------------------------------------------
# claims, each verdict computed from the fitted numbers


def _claim(id: str, statement: str, expected: str, measured: str, verdict_: str) -> dict:
    """:func:`fobtheory.results.claim`, saying so when this configuration measured nothing for it."""
    return claim(id, statement, expected, measured or "not measured in this configuration", verdict_)


def _label(f: dict) -> str:
    return f"{f['family']} {f['scheme']} J={f['J']} K={f['K']}"


def _interval(fit: dict) -> str:
    return f"{fit['slope']:.3f} [{fit['ci_low']:.3f}, {fit['ci_high']:.3f}]"


def _slope_verdict(fits: list[dict], expected, tol: float) -> str:
    """Confirmed when every slope is within ``tol`` of its expected value, refuted when some
    95% interval lies entirely outside ``expected +- tol`` (expected: a number or, per fit, a list)."""
    targets = expected if isinstance(expected, list) else [expected] * len(fits)
    within = [abs(f["slope"] - e) <= tol for f, e in zip(fits, targets)]
    outside = [f["ci_high"] < e - tol or f["ci_low"] > e + tol for f, e in zip(fits, targets)]
    return verdict(bool(fits) and all(within), any(outside))


def _rate_claim(id: str, statement: str, fits: list[dict], expected: float, tol: float) -> dict:
    """Slopes of the curves with a truncation window; curves without one are listed."""
    fitted = [f for f in fits if f["window"]]
    measured = "; ".join(f"{_label(f)}: {_interval(f)}" for f in fitted)
    missing = [_label(f) for f in fits if not f["window"]]
    if missing:
        measured += f"; no truncation window: {', '.join(missing)}"
    return _claim(id, statement, f"slope {expected:g} +- {tol:g} on every curve with a truncation window",
                 measured, _slope_verdict(fitted, expected, tol))


def _exactness_claim(fits: list[dict]) -> dict:
    quad = [f for f in fits if f["family"] == "quadratic"]
    mismatched = [_label(f) for f in quad if f["predicted_exact"] == bool(f["window"])]
    return _claim(
        "quadratic_exactness",
        "On quadratic tasks y_J(t) is a polynomial of degree J in delta: a scheme exact on degree d "
        "(forward 1, symmetric and complex 2, order 4: 4) has no truncation error iff J <= d (solve: never)",
        "no truncation window exactly on the predicted curves, a window on every other",
        f"{len(quad) - len(mismatched)}/{len(quad)} quadratic curves as predicted; no window: "
        + ", ".join(_label(f) for f in quad if not f["window"])
        + (f"; mismatched: {', '.join(mismatched)}" if mismatched else ""),
        verdict(bool(quad) and not mismatched, any(f["predicted_exact"] and f["window"] for f in quad)))


def _eps_claim(eps_fits: list[dict], tol: float) -> dict:
    fits = [e[k] for e in eps_fits for k in ("best", "prescribed") if k in e]
    expected = [e["expected_slope"] for e in eps_fits for k in ("best", "prescribed") if k in e]
    return _claim(
        "eps_rates",
        "With eps-accurate perturbed solutions the best attainable error is O(eps^(1/2)) forward and "
        "O(eps^(2/3)) symmetric: the reading of the paper's O(delta^(2/3))",
        f"slope p/(p+1) +- {tol:g} (1/2 forward, 2/3 symmetric) of the error against eps, at the best "
        "delta of the grid and at the prescribed delta*(eps)",
        "; ".join(f"{e['family']} {e['scheme']}: best {_interval(e['best'])}"
                  + (f", at delta* {_interval(e['prescribed'])}" if "prescribed" in e else "") for e in eps_fits),
        _slope_verdict(fits, expected, tol))


def _baseline_claim(fits: list[dict], baselines: list[dict], factor: float) -> dict:
    best = {}
    for f in fits:
        best[f["family"], f["K"]] = min(best.get((f["family"], f["K"]), math.inf), f["best_error"])
    rows = [(b, best[b["family"], b["K"]]) for b in baselines if (b["family"], b["K"]) in best]
    return _claim(
        "baselines_irreducible",
        "FO-MAML and Reptile have a bias that no step size removes: their error stays far above FO-B-MAML's",
        f"lower 95% bound of each baseline's error >= {factor:g} x the best FO-B-MAML error (same family, K)",
        "; ".join(f"{b['family']} K={b['K']} {b['estimator']}: {b['error']:.3g} [{b['ci_low']:.3g}, "
                  f"{b['ci_high']:.3g}] vs FO-B {fob:.2g}" for b, fob in rows),
        verdict(bool(rows) and all(b["ci_low"] >= factor * fob for b, fob in rows),
                any(b["ci_high"] <= fob for b, fob in rows)))


def _complex_claim(fits: list[dict], floor: float) -> dict:
    pairs = [(f, _find(fits, family=f["family"], scheme="complex", J=f["J"], K=f["K"]))
             for f in fits if f["scheme"] == "symmetric" and f["window"]]
    pairs = [(sym, cx) for sym, cx in pairs if cx is not None]
    return _claim(
        "complex_step_beyond_floor",
        "The complex step has no subtractive cancellation: its best error goes below the symmetric scheme's "
        "roundoff floor",
        f"complex best error <= {floor:g} and <= symmetric best / 100 (every curve pair where the symmetric "
        "scheme has a truncation window)",
        "; ".join(f"{_label(cx)}: {cx['best_error']:.2g} vs symmetric {sym['best_error']:.2g}" for sym, cx in pairs),
        verdict(bool(pairs) and all(cx["best_error"] <= min(floor, sym["best_error"] / 100) for sym, cx in pairs),
                any(cx["best_error"] >= sym["best_error"] for sym, cx in pairs)))


def _float64_claim(eps_fits: list[dict], factor: float) -> dict:
    rows = [e for e in eps_fits if "float64_model" in e and e["float64_measured"] is not None]
    ratios = [e["float64_measured"] / e["float64_model"] for e in rows]
    return _claim(
        "float64_floor",
        "In float64 the best attainable error is the eps = eps_mach instance of the regime-2 law "
        "(p+1) C^(1/(p+1)) (|c| eps_mach / p)^(p/(p+1)): eps_mach^(1/2) forward and eps_mach^(2/3) symmetric "
        "times the problem scale",
        f"measured best float64 error (J = K = 1) within a factor {factor:g} of the prediction",
        "; ".join(f"{e['family']} {e['scheme']}: measured {e['float64_measured']:.2g} vs predicted "
                  f"{e['float64_model']:.2g} (bare eps_mach^(p/(p+1)) = {e['float64_bare']:.2g})" for e in rows),
        verdict(bool(ratios) and all(1 / factor <= r <= factor for r in ratios),
                any(not 1 / factor**2 <= r <= factor**2 for r in ratios)))


def _constants_claim(constants: list[dict], tol: float) -> dict:
    return _claim(
        "symbolic_constants",
        "On the 1-D cosine task the measured (estimate - grad Phi) / delta^p equals the exact leading "
        "constant c_p derived by sympy, sign included",
        f"|measured / c_p - 1| <= {tol:g} on every task, scheme and J",
        "; ".join(f"{c['scheme']} J={c['J']} (delta {c['delta']:g}): max {c['max_deviation']:.1e}, "
                  f"median {c['median_deviation']:.1e}" for c in constants),
        verdict(bool(constants) and all(c["max_deviation"] <= tol and c["signs_agree"] for c in constants),
                any(c["median_deviation"] > tol or not c["signs_agree"] for c in constants)))


def _stencil_claims(pairs: list[dict], tol: float) -> list[dict]:
    measured = [e for e in pairs if "equal_delta" in e]
    missing = [f"{e['family']} J={e['J']} p={e['order']}" for e in pairs if "equal_delta" not in e]
    bounds = [(e["expected_ratio"] * (1 - tol), e["expected_ratio"] * (1 + tol)) for e in measured]
    equal_delta = _claim(
        "centred_stencils_equal_delta",
        "At equal delta and the same p perturbed solves, the centred odd stencils (F2SA-p's offsets -1..2 and "
        "-2..3) cut the error of the one-sided ones (0..p) by the ratio of their leading constants: 1/12 vs 1/4 at "
        "p = 3, 1/60 vs 1/6 at p = 5",
        f"geometric-mean ratio centred / one-sided at the smallest delta inside both truncation windows within "
        f"+-{tol:.0%} of 1/3 (p = 3) and 1/10 (p = 5), 95% interval over tasks",
        "; ".join(f"{e['family']} J={e['J']} p={e['order']}: {e['equal_delta']['ratio']:.3f} "
                  f"[{e['equal_delta']['ci_low']:.3f}, {e['equal_delta']['ci_high']:.3f}] at delta "
                  f"{e['equal_delta']['delta']:g} (expected {e['expected_ratio']:.3f})" for e in measured)
        + (f"; no common truncation window: {', '.join(missing)}" if missing else ""),
        verdict(bool(measured) and not missing
                and all(lo <= e["equal_delta"]["ratio"] <= hi for e, (lo, hi) in zip(measured, bounds)),
                any(e["equal_delta"]["ci_high"] < lo or e["equal_delta"]["ci_low"] > hi
                    for e, (lo, hi) in zip(measured, bounds))))
    equal_cost = _claim(
        "centred_stencils_equal_cost",
        "At equal cost (the same p perturbed solves, each stencil at its own best delta) the centred odd stencils "
        "reach a lower float64 error than the one-sided ones, as the noise model (C_c / C_o)^(1/(p+1)) "
        "(|c_c| / |c_o|)^(p/(p+1)) predicts",
        "best error centred / one-sided < 1 on every family, J and p",
        "; ".join(f"{e['family']} J={e['J']} p={e['order']}: {e['equal_cost']['ratio']:.2f} ("
                  f"{e['equal_cost']['best_error'][str(e['order'])]:.2g} vs "
                  f"{e['equal_cost']['best_error']['onesided' + str(e['order'])]:.2g}"
                  + (f"; model {e['equal_cost']['model_ratio']:.2f}" if "model_ratio" in e["equal_cost"] else "") + ")"
                  for e in pairs),
        verdict(bool(pairs) and all(e["equal_cost"]["ratio"] < 1 for e in pairs),
                any(e["equal_cost"]["ratio"] > 1 for e in pairs)))
    return [equal_delta, equal_cost]


def make_claims(summary: dict, cfg: dict) -> list[dict]:
    """Every verdict computed from the fitted numbers and their intervals."""
    fits, tol = summary["fits"], cfg["tolerance"]
    inexact = [f for f in fits if not f["predicted_exact"]]
    return [
        _rate_claim("forward_rate", "Forward FO-B-MAML has bias O(delta): error slope 1 in delta (every J and K)",
                    [f for f in inexact if f["scheme"] == "forward"], 1.0, tol["delta"]),
        _rate_claim("symmetric_rate", "Symmetric FO-B-MAML has bias O(delta^2) with exact solves (J = solve), "
                    "and with J fixed-point iterations: error slope 2 in delta",
                    [f for f in inexact if f["scheme"] == "symmetric"], 2.0, tol["delta"]),
        _rate_claim("order4_rate", "The order-4 central stencil has bias O(delta^4)",
                    [f for f in inexact if f["scheme"] == 4], 4.0, tol["order4"]),
        _exactness_claim(fits),
        _eps_claim(summary["eps"], tol["eps"]),
        _float64_claim(summary["eps"], cfg["float64_factor"]),
        _baseline_claim(fits, summary["baselines"], cfg["irreducible_factor"]),
        _complex_claim(fits, cfg["complex_floor"]),
        _constants_claim(summary["constants"], tol["constant"]),
        _kink_claim(summary["kinks"], cfg),
        *_stencil_claims(summary["stencils"], tol["stencil_ratio"]),
    ]


def _kink_claim(kinks: list[dict], cfg: dict) -> dict:
    plain = [k for k in kinks if not k["frozen"]]
    frozen = [k for k in kinks if k["frozen"]]
    stuck = [min(k["max"]) >= cfg["kink_error"] for k in plain]
    rates = [k["window"] is not None and abs(k["slope"] - scheme_order(k["scheme"])) <= cfg["tolerance"]["delta"]
             for k in frozen]
    return claim(
        "kinks_frozen_patterns",
        "On piecewise-smooth tasks (regression through a ReLU), half of them evaluated next to a kink, plain "
        "differences do not converge in the tail over tasks, and freezing the anchor's activation pattern restores "
        "the rates O(delta) forward and O(delta^2) symmetric",
        f"plain: maximum error over tasks >= {cfg['kink_error']:g} at every delta; frozen: slope p +- "
        f"{cfg['tolerance']['delta']} over all tasks (p = 1 forward, 2 symmetric)",
        "; ".join([f"plain {k['scheme']}: max error >= {min(k['max']):.2g} (median down to {min(k['median']):.2g})"
                   for k in plain] + [f"frozen {k['scheme']}: slope {_interval(k) if k['window'] else 'no window'}, "
                                      f"max error down to {min(k['max']):.2g}"
                                      for k in frozen]),
        verdict(all(stuck) and all(rates), not all(rates) or not any(stuck)))


def run(cfg: dict) -> dict:
    check_config(cfg)
    names = ({n for s in cfg["sweeps"] for n in s["families"]} | set(cfg["eps_families"]) | set(cfg["stencil_families"])
             | {"cosine"})
    families = {n: Family(n, cfg["n_tasks"], cfg["dim"], cfg["seed"]) for n in FAMILIES if n in names}
    records: list[dict] = []
    fits = delta_sweeps(families, cfg, records)
    summary = {
        "fits": fits,
        "baselines": baselines(families, cfg, records),
        "eps": eps_sweeps(families, cfg, fits, records),
        "constants": constants(families["cosine"], cfg, records),
        "kinks": kink_sweeps(cfg, records),
        "stencils": stencil_pairs(families, cfg, records),
        "eps_mach": EPS64,
    }
    return make_results(NAME, cfg, records, summary, make_claims(summary, cfg), device=cfg["device"])


# ---------------------------------------------------------------------------------------------
# figure (from the results alone)

SCHEME_NAMES = {"forward": "forward", "symmetric": "symmetric", 4: "order 4", "complex": "complex step"}
BASELINE_NAMES = {"fo_maml": "FO-MAML", "reptile": "Reptile"}
FAMILY_MARKERS = {"quadratic": "D", "logistic": "o", "cosine": "s"}


def _color(scheme) -> str:
    return METHOD_COLORS[ESTIMATORS[scheme]]


def _grouped(records: list[dict], x: str, point=None, **key) -> tuple[np.ndarray, np.ndarray]:
    """``(x values, geometric mean of the error over tasks)`` of the records matching key;
    regime-1 rows have no ``point``, regime-2 rows ``best`` / ``prescribed``."""
    groups: dict = {}
    for r in records:
        if r.get("point") == point and r[x] is not None and all(r[k] == v for k, v in key.items()):
            groups.setdefault(r[x], []).append(r["error"])
    xs = np.array(sorted(groups))
    return xs, np.array([geometric_mean(np.array(groups[v])) for v in xs])


def _fit_line(ax, fit: dict, color: str):
    """The fitted power law over its window, thick and translucent under the data."""
    lo, hi = fit["window"]
    d = np.geomspace(lo, hi, 20)
    ax.plot(d, fit["constant"] * d ** fit["slope"], color=color, linewidth=6, alpha=0.25, solid_capstyle="round")


def _slope_label(ax, x0: float, y0: float, slope: float, decades: float, text: str):
    """A grey dashed reference line of the given slope from ``(x0, y0)``, labelled at its start."""
    reference_slope(ax, x0, y0, slope, decades=decades)
    ax.text(x0, y0, f"{text} ", color="grey", fontsize=8, ha="right", va="center")


def _panel_exact_solves(ax, results: dict, family: str = "logistic"):
    records, summary = results["records"], results["summary"]
    for scheme in SCHEME_NAMES:
        fit = _find(summary["fits"], family=family, scheme=scheme, J="solve", K=1)
        if fit is None:
            continue
        d, e = _grouped(records, "delta", family=family, scheme=scheme, J="solve", K=1)
        label = f"{SCHEME_NAMES[scheme]}: slope {_interval(fit)}" if fit["window"] else f"{SCHEME_NAMES[scheme]}: no window"
        ax.plot(d, e, marker="o", markersize=3, color=_color(scheme), label=label)
        if fit["window"]:
            _fit_line(ax, fit, _color(scheme))
            if scheme != "complex":  # 30x above the window's start
                x0, p = fit["window"][0], scheme_order(scheme)
                _slope_label(ax, x0, 30 * fit["constant"] * x0 ** fit["slope"], p,
                             min(2.0, np.log10(fit["window"][1] / x0)), f"slope {p}")
    forward = _find(summary["fits"], family=family, scheme="forward", J="solve", K=1)
    if forward is not None:
        d = np.array(results["config"]["deltas"])
        ax.plot(d, forward["roundoff"] / d, ":", color="black", label=f"roundoff floor R/delta (R = {forward['roundoff']:.1g})")
    ax.axhline(EPS64, color="grey", linewidth=0.8, linestyle=":")
    ax.text(2e-9, EPS64 * 1.6, "eps_mach", color="grey", fontsize=8)
    for b in summary["baselines"]:
        if b["family"] == family and b["K"] == 1:
            ax.axhline(b["error"], color=METHOD_COLORS[b["estimator"]], linestyle="--", linewidth=1.2,
                       label=f"{BASELINE_NAMES[b['estimator']]} (no delta): {b['error']:.2g}")
    ax.set(xscale="log", yscale="log", ylim=(1e-17, 1e6), xlabel="delta (perturbation size)",
           ylabel="relative error |g - grad Phi| / |grad Phi|",
           title=f"(a) Exact solves (J = solve), {family} tasks, K = 1\nthick: fitted window; 95% CI over tasks")


def _panel_exactness(ax, results: dict):
    records, fits = results["records"], results["summary"]["fits"]
    quad = [f for f in fits if f["family"] == "quadratic" and f["K"] == 1 and f["J"] != "solve" and f["scheme"] != "complex"]
    for scheme in SCHEME_NAMES:
        own = [f for f in quad if f["scheme"] == scheme]
        exact = max((f for f in own if f["predicted_exact"]), key=lambda f: f["J"], default=None)
        inexact = min((f for f in own if not f["predicted_exact"]), key=lambda f: f["J"], default=None)
        for fit in (exact, inexact):
            if fit is None:
                continue
            d, e = _grouped(records, "delta", family="quadratic", scheme=scheme, J=fit["J"], K=1)
            if fit["window"]:
                label, style_ = f"{SCHEME_NAMES[scheme]} J={fit['J']}: slope {fit['slope']:.2f}", "-"
                _fit_line(ax, fit, _color(scheme))
            else:
                label, style_ = f"{SCHEME_NAMES[scheme]} J={fit['J']}: no truncation window (exact)", ":"
            ax.plot(d, e, linestyle=style_, marker="o", markersize=3, color=_color(scheme), label=label)
    ax.axhline(EPS64, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xscale="log", yscale="log", ylim=(1e-17, 1e6), xlabel="delta (perturbation size)",
           ylabel="relative error |g - grad Phi| / |grad Phi|",
           title="(b) Quadratic tasks, K = 1: y_J(t) has degree J in delta; exact iff\n"
                 "J <= the scheme's degree (forward 1, symmetric 2, order 4: 4)")


def _panel_eps(ax, results: dict):
    records, summary = results["records"], results["summary"]
    for e in summary["eps"]:
        color, marker = _color(e["scheme"]), FAMILY_MARKERS[e["family"]]
        key = dict(family=e["family"], scheme=e["scheme"])
        eps, best = _grouped(records, "eps", point="best", **key)
        ax.plot(eps, best, marker=marker, markersize=4, color=color,
                label=f"{e['family']} {e['scheme']}: slope {_interval(e['best'])}")
        if "prescribed" in e:
            eps, star = _grouped(records, "eps", point="prescribed", **key)
            ax.plot(eps, star, linestyle="--", linewidth=1, color=color, alpha=0.7)
        if e["float64_measured"] is not None:
            ax.plot([EPS64], [e["float64_measured"]], marker="*", markersize=11, color=color, markeredgecolor="black",
                    linestyle="none")
        if "float64_model" in e:
            ax.plot([EPS64], [e["float64_model"]], marker="x", markersize=7, color=color, linestyle="none")
    for p in sorted({e["order"] for e in summary["eps"]}):  # a decade below the lowest curve of order p
        x0, slope = 1e-13, p / (p + 1)
        y0 = 0.1 * min(e["best"]["constant"] * x0 ** e["best"]["slope"] for e in summary["eps"] if e["order"] == p)
        _slope_label(ax, x0, y0, slope, 4, f"slope {p}/{p + 1}")
    ax.axvline(EPS64, color="grey", linewidth=0.8, linestyle=":")
    ax.plot([], [], linestyle="--", color="grey", label="dashed: at the prescribed delta*(eps)")
    ax.plot([], [], marker="*", color="white", markeredgecolor="black", markersize=11, linestyle="none",
            label="star: float64 best (exact solves), at eps_mach")
    ax.plot([], [], marker="x", color="black", markersize=7, linestyle="none",
            label="x: float64 floor predicted by the eps law")
    ax.set(xscale="log", yscale="log", xlabel="eps (accuracy of the perturbed solutions, relative to |grad Phi|)",
           ylabel="relative error at the best delta",
           title="(c) Inexact solves (J = K = 1): error C delta^p + |c| eps / delta\n"
                 "best over delta: O(eps^(1/2)) forward, O(eps^(2/3)) symmetric")


def _panel_constants(ax, results: dict):
    rows = [r for r in results["records"] if r.get("point") == "constant"]
    for scheme, J in dict.fromkeys((r["scheme"], r["J"]) for r in rows):
        own = [r for r in rows if r["scheme"] == scheme and r["J"] == J]
        c = np.array([r["symbolic_constant"] for r in own])
        dev = np.abs(np.array([r["measured_constant"] for r in own]) / c - 1)
        ax.scatter(np.abs(c), np.maximum(dev, 1e-12), s=18, color=_color(scheme), marker="o" if J == 1 else "^",
                   label=f"{SCHEME_NAMES[scheme]} J={J} (delta {own[0]['delta']:g})", alpha=0.8)
    tol = results["config"]["tolerance"]["constant"]
    ax.axhline(tol, color="tab:red", linewidth=1, label=f"tolerance {tol:.0%}")
    agree = sum(np.sign(r["measured_constant"]) == np.sign(r["symbolic_constant"]) for r in rows)
    ax.set(xscale="log", yscale="log", ylim=(None, 1e3), xlabel="|c_p| (sympy leading constant)",
           ylabel="|measured (g - grad Phi) / delta^p  /  c_p  -  1|",
           title=f"(d) Leading constants on the 1-D cosine task vs sympy\nsigns agree on {agree}/{len(rows)}")


def _panel_kinks(ax, results: dict):
    deltas = results["config"]["deltas"]
    for k in results["summary"]["kinks"]:
        color = _color(k["scheme"])
        name = f"{'frozen' if k['frozen'] else 'plain'} {SCHEME_NAMES[k['scheme']]}"
        style_ = "-" if k["frozen"] else "--"
        ax.plot(deltas, k["max"], style_, marker="o", markersize=3, color=color, label=f"{name}: max over tasks")
        ax.plot(deltas, k["median"], style_, linewidth=0.8, alpha=0.5, color=color)
    ax.plot([], [], color="grey", linewidth=0.8, alpha=0.5, label="thin: median over tasks")
    ax.axhline(EPS64, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xscale="log", yscale="log", xlabel="delta (perturbation size)",
           ylabel="relative error |g - grad Phi| / |grad Phi|",
           title=f"(e) ReLU regression, half the points {results['config']['kink_gap']:g} from a kink:\n"
                 "plain differences measure the jump / delta; frozen patterns keep the rates")


STENCIL_COLORS = {3: "tab:olive", 5: "tab:cyan"}


def _panel_stencils(ax, results: dict, family: str = "logistic", J="solve"):
    for e in results["summary"]["stencils"]:
        if e["family"] != family or e["J"] != J:
            continue
        p, color = e["order"], STENCIL_COLORS[e["order"]]
        for scheme, style_ in ((p, "-"), (f"onesided{p}", "--")):
            d, err = _grouped(results["records"], "delta", point="stencil", family=family, scheme=scheme, J=J, K=1)
            offsets = stencil_for(scheme).offsets
            ax.plot(d, err, style_, marker="o", markersize=3, color=color,
                    label=f"p = {p}, offsets {offsets[0]}..{offsets[-1]}: best {e['equal_cost']['best_error'][str(scheme)]:.2g}")
        if "equal_delta" in e:
            q = e["equal_delta"]
            ax.axvline(q["delta"], color=color, linewidth=0.8, linestyle=":")
            ax.plot([], [], " ", label=f"   ratio at delta {q['delta']:g}: {q['ratio']:.3f} (moments: {e['expected_ratio']:.3g}); "
                                      f"at equal cost {e['equal_cost']['ratio']:.2f}")
    ax.axhline(EPS64, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xscale="log", yscale="log", ylim=(1e-17, 1e3), xlabel="delta (perturbation size)",
           ylabel="relative error |g - grad Phi| / |grad Phi|",
           title=f"(f) Odd orders, same p perturbed solves: centred (solid, F2SA-p's)\n"
                 f"against one-sided (dashed), {family} tasks, J = {J}, K = 1")


def plot(results: dict, out_dir) -> list[Path]:
    with style():
        fig, axes = panels(6, width=6.6, height=5.2, cols=2)
        _panel_exact_solves(axes[0], results)
        _panel_exactness(axes[1], results)
        _panel_eps(axes[2], results)
        _panel_constants(axes[3], results)
        _panel_kinks(axes[4], results)
        _panel_stencils(axes[5], results)
        for ax, loc, ncol in zip(axes, ("upper left", "upper left", "lower right", "upper left", "upper right",
                                        "upper left"), (1, 1, 1, 2, 1, 1)):
            ax.legend(loc=loc, ncol=ncol, frameon=True, framealpha=0.9, edgecolor="none")
        fig.tight_layout()
        mark_quick(fig, results)
        path = save_figure(fig, Path(out_dir) / f"{NAME}.png")
        close(fig)
    return [path]
