"""FO-B and F2SA-p on a bilevel family with closed forms: identity, O(delta^p) rates, eps law.

Tasks (:mod:`fobtheory.bilevel`): ridge regression with a learned per-feature regulariser,
float64, the exact hypergradient by a linear solve. Every error is relative,
``|estimate - grad Phi| / |grad Phi|``.

- **identity**: FO-B's estimator ``(1/delta) sum_j c_j G(s_j delta)`` (exact perturbed solves
  ``argmin g + t F``) against F2SA-p's combination of penalty gradients at ``lambda_j =
  lambda / s_j`` with ``lambda = 1/delta`` (stationary points of ``F + lambda_j g``, another
  linear system): equal in exact arithmetic, so their difference is measured against the
  roundoff of the two solves, ``kappa eps_mach sum_j |c_j| |G(s_j delta)| / delta`` (kappa the
  largest condition number of the perturbed Hessians ``H + t B``).
- **rates**: error against delta for p = 1, 2, 3, 5, 8 (and the one-sided odd stencils), slopes
  by :func:`fobtheory.rates.fit_rate` inside the truncation window with a bootstrap 95% interval
  over tasks. Deltas whose stencil reaches ``radius_fraction`` of the series radius of some task
  (``max|s_j| delta >= radius_fraction / lambda_max(H^-1 B)``) are not run.
- **inexact solves**: each perturbed solve is T gradient-descent steps on ``g + t F`` from its
  own random start (as from a fresh initialisation). Its error is random across the stencil's
  points, so the estimate's error is ``C delta^p + |c| eps / delta`` with eps the relative
  accuracy of G after T steps (measured on separate solves at t = 0); the best common delta
  of the grid gives ``O(eps^(p/(p+1)))``, fitted against eps over the step counts.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fobtheory.bilevel import f2sa_p, fob_hypergrad, ridge_tasks
from fobtheory.checks import integer, positive
from fobtheory.intervals import t_interval
from fobtheory.plotting import close, panels, reference_slope, style
from fobtheory.progress import track
from fobtheory.rates import EPS64, RESOLUTION, fit_rate, fit_slope, geometric_mean
from fobtheory.results import claim, make_results, save_figure, verdict
from fobtheory.stencils import scheme_order, stencil_for

NAME = "bilevel"
ORDER_COLORS = {1: "tab:blue", 2: "tab:orange", 3: "tab:green", 5: "tab:red", 8: "tab:purple"}


def _log_grid(low: float, high: float, per_decade: float) -> list[float]:
    n = round(math.log10(high / low) * per_decade) + 1
    return [float(f"{d:.3g}") for d in np.geomspace(low, high, n)]


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    return {
        "seed": seed,
        "device": "cpu",  # closed-form numpy problems in float64
        "n_tasks": 5 if quick else 20,
        "dim": 5 if quick else 10,
        "mu": 0.1,
        "deltas": _log_grid(1e-6, 0.3, 6 if quick else 8),
        "radius_fraction": 0.5,
        "schemes": [1, 2, 3, 5, 8, "onesided3", "onesided5"],
        "eps_schemes": [1, 2] if quick else [1, 2, 3],
        "eps_deltas": _log_grid(1e-6, 0.3, 3 if quick else 4),
        "steps": list(range(2, 201, 8 if quick else 3)),  # gradient steps per perturbed solve
        "eps_range": [1e-12, 1e-3],
        "floor_factor": 100.0,
        "max_error": 1e-2,
        "n_boot": 200 if quick else 1000,
        "tolerance": {"rate": 0.1, "high_order": 0.25, "eps": 0.08, "identity": 10.0},
    }


def check_config(cfg: dict) -> dict:
    """Validate the parameters that ``run`` reads; each error names the parameter and its range."""
    integer("n_tasks", cfg["n_tasks"], 2)
    integer("dim", cfg["dim"])
    integer("n_boot", cfg["n_boot"])
    if not (math.isfinite(cfg["mu"]) and cfg["mu"] >= 0):
        raise ValueError(f"mu must be a finite number >= 0, got {cfg['mu']!r}")
    for name in ("deltas", "eps_deltas"):
        values = [positive(name, v) for v in cfg[name]]
        if len(values) < 4 or values != sorted(values):
            raise ValueError(f"{name} must be an increasing list of at least 4 numbers > 0, got {cfg[name]!r}")
    fraction = positive("radius_fraction", cfg["radius_fraction"])
    if fraction >= 1:
        raise ValueError(f"radius_fraction must lie in (0, 1), got {fraction}")
    for scheme in cfg["schemes"] + cfg["eps_schemes"]:
        stencil_for(scheme)
    for s in cfg["steps"]:
        integer("steps", s)
    low, high = (positive("eps_range", e) for e in cfg["eps_range"])
    if not low < high < 1:
        raise ValueError(f"eps_range must be [low, high] with 0 < low < high < 1, got {cfg['eps_range']!r}")
    return cfg


# ---------------------------------------------------------------------------------------------
# measurements


def _errors(estimate: np.ndarray, exact: np.ndarray) -> np.ndarray:
    return np.linalg.norm(estimate - exact, axis=-1) / np.linalg.norm(exact, axis=-1)


def _reach(scheme) -> int:
    return max(abs(s) for s in stencil_for(scheme).offsets)


def _runnable(scheme, deltas, radius: float, fraction: float) -> list[float]:
    return [d for d in deltas if _reach(scheme) * d < fraction * radius]


def _roundoff_scale(problem, x, scheme, delta: float) -> np.ndarray:
    """``kappa eps_mach sum_j |c_j| |G(s_j delta)| / delta`` per task: the size of a roundoff
    difference between two backward-stable solutions of the perturbed problems."""
    stencil = stencil_for(scheme)
    t = delta * np.array(stencil.offsets, dtype=np.float64)
    w = problem.lower_solution(x, t)
    G = problem.lower_grad_x(x, w) + t[None, :, None] * problem.upper_grad_x(x, w)
    kappa = np.linalg.cond(problem.perturbed_hessian(x, t)).max(axis=1)
    return kappa * EPS64 * np.einsum("j,bj->b", np.abs(stencil.float_weights), np.linalg.norm(G, axis=-1)) / delta


def delta_sweeps(problem, x, cfg: dict, records: list) -> tuple[list[dict], list[dict]]:
    """Per scheme: FO-B and F2SA-p over the runnable deltas; the rate fit of FO-B's errors
    and the identity ratios."""
    exact = problem.hypergrad(x)
    radius = float(problem.radius(x).min())
    fits, identity = [], []
    for scheme in track(cfg["schemes"], desc="bilevel: error vs delta", unit="scheme", leave=False):
        deltas = _runnable(scheme, cfg["deltas"], radius, cfg["radius_fraction"])
        E, ratios, differences = [], [], []
        for d in deltas:
            fob = fob_hypergrad(problem, x, delta=d, scheme=scheme)
            f2sa = f2sa_p(problem, x, lam=1 / d, scheme=scheme)
            err = _errors(fob, exact)
            diff = np.linalg.norm(fob - f2sa, axis=-1) / np.linalg.norm(exact, axis=-1)
            ratio = np.linalg.norm(fob - f2sa, axis=-1) / _roundoff_scale(problem, x, scheme, d)
            E.append(err), ratios.append(ratio), differences.append(diff)
            records += [{"family": "ridge", "task": b, "estimator": "fob", "scheme": scheme, "delta": d, "eps": 0,
                         "steps": None, "error": float(f"{err[b]:.4g}"), "f2sa_difference": float(f"{diff[b]:.4g}"),
                         "identity_ratio": float(f"{ratio[b]:.4g}")} for b in range(len(err))]
        E = np.maximum(np.array(E).T, RESOLUTION)  # tasks x deltas
        fit = fit_rate(deltas, E, floor_factor=cfg["floor_factor"], max_error=cfg["max_error"],
                       n_boot=cfg["n_boot"], seed=cfg["seed"])
        curve = geometric_mean(E)
        fits.append({"scheme": scheme, "order": scheme_order(scheme), "deltas": deltas, **fit.as_dict(),
                     "best_error": float(curve.min()), "best_delta": float(deltas[int(np.argmin(curve))]),
                     "deltas_skipped": [d for d in cfg["deltas"] if d not in deltas]})
        identity.append({"scheme": scheme, "max_ratio": float(np.max(ratios)), "median_ratio": float(np.median(ratios)),
                         "max_difference": float(np.max(differences))})
    return fits, identity


def eps_sweeps(problem, x, cfg: dict, records: list) -> list[dict]:
    """Inexact solves: T gradient steps per solve from its own random start. Per task and T:
    eps(T), the accuracy of G measured on separate solves at t = 0 (geometric mean over
    probes), and the error at that task's best delta of the grid. Tasks contract at their own
    rates, so each task's slope of log best error against log eps is fitted over its own
    points with eps in ``eps_range``; the claim is the mean slope with a t interval over tasks."""
    exact = problem.hypergrad(x)
    scale = np.linalg.norm(exact, axis=-1)
    G0 = problem.lower_grad_x(x, problem.lower_solution(x, 0.0))[:, 0]
    radius = float(problem.radius(x).min())
    rng = np.random.default_rng([cfg["seed"], 1])
    width = np.linalg.norm(problem.lower_solution(x, 0.0), axis=-1, keepdims=True) / math.sqrt(problem.dim)
    start = lambda m: width * rng.standard_normal((problem.n_tasks, m, problem.dim))  # noqa: E731
    probes = 8
    at_zero = problem.descent_iterates(x, np.zeros(probes), cfg["steps"], start(probes))
    eps = np.array([geometric_mean(np.linalg.norm(problem.lower_grad_x(x, at_zero[T]) - G0[:, None], axis=-1)
                                   / scale[:, None], axis=1) for T in cfg["steps"]]).T  # tasks x steps
    low, high = cfg["eps_range"]
    out = []
    for scheme in track(cfg["eps_schemes"], desc="bilevel: best error vs eps", unit="scheme", leave=False):
        stencil = stencil_for(scheme)
        deltas = _runnable(scheme, cfg["eps_deltas"], radius, cfg["radius_fraction"])
        t = np.concatenate([d * np.array(stencil.offsets, dtype=np.float64) for d in deltas])
        paths = problem.descent_iterates(x, t, cfg["steps"], start(len(t)))
        best = np.empty_like(eps)
        for k, T in enumerate(cfg["steps"]):
            W = paths[T].reshape(problem.n_tasks, len(deltas), len(stencil.offsets), problem.dim)
            E = np.array([_errors(fob_hypergrad(problem, x, delta=d, scheme=scheme,
                                                solve=lambda _x, _t, i=i: W[:, i]), exact)
                          for i, d in enumerate(deltas)]).T  # tasks x deltas
            best[:, k] = E.min(axis=1)
            records += [{"family": "ridge", "task": b, "estimator": "fob", "scheme": scheme,
                         "delta": deltas[int(np.argmin(E[b]))], "eps": float(f"{eps[b, k]:.4g}"), "steps": T,
                         "error": float(f"{best[b, k]:.4g}"), "point": "best"} for b in range(problem.n_tasks)]
        slopes = []
        for b in range(problem.n_tasks):
            keep = (eps[b] >= low) & (eps[b] <= high)
            if keep.sum() >= 4:
                slopes.append(fit_slope(eps[b, keep], np.maximum(best[b, keep], RESOLUTION))[0])
        p = scheme_order(scheme)
        out.append({"scheme": scheme, "order": p, "expected_slope": p / (p + 1), "task_slopes": slopes,
                    "tasks_fitted": len(slopes), **t_interval(slopes)})
    return out


# ---------------------------------------------------------------------------------------------
# claims


def _interval(fit: dict) -> str:
    return f"{fit['slope']:.3f} [{fit['ci_low']:.3f}, {fit['ci_high']:.3f}]"


def _slope_verdict(fits: list[dict], expected: list[float], tols: list[float]) -> str:
    within = [f["window"] is not None and abs(f["slope"] - e) <= t for f, e, t in zip(fits, expected, tols)]
    outside = [f["window"] is not None and (f["ci_high"] < e - t or f["ci_low"] > e + t)
               for f, e, t in zip(fits, expected, tols)]
    return verdict(bool(fits) and all(within), any(outside))


def _rate_tol(p: int, tol: dict) -> float:
    return tol["rate"] if p <= 3 else tol["high_order"]


def make_claims(summary: dict, cfg: dict) -> list[dict]:
    tol = cfg["tolerance"]
    centred = [f for f in summary["fits"] if isinstance(f["scheme"], int)]
    identity = summary["identity"]
    eps = summary["eps"]
    return [
        claim("bilevel_f2sa_identity",
              "On ridge regression with a learned regulariser, F2SA-p's estimator (penalty gradients at "
              "lambda_j = lambda / s_j, weights c_j s_j) equals FO-B's finite difference of perturbed solutions at "
              "delta = 1/lambda, for every stencil: the two differ by roundoff only",
              f"|FO-B - F2SA-p| <= {tol['identity']:g} x kappa eps_mach sum_j |c_j| |G(s_j delta)| / delta at every "
              "task, delta and order",
              "; ".join(f"p={i['scheme']}: max ratio {i['max_ratio']:.2g} (median {i['median_ratio']:.2g}), max "
                        f"|difference| / |grad Phi| {i['max_difference']:.1e}" for i in identity),
              verdict(bool(identity) and all(i["max_ratio"] <= tol["identity"] for i in identity),
                      any(i["max_ratio"] > 100 * tol["identity"] for i in identity))),
        claim("bilevel_rates",
              "FO-B's (and so F2SA-p's) bias on the bilevel family is O(delta^p) for p = 1, 2, 3, 5, 8 (exact solves)",
              f"slope p +- {tol['rate']:g} (p <= 3) or +- {tol['high_order']:g} (p = 5, 8) in the truncation window, "
              "95% interval over tasks",
              "; ".join(f"p={f['scheme']}: " + (f"{_interval(f)} over delta {f['window'][0]:g}..{f['window'][1]:g}"
                                                if f["window"] else "no truncation window") for f in centred),
              _slope_verdict(centred, [f["order"] for f in centred], [_rate_tol(f["order"], tol) for f in centred])),
        claim("bilevel_eps_rates",
              "With a finite number of gradient steps per perturbed solve (each from its own random start), the "
              "solve accuracy eps enters as eps/delta: the best error over delta is O(eps^(p/(p+1)))",
              f"mean over tasks of the slope of log best error against log eps (each task over its points with eps "
              f"in {cfg['eps_range'][0]:g}..{cfg['eps_range'][1]:g}) within p/(p+1) +- {tol['eps']:g}; 95% t interval",
              "; ".join(f"p={e['scheme']}: {e['mean']:.3f} [{e['low']:.3f}, {e['high']:.3f}] over {e['tasks_fitted']} "
                        f"tasks (expected {e['expected_slope']:.3f})" for e in eps),
              _slope_verdict([{"window": 1, "slope": e["mean"], "ci_low": e["low"], "ci_high": e["high"]}
                              for e in eps if e["tasks_fitted"] >= 2],
                             [e["expected_slope"] for e in eps], [tol["eps"]] * len(eps))),
    ]


def run(cfg: dict) -> dict:
    check_config(cfg)
    problem, x = ridge_tasks(cfg["n_tasks"], cfg["dim"], mu=cfg["mu"], seed=cfg["seed"])
    records: list[dict] = []
    fits, identity = delta_sweeps(problem, x, cfg, records)
    summary = {"fits": fits, "identity": identity, "eps": eps_sweeps(problem, x, cfg, records),
               "radius": [float(r) for r in problem.radius(x)], "eps_mach": EPS64}
    return make_results(NAME, cfg, records, summary, make_claims(summary, cfg), device=cfg["device"])


# ---------------------------------------------------------------------------------------------
# figure (from the results alone)


def _curve(records, x: str, **key) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x values, geometric mean of error over tasks, geometric mean of f2sa_difference)``."""
    groups: dict = {}
    for r in records:
        if r.get("point") is None and all(r[k] == v for k, v in key.items()):
            groups.setdefault(r[x], []).append((r["error"], r.get("f2sa_difference", np.nan)))
    xs = np.array(sorted(groups))
    vals = [np.array(groups[v]) for v in xs]
    return xs, np.array([geometric_mean(v[:, 0]) for v in vals]), np.array([geometric_mean(v[:, 1]) for v in vals])


def _color(scheme) -> str:
    return ORDER_COLORS[scheme_order(scheme)]


def _panel_rates(ax, results: dict):
    records, fits = results["records"], results["summary"]["fits"]
    for f in fits:
        d, e, _ = _curve(records, "delta", scheme=f["scheme"])
        one_sided = isinstance(f["scheme"], str)
        name = f"one-sided {f['order']}" if one_sided else f"p = {f['scheme']}"
        label = f"{name}: slope {_interval(f)}" if f["window"] else f"{name}: no window"
        ax.plot(d, e, "--" if one_sided else "-", marker="o", markersize=2.5, color=_color(f["scheme"]), label=label)
        if f["window"] and not one_sided:
            lo, hi = f["window"]
            dd = np.geomspace(lo, hi, 20)
            ax.plot(dd, f["constant"] * dd ** f["slope"], color=_color(f["scheme"]), linewidth=6, alpha=0.25)
    ax.axhline(EPS64, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xscale="log", yscale="log", ylim=(1e-16, 1e5), xlabel="delta = 1 / lambda",
           ylabel="relative error |g - grad Phi| / |grad Phi|",
           title="(a) Exact lower-level solves: bias O(delta^p)\n(dashed: one-sided odd stencils, same solves)")


def _panel_identity(ax, results: dict):
    records = results["records"]
    for f in results["summary"]["fits"]:
        if isinstance(f["scheme"], str):
            continue
        d, _, diff = _curve(records, "delta", scheme=f["scheme"])
        ax.plot(d, np.maximum(diff, RESOLUTION), marker="o", markersize=2.5, color=_color(f["scheme"]),
                label=f"p = {f['scheme']}")
    d = np.array(results["config"]["deltas"])
    reference_slope(ax, d[0], 1e-12, -1, decades=3)
    ax.text(d[0], 1e-13, "slope -1: roundoff / delta", color="grey", fontsize=8, ha="left", va="top")
    ax.axhline(EPS64, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xscale="log", yscale="log", xlabel="delta = 1 / lambda",
           ylabel="|FO-B - F2SA-p| / |grad Phi|",
           title="(b) F2SA-p (penalty form, lambda) vs FO-B (delta):\n"
                 "equal up to the roundoff of the two linear solves")


def _panel_eps(ax, results: dict):
    low, high = results["config"]["eps_range"]
    for e in results["summary"]["eps"]:
        rows = [r for r in results["records"] if r.get("point") == "best" and r["scheme"] == e["scheme"]
                and low <= r["eps"] <= high]
        ax.scatter([r["eps"] for r in rows], [r["error"] for r in rows], s=5, alpha=0.35, color=_color(e["scheme"]),
                   label=f"p = {e['scheme']}: mean slope {e['mean']:.3f} [{e['low']:.3f}, {e['high']:.3f}] "
                         f"(expected {e['order']}/{e['order'] + 1})")
        if rows:  # the expected slope, a decade below this order's lowest point
            x0 = min(r["eps"] for r in rows)
            reference_slope(ax, x0, 0.1 * min(r["error"] for r in rows), e["expected_slope"],
                            decades=math.log10(high / x0))
    ax.set(xscale="log", yscale="log", xlabel="eps (accuracy of G after T gradient steps, relative to |grad Phi|)",
           ylabel="relative error at the task's best delta",
           title="(c) T gradient steps per solve, random starts (dot: task, T)\n"
                 "best error over delta O(eps^(p/(p+1))); grey: slopes p/(p+1)")


def plot(results: dict, out_dir) -> list[Path]:
    with style():
        fig, axes = panels(3, width=6.4, height=5.0, cols=3)
        _panel_rates(axes[0], results)
        _panel_identity(axes[1], results)
        _panel_eps(axes[2], results)
        for ax, loc in zip(axes, ("upper left", "upper right", "lower right")):
            ax.legend(loc=loc, fontsize=8, frameon=True, framealpha=0.9, edgecolor="none")
        fig.tight_layout()
        path = save_figure(fig, Path(out_dir) / f"{NAME}.png")
        close(fig)
    return [path]
