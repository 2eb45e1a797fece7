"""(L0, L1)-smoothness of the one-step MAML objective (docs: Theory, "(L0, L1)-smoothness").

For each family, points on random rays of growing radius around the origin; at each point
and for each task, the exact ``|grad Phi_i|`` and ``|hess Phi_i|_2`` (closed forms; for the
tiny network autograd and Lanczos on Hessian-vector products). The bound is a statement
about each task's objective Phi_i, so the points are per task. Per family: the least
envelope ``L0 + L1 |grad|`` (:func:`fobtheory.smoothness.fit_envelope`) beside theory's
constants, and the growth of ``M(r) = sup |hess|`` over the ball of radius r.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from fobtheory.progress import track

from fobtheory.plotting import close, mark_quick, panels, style
from fobtheory.problems import CosineTask, MetaProblem, logistic_tasks, quadratic_tasks
from fobtheory.results import claim, make_results, save_figure, verdict
from fobtheory.smoothness import covered, fit_envelope, ray_points, task_norms, theory_constants, torch_norms

NAME = "smoothness"
FAMILY_COLORS = {"quadratic": "tab:green", "logistic": "tab:blue", "cosine": "tab:red", "mlp": "tab:purple"}


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    return {
        "seed": seed,
        "device": device,
        "inner_steps": 1,
        "families": {
            "quadratic": {"n_tasks": 2 if quick else 4, "dim": 10, "n_rays": 4 if quick else 8,
                          "r_min": 0.1, "r_max": 1000.0, "n_radii": 9 if quick else 25},
            "logistic": {"n_tasks": 2 if quick else 4, "dim": 10, "n_rays": 4 if quick else 8,
                         "r_min": 0.1, "r_max": 1000.0, "n_radii": 9 if quick else 25},
            "cosine": {"n_tasks": 2 if quick else 4, "alpha": 0.5, "n_rays": 2,
                       "r_min": 0.1, "r_max": 1000.0, "n_radii": 60 if quick else 200},
            # a tanh network on sine regression: torch autograd + Lanczos; f is not globally
            # L-smooth, so theory's constants do not apply
            "mlp": {"n_tasks": 2, "hidden": 6, "n_support": 8, "alpha": 0.05, "n_rays": 2 if quick else 6,
                    "r_min": 0.1, "r_max": 30.0, "n_radii": 5 if quick else 12, "lanczos_tol": 1e-10},
        },
        # "sup |hess| grows without bound": M(r_max) / M(r_min) >= 10 and, over the outer
        # decade of radii, log-log slope of M >= 0.5 (a plateau has slope ~0)
        "growth_factor": 10.0,
        "growth_slope": 0.5,
        "plateau_slope": 0.1,
        "quadratic_rel_L1": 1e-8,
        "positive_rel_L1": 1e-3,
        # every derivative of the loss bounded: Phi is L-smooth (Theory page), so the
        # prediction is L1 = 0 and a bounded sup |hess Phi|, not the (L0, L1) growth
        "bounded_families": ["logistic"],
    }


# ---------------------------------------------------------------------------------------------
# families


def _problem(name: str, spec: dict, seed: int) -> MetaProblem:
    if name == "quadratic":
        return quadratic_tasks(spec["n_tasks"], spec["dim"], seed=seed)
    if name == "logistic":
        return logistic_tasks(spec["n_tasks"], spec["dim"], seed=seed)
    targets = np.random.default_rng(seed).standard_normal(spec["n_tasks"])
    return MetaProblem([CosineTask(alpha=spec["alpha"], target=t) for t in targets])


def mlp_tasks(spec: dict, seed: int, device: str = "cpu"):
    """One-step MAML objectives ``Phi_i(p) = F_i(p - a grad f_i(p))`` of a 1-hidden-layer tanh
    network ``x -> w2 . tanh(w1 x + b1) + b2`` (flat parameters p) on sine-regression tasks
    (amplitude in [1, 2], phase in [0, pi], inputs in [-2, 2]); f_i, F_i are half mean squared
    errors on the support and query sets. Returns ``(list of Phi_i, dim)``."""
    import torch

    h, n, a = spec["hidden"], spec["n_support"], spec["alpha"]
    gen = torch.Generator().manual_seed(seed)

    def uniform(lo, hi, size):
        return (lo + (hi - lo) * torch.rand(size, generator=gen, dtype=torch.float64)).to(device)

    def model(p, x):
        return torch.tanh(x[:, None] * p[:h] + p[h:2 * h]) @ p[2 * h:3 * h] + p[3 * h]

    def objective(amplitude, phase):
        xs, xq = uniform(-2, 2, n), uniform(-2, 2, n)
        ys, yq = amplitude * torch.sin(xs + phase), amplitude * torch.sin(xq + phase)

        def phi(p):
            (g,) = torch.autograd.grad(0.5 * ((model(p, xs) - ys) ** 2).mean(), p, create_graph=True)
            return 0.5 * ((model(p - a * g, xq) - yq) ** 2).mean()

        return phi

    return [objective(uniform(1, 2, ()), uniform(0, math.pi, ())) for _ in range(spec["n_tasks"])], 3 * h + 1


def probe_family(name: str, spec: dict, seed: int, inner_steps: int, device: str) -> tuple[list[dict], tuple | None]:
    """Records ``{family, task, ray, radius, grad_norm, hess_norm}`` and theory's (L0, L1)."""
    if name == "mlp":
        objectives, dim = mlp_tasks(spec, seed, device)
        theory = None
    else:
        problem = _problem(name, spec, seed)
        objectives, dim = problem.tasks, problem.dim
        theory = theory_constants(problem) if inner_steps == 1 else None
    n_radii = spec["n_radii"]
    points, radius = ray_points(dim, np.geomspace(spec["r_min"], spec["r_max"], n_radii), spec["n_rays"], seed=seed + 1)
    records = []
    for i, obj in enumerate(track(objectives, desc=f"smoothness {name}", unit="task", leave=False)):
        if name == "mlp":
            g, h = torch_norms(obj, points, tol=spec["lanczos_tol"], seed=seed, device=device)
        else:
            g, h = task_norms(obj, points, inner_steps)
        records += [{"family": name, "task": i, "ray": j // n_radii, "radius": float(r), "grad_norm": float(gj),
                     "hess_norm": float(hj)} for j, (r, gj, hj) in enumerate(zip(radius, g, h))]
    return records, theory


# ---------------------------------------------------------------------------------------------
# analysis


def ball_sup(radius, hess) -> tuple[np.ndarray, np.ndarray]:
    """``M(r) = max |hess|`` over the points of radius <= r, at each sampled radius."""
    radius, hess = np.asarray(radius), np.asarray(hess)
    radii = np.unique(radius)
    per_radius = np.array([hess[radius == r].max() for r in radii])
    return radii, np.maximum.accumulate(per_radius)


def growth(radius, hess) -> dict:
    """``M(r_max) / M(r_min)`` and the log-log slope of M over the outermost decade."""
    radii, M = ball_sup(radius, hess)
    inner = np.searchsorted(radii, radii[-1] / 10)
    slope = math.log10(M[-1] / M[inner]) / math.log10(radii[-1] / radii[inner]) if radii[-1] > radii[inner] else 0.0
    return {"factor": float(M[-1] / M[0]), "outer_slope": float(slope), "sup_min_radius": float(M[0]),
            "sup_max_radius": float(M[-1])}


def summarize(records: list[dict], theories: dict) -> dict:
    """Per family: the fitted envelope, theory's constants and coverage, the growth of M(r)."""
    out = {}
    for name, theory in theories.items():
        rows = [r for r in records if r["family"] == name]
        g = np.array([r["grad_norm"] for r in rows])
        h = np.array([r["hess_norm"] for r in rows])
        fit = fit_envelope(g, h)
        s = {"fit": fit.as_dict(), "fit_covers_all": bool(covered(g, h, fit.L0, fit.L1).all()),
             "growth": growth([r["radius"] for r in rows], h)}
        if theory is not None:
            s["theory"] = {"L0": theory[0], "L1": theory[1]}
            s["theory_covered_fraction"] = float(covered(g, h, *theory).mean())
            s["theory_max_ratio"] = float((h / (theory[0] + theory[1] * g)).max())
        out[name] = s
    return out


def _claims(summary: dict, cfg: dict) -> list[dict]:
    claims = []
    q = summary["quadratic"]["fit"]
    claims.append(claim(
        "L1_zero_quadratic", "Quadratic tasks: the MAML objective is L-smooth, the fitted L1 vanishes",
        f"L1 max|grad| / max|hess| < {cfg['quadratic_rel_L1']:g}",
        f"fitted L0 = {q['L0']:.4g}, L1 = {q['L1']:.3g} (relative {q['relative_L1']:.2g})",
        verdict(q["relative_L1"] < cfg["quadratic_rel_L1"], q["relative_L1"] >= cfg["quadratic_rel_L1"])))
    for name in [n for n in summary if n != "quadratic"]:
        s = summary[name]
        f, gr = s["fit"], s["growth"]
        fit_text = f"fitted L0 = {f['L0']:.4g}, L1 = {f['L1']:.4g} (relative {f['relative_L1']:.3g})"
        growth_text = (f"M grows {gr['factor']:.3g}x ({gr['sup_min_radius']:.3g} -> {gr['sup_max_radius']:.3g}), "
                       f"outer-decade slope {gr['outer_slope']:.2f}")
        grows = gr["factor"] >= cfg["growth_factor"] and gr["outer_slope"] >= cfg["growth_slope"]
        if name in cfg["bounded_families"]:
            claims.append(claim(
                f"L1_zero_{name}", f"{name}: every derivative of the loss is bounded, so Phi is L-smooth: the fitted "
                "L1 vanishes (docs: Theory, (L0, L1)-smoothness)",
                f"L1 max|grad| / max|hess| <= {cfg['quadratic_rel_L1']:g}", fit_text,
                verdict(f["relative_L1"] <= cfg["quadratic_rel_L1"], f["relative_L1"] > cfg["positive_rel_L1"])))
            claims.append(claim(
                f"hess_bounded_{name}", f"{name}: bounded derivatives bound |hess Phi|: its sup over the ball of "
                "radius r levels off (docs: Theory, (L0, L1)-smoothness)",
                f"M(r_max)/M(r_min) < {cfg['growth_factor']:g} and outer-decade log-log slope "
                f"< {cfg['plateau_slope']:g}", growth_text,
                verdict(gr["factor"] < cfg["growth_factor"] and gr["outer_slope"] < cfg["plateau_slope"], grows)))
            continue
        claims.append(claim(
            f"L1_positive_{name}", f"{name}: the fitted envelope needs L1 > 0 (not L-smooth on the sample)",
            f"L1 max|grad| / max|hess| > {cfg['positive_rel_L1']:g}", fit_text,
            verdict(f["relative_L1"] > cfg["positive_rel_L1"], f["relative_L1"] <= cfg["quadratic_rel_L1"])))
        claims.append(claim(
            f"hess_unbounded_{name}", f"{name}: sup |hess Phi| over the ball of radius r grows without bound",
            f"M(r_max)/M(r_min) >= {cfg['growth_factor']:g} and outer-decade log-log slope >= {cfg['growth_slope']:g}",
            growth_text, verdict(grows, gr["outer_slope"] < cfg["plateau_slope"])))
    with_theory = {n: s for n, s in summary.items() if "theory" in s}
    holds = {n: s["theory_covered_fraction"] == 1.0 for n, s in with_theory.items()}
    below = {n: s["fit"]["L0"] <= s["theory"]["L0"] and s["fit"]["L1"] <= s["theory"]["L1"]
             for n, s in with_theory.items()}
    claims.append(claim(
        "theory_bound_holds", "|hess Phi_i| <= L0 + L1 |grad Phi_i| with theory's constants at every sampled point, "
        "and the fitted constants are no larger than theory's",
        "every point covered; fitted L0, L1 <= theory's, for each family with theory constants",
        "; ".join(f"{n}: max |hess|/bound = {s['theory_max_ratio']:.3g}, fitted ({s['fit']['L0']:.3g}, "
                  f"{s['fit']['L1']:.3g}) vs theory ({s['theory']['L0']:.3g}, {s['theory']['L1']:.3g})"
                  for n, s in with_theory.items()),
        verdict(all(holds.values()) and all(below.values()), not all(holds.values()))))
    return claims


def run(cfg: dict) -> dict:
    records, theories = [], {}
    for name, spec in cfg["families"].items():
        rows, theories[name] = probe_family(name, spec, cfg["seed"], cfg["inner_steps"], cfg["device"])
        records += rows
    families = summarize(records, theories)
    return make_results(NAME, cfg, records, {"families": families}, _claims(families, cfg), device=cfg["device"])


# ---------------------------------------------------------------------------------------------
# figure


def plot(results: dict, out_dir) -> list[Path]:
    records, summary = results["records"], results["summary"]["families"]
    with style():
        fig, (ax_g, ax_r, ax_t) = panels(3, width=5.2, height=4.3)
        for name, s in summary.items():
            c = FAMILY_COLORS.get(name, "grey")
            rows = [r for r in records if r["family"] == name]
            g = np.array([r["grad_norm"] for r in rows])
            h = np.array([r["hess_norm"] for r in rows])
            radius = np.array([r["radius"] for r in rows])
            ax_g.scatter(g, h, s=6, color=c, alpha=0.5, linewidths=0)
            grid = np.geomspace(g.min(), g.max(), 100)
            ax_g.plot(grid, s["fit"]["L0"] + s["fit"]["L1"] * grid, color=c,
                      label=f"{name}: fit {s['fit']['L0']:.2g} + {s['fit']['L1']:.2g} |g|")
            if "theory" in s:
                L0, L1 = s["theory"]["L0"], s["theory"]["L1"]
                ax_g.plot(grid, L0 + L1 * grid, color=c, linestyle="--", linewidth=1,
                          label=f"{name}: theory {L0:.2g} + {L1:.2g} |g|")
                ax_t.scatter(radius, h / (L0 + L1 * g), s=5, color=c, alpha=0.35, linewidths=0, label=name)
            ax_r.scatter(radius, h, s=6, color=c, alpha=0.3, linewidths=0)
            ax_r.plot(*ball_sup(radius, h), color=c, label=f"{name}: sup over |x| <= r ({s['growth']['factor']:.3g}x)")
        ax_g.set(xscale="log", yscale="log", xlabel="|grad Phi_i|", ylabel="|hess Phi_i|_2",
                 title="(L0, L1) envelopes: fitted (solid), theory (dashed)")
        ax_r.set(xscale="log", yscale="log", xlabel="radius |x|", ylabel="|hess Phi_i|_2",
                 title="|hess Phi| against radius")
        ax_t.axhline(1.0, color="black", linewidth=1)
        ax_t.set(xscale="log", xlabel="radius |x|", ylabel="|hess| / (L0 + L1 |grad|)",
                 title="Theory bound: every point <= 1", ylim=(0, 1.1))
        ax_g.legend(loc="upper left", fontsize=7)
        ax_r.legend(loc="upper left", fontsize=7)
        ax_t.legend(loc="upper right")
        fig.tight_layout()
        mark_quick(fig, results)
        path = save_figure(fig, Path(out_dir) / f"{NAME}.png")
        close(fig)
    return [path]
