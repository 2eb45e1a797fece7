"""Meta-training with each estimator and each meta-optimizer.

**Logistic distribution** (a finite task set; Phi is the mean over all its tasks). Each
step draws a meta-batch of tasks without replacement, averages their meta-gradient
estimates (exact closed form, FO-B-MAML forward / symmetric, FO-MAML, Reptile) and takes
one optimizer step (torch SGD, ClippedSGD, NormalizedSGD, SNGDM of :mod:`fobtheory.optim`).
Along the way the exact ``|grad Phi|`` and ``Phi`` on the full task set are recorded. Two
regimes: ``full`` (the meta-batch is the whole set: the estimators' biases alone decide
where each method stops) and ``sampled`` (small meta-batches: sampling noise on top).

**Cosine distribution** (the 1-D (L0, L1)-smooth problem ``f = -cos x``,
``F_i = (y - t_i)^2 / 2``): FO-B-MAML symmetric with each optimizer over a sweep of step
sizes from a far start, to see where plain SGD diverges or stalls and the normalized
methods do not.

Every optimizer runs under a geometric step-size decay ``lr_t = lr decay^(t / T)`` (torch
``ExponentialLR``), with ``lr`` and ``decay`` per optimizer in the config.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from fobtheory.progress import track

from fobtheory.estimators import fo_maml, fob_maml, reptile
from fobtheory.optim import SNGDM, ClippedSGD, NormalizedSGD
from fobtheory.plotting import METHOD_COLORS, close, mark_quick, panels, style
from fobtheory.problems import CosineTask, MetaProblem, logistic_tasks
from fobtheory.results import claim, make_results, save_figure, verdict

NAME = "optimize"
ESTIMATORS = ("exact", "fob_forward", "fob_symmetric", "fo_maml", "reptile")
OPTIMIZERS = {"sgd": torch.optim.SGD, "clipped": ClippedSGD, "normalized": NormalizedSGD, "sngdm": SNGDM}
OPTIMIZER_COLORS = {"sgd": "black", "clipped": "tab:green", "normalized": "tab:blue", "sngdm": "tab:orange"}


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    return {
        "seed": seed,
        "device": device,  # the experiment is float64 numpy + torch on CPU; recorded only
        "inner_steps": 1,
        "delta": 1e-3,
        "seeds": 1 if quick else 3,
        "logistic": {
            "n_tasks": 12, "dim": 10, "n_samples": 20, "x0_scale": 1.0, "n_records": 6 if quick else 20,
            "regimes": {
                "full": {"meta_batch": 12, "steps": 60 if quick else 150, "optimizers": {
                    "sgd": {"lr": 2.0, "decay": 1.0},
                    "clipped": {"lr": 2.0, "clip": 0.1, "decay": 1.0},
                    "normalized": {"lr": 1.0, "decay": 1e-9},
                    "sngdm": {"lr": 1.0, "beta": 0.5, "decay": 1e-9}}},
                "sampled": {"meta_batch": 4, "steps": 40 if quick else 500, "optimizers": {
                    "sgd": {"lr": 2.0, "decay": 1e-3},
                    "clipped": {"lr": 2.0, "clip": 0.1, "decay": 1e-3},
                    "normalized": {"lr": 0.3, "decay": 1e-4},
                    "sngdm": {"lr": 0.3, "beta": 0.9, "decay": 1e-4}}},
            },
        },
        "cosine": {
            "n_tasks": 8, "alpha": 0.5, "x0": 10.0, "meta_batch": 2, "steps": 80 if quick else 300,
            "estimator": "fob_symmetric", "n_records": 6 if quick else 20,
            "lrs": [1.0, 10.0] if quick else [0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
            "optimizers": {"sgd": {"decay": 1e-3}, "clipped": {"clip": 1.0, "decay": 1e-3},
                           "normalized": {"decay": 1e-3}, "sngdm": {"beta": 0.9, "decay": 1e-3}},
            "blowup": 1e6,  # |x| beyond this (or non-finite) counts as divergence
            "converged": 1e-2,  # final |grad Phi| <= this times the initial one
        },
        "plateau_ratio": 100.0,  # FO-B must end this many times below the FO-MAML / Reptile plateaus
    }


# ---------------------------------------------------------------------------------------------
# the meta-gradient estimate of a meta-batch


def batch_estimate(estimator: str, problem: MetaProblem, x: np.ndarray, idx, *, delta: float,
                   inner_steps: int = 1) -> np.ndarray:
    """Mean over the tasks ``idx`` of the named meta-gradient estimate at x."""
    if estimator == "exact":
        return np.mean([problem[i].meta_grad(x, inner_steps) for i in idx], axis=0)
    inner, outer = MetaProblem([problem[i] for i in idx]).stacked_oracles()
    X = np.tile(x, (len(idx), 1))
    run = dict(alpha=problem.alpha, inner_steps=inner_steps, batched=True)
    if estimator.startswith("fob_"):
        G = fob_maml(X, inner, outer, delta=delta, scheme=estimator[4:], **run)
    else:
        G = {"fo_maml": fo_maml, "reptile": reptile}[estimator](X, inner, outer, **run)
    return G.mean(axis=0)


# ---------------------------------------------------------------------------------------------
# one training run


def make_optimizer(name: str, params, lr: float, spec: dict, steps: int):
    """The optimizer ``name`` with its hyper-parameters and the geometric decay schedule."""
    options = {k: v for k, v in spec.items() if k not in ("lr", "decay")}
    opt = OPTIMIZERS[name](params, lr=lr, **options)
    return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=spec["decay"] ** (1 / steps))


def train(problem: MetaProblem, estimator: str, optimizer: str, spec: dict, *, lr: float, x0, steps: int,
          meta_batch: int, seed: int, n_records: int, delta: float, inner_steps: int = 1,
          blowup: float = 1e6) -> list[dict]:
    """Meta-train from x0 with meta-batches of ``meta_batch`` tasks drawn without replacement.

    Records ``{step, lr, grad_norm, loss, diverged}`` (exact |grad Phi| and Phi on the full
    task set) at ``n_records`` evenly spaced steps; the last one also holds
    ``estimator_error = |g_full(x) - grad Phi(x)|``, the full-set estimate's error there (at
    a limit point of the estimator, where g_full = 0, it equals |grad Phi|: the estimator's
    bias). A run stops as diverged when x stops being finite or leaves the ball of radius
    ``blowup``."""
    rng = np.random.default_rng(seed)
    x = torch.nn.Parameter(torch.tensor(np.asarray(x0, dtype=np.float64)))
    opt, schedule = make_optimizer(optimizer, [x], lr, spec, steps)
    record_at = set(np.linspace(0, steps, n_records).astype(int).tolist())
    records = []
    for step in range(steps + 1):
        point = x.detach().numpy().copy()
        row = {"step": step, "lr": opt.param_groups[0]["lr"], "grad_norm": None, "loss": None, "diverged": True}
        if not np.isfinite(point).all() or np.linalg.norm(point) > blowup:
            return records + [row]
        if step in record_at:  # includes the last step
            grad = problem.meta_grad(point, inner_steps)
            row.update(grad_norm=float(np.linalg.norm(grad)), loss=problem.meta_loss(point, inner_steps),
                       diverged=False)
            records.append(row)
        if step == steps:
            full = batch_estimate(estimator, problem, point, range(len(problem)), delta=delta, inner_steps=inner_steps)
            row["estimator_error"] = float(np.linalg.norm(full - grad))
            return records
        idx = rng.choice(len(problem), size=meta_batch, replace=False)
        x.grad = torch.from_numpy(batch_estimate(estimator, problem, point, idx, delta=delta, inner_steps=inner_steps))
        opt.step()
        schedule.step()


def _x0(dim: int, scale: float, seed: int) -> np.ndarray:
    return scale * np.random.default_rng([seed, 0]).standard_normal(dim)


def cosine_problem(spec: dict, seed: int) -> MetaProblem:
    """Cosine tasks sharing ``f = -cos x`` with targets ``t_i ~ N(0, 1)``."""
    targets = np.random.default_rng(seed).standard_normal(spec["n_tasks"])
    return MetaProblem([CosineTask(alpha=spec["alpha"], target=t) for t in targets])


def run(cfg: dict) -> dict:
    L, C = cfg["logistic"], cfg["cosine"]
    common = dict(delta=cfg["delta"], inner_steps=cfg["inner_steps"])
    seeds = [1000 * cfg["seed"] + s for s in range(cfg["seeds"])]
    problem = logistic_tasks(L["n_tasks"], L["dim"], n_samples=L["n_samples"], seed=cfg["seed"])
    jobs = [("logistic", regime, est, opt, spec["lr"], seed)
            for regime, R in L["regimes"].items() for opt, spec in R["optimizers"].items()
            for est in ESTIMATORS for seed in seeds]
    jobs += [("cosine", "sampled", C["estimator"], opt, lr, seed)
             for opt in C["optimizers"] for lr in C["lrs"] for seed in seeds]
    cosine = cosine_problem(C, cfg["seed"])
    records = []
    for family, regime, est, opt, lr, seed in track(jobs, desc="optimize", unit="run", leave=False):
        if family == "logistic":
            R = L["regimes"][regime]
            rows = train(problem, est, opt, R["optimizers"][opt], lr=lr, x0=_x0(L["dim"], L["x0_scale"], seed),
                         steps=R["steps"], meta_batch=R["meta_batch"], seed=seed, n_records=L["n_records"], **common)
            meta_batch = R["meta_batch"]
        else:
            rows = train(cosine, est, opt, C["optimizers"][opt], lr=lr, x0=[C["x0"]], steps=C["steps"],
                         meta_batch=C["meta_batch"], seed=seed, n_records=C["n_records"], blowup=C["blowup"], **common)
            meta_batch = C["meta_batch"]
        head = {"family": family, "regime": regime, "meta_batch": meta_batch, "estimator": est, "optimizer": opt,
                "base_lr": lr, "seed": seed}
        records += [{**head, **row} for row in rows]
    summary = summarize(records, cfg)
    return make_results(NAME, cfg, records, summary, _claims(summary, cfg), device=cfg["device"])


# ---------------------------------------------------------------------------------------------
# analysis


def _runs(records, **match) -> dict[int, list[dict]]:
    """The records matching ``match``, grouped by seed (each list in step order)."""
    out: dict[int, list[dict]] = {}
    for r in records:
        if all(r[k] == v for k, v in match.items()):
            out.setdefault(r["seed"], []).append(r)
    return out


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def final_levels(records, **match) -> dict:
    """Median over seeds of the final |grad Phi|, of the estimator error there, and of the
    flatness ``|grad Phi|(end) / |grad Phi|(75% of the run)`` (about 1 on a plateau); the
    number of diverged runs."""
    runs = _runs(records, **match).values()
    finals = [run[-1] for run in runs]
    late = [min(run, key=lambda r: abs(r["step"] - 0.75 * run[-1]["step"])) for run in runs]
    return {
        "grad_norm": _median(r["grad_norm"] for r in finals),
        "estimator_error": _median(r.get("estimator_error") for r in finals),
        "flatness": _median(f["grad_norm"] / m["grad_norm"] for f, m in zip(finals, late)
                            if not f["diverged"] and m["grad_norm"]),
        "initial": _median(run[0]["grad_norm"] for run in runs),
        "diverged": sum(r["diverged"] for r in finals),
        "runs": len(finals),
    }


def cosine_outcome(level: dict, converged: float) -> str:
    """``diverged`` (most seeds left the ball), ``converged`` (median final |grad Phi| at most
    ``converged`` times the initial one) or ``stalled``."""
    if level["diverged"] * 2 > level["runs"]:
        return "diverged"
    return "converged" if level["grad_norm"] <= converged * level["initial"] else "stalled"


def summarize(records, cfg) -> dict:
    L, C = cfg["logistic"], cfg["cosine"]
    logistic = {regime: {opt: {est: final_levels(records, family="logistic", regime=regime, optimizer=opt,
                                                 estimator=est) for est in ESTIMATORS}
                         for opt in R["optimizers"]}
                for regime, R in L["regimes"].items()}
    cosine = {}
    for opt in C["optimizers"]:
        for lr in C["lrs"]:
            level = final_levels(records, family="cosine", optimizer=opt, base_lr=lr)
            cosine.setdefault(opt, {})[str(lr)] = {**level, "outcome": cosine_outcome(level, C["converged"])}
    advantage = {regime: {opt: paired_advantage(records, regime, opt) for opt in R["optimizers"]}
                 for regime, R in L["regimes"].items()}
    return {"logistic": logistic, "advantage": advantage, "cosine": cosine}


def paired_advantage(records, regime: str, optimizer: str) -> dict:
    """Per seed (same start, same meta-batches), the ratio of FO-MAML's and Reptile's final
    |grad Phi| to FO-B-MAML symmetric's: median and smallest over seeds."""
    def finals(est):
        runs = _runs(records, family="logistic", regime=regime, optimizer=optimizer, estimator=est)
        return {seed: run[-1]["grad_norm"] for seed, run in runs.items()}

    fob = finals("fob_symmetric")
    out = {}
    for est in ("fo_maml", "reptile"):
        ratios = [g / fob[seed] for seed, g in finals(est).items()]
        out[est] = {"median": float(np.median(ratios)), "min": float(np.min(ratios))}
    return out


def _ratio_text(levels: dict) -> str:
    g = {est: lv["grad_norm"] for est, lv in levels.items()}
    return (f"FO-MAML {g['fo_maml']:.2g}, Reptile {g['reptile']:.2g}, "
            f"FO-B forward {g['fob_forward']:.2g}, symmetric {g['fob_symmetric']:.2g}")


def _claims(summary: dict, cfg: dict) -> list[dict]:
    full, sampled = summary["logistic"]["full"], summary["logistic"]["sampled"]
    claims = []

    def plateau(lv):  # flat, positive and at the estimator's own bias
        return (lv["flatness"] is not None and lv["grad_norm"] > 0 and 0.5 <= lv["flatness"] <= 2
                and 0.5 <= lv["grad_norm"] / lv["estimator_error"] <= 2)

    flat = {opt: plateau(lv["fo_maml"]) and plateau(lv["reptile"]) for opt, lv in full.items()}
    claims.append(claim(
        "biased_plateau", "Full meta-batch: FO-MAML and Reptile stop at a positive |grad Phi| equal to their own bias",
        "for every optimizer, |grad Phi| flat over the last quarter (ratio in [0.5, 2]) and within 2x of "
        "the estimator's error at the end point",
        "; ".join(f"{opt}: FO-MAML {lv['fo_maml']['grad_norm']:.2g} (bias {lv['fo_maml']['estimator_error']:.2g}), "
                  f"Reptile {lv['reptile']['grad_norm']:.2g} (bias {lv['reptile']['estimator_error']:.2g})"
                  for opt, lv in full.items()),
        verdict(all(flat.values()), not any(flat.values()))))
    k = cfg["plateau_ratio"]
    below = {opt: lv["fob_symmetric"]["grad_norm"] * k <= min(lv["fo_maml"]["grad_norm"], lv["reptile"]["grad_norm"])
             for opt, lv in full.items()}
    claims.append(claim(
        "fob_below_plateau_full", "Full meta-batch: FO-B-MAML symmetric goes orders of magnitude below the "
        "FO-MAML and Reptile plateaus",
        f"final |grad Phi| at least {k:g}x below both plateaus, for every optimizer",
        "; ".join(f"{opt}: {_ratio_text(lv)}" for opt, lv in full.items()),
        verdict(all(below.values()), not any(below.values()))))
    at_bias = {(opt, est): lv[est]["grad_norm"] <= 2 * lv[est]["estimator_error"]
               for opt, lv in full.items() for est in ("fob_forward", "fob_symmetric")}
    claims.append(claim(
        "fob_stops_at_delta_bias",
        f"Full meta-batch: FO-B-MAML converges down to its delta-bias (delta = {cfg['delta']:g})",
        "final |grad Phi| at most 2x the FO-B estimate's error at the end point, for both schemes and every optimizer",
        "; ".join(f"{opt} {est}: |grad Phi| {lv[est]['grad_norm']:.2g}, estimate error {lv[est]['estimator_error']:.2g}"
                  for opt, lv in full.items() for est in ("fob_forward", "fob_symmetric")),
        verdict(all(at_bias.values()), not any(at_bias.values()))))
    adv = summary["advantage"]["sampled"]
    ahead = [a[est]["min"] > 1 for a in adv.values() for est in a]
    behind = [a["fo_maml"]["median"] <= 1 for a in adv.values()]
    B = cfg["logistic"]["regimes"]["sampled"]["meta_batch"]
    claims.append(claim(
        "fob_below_plateau_sampled", f"Sampled meta-batches ({B} of {cfg['logistic']['n_tasks']} tasks): FO-B-MAML "
        "symmetric ends below FO-MAML and Reptile",
        "for every optimizer and seed (same start, same meta-batches), final |grad Phi| below both; "
        "the 100x of the full batch is out of reach while the sampling noise exceeds the FO-MAML bias",
        "; ".join(f"{opt}: {_ratio_text(sampled[opt])} (FO-MAML / FO-B {a['fo_maml']['median']:.2f}x, "
                  f"min {a['fo_maml']['min']:.2f}x; Reptile / FO-B {a['reptile']['median']:.2g}x)"
                  for opt, a in adv.items()),
        verdict(all(ahead), all(behind))))
    cos = summary["cosine"]
    lrs = list(cos["sgd"])
    sgd_fails = [lr for lr in lrs if cos["sgd"][lr]["outcome"] != "converged"]
    rescued = [lr for lr in sgd_fails if cos["sngdm"][lr]["outcome"] == "converged"]
    reverse = [lr for lr in lrs
               if cos["sgd"][lr]["outcome"] == "converged" and cos["sngdm"][lr]["outcome"] != "converged"]
    claims.append(claim(
        "sngdm_where_sgd_fails",
        "Cosine (L0, L1) problem: plain SGD diverges or stalls at step sizes where SNGDM converges",
        f"some step size with SGD diverged or stalled and SNGDM converged (final |grad Phi| <= "
        f"{cfg['cosine']['converged']:g} x initial, median over seeds)",
        "outcomes by lr, SGD / SNGDM: " + ", ".join(f"{lr}: {cos['sgd'][lr]['outcome']} / {cos['sngdm'][lr]['outcome']}"
                                                   for lr in lrs)
        + (f"; the reverse (SNGDM stalls, SGD converges) at lr {', '.join(reverse)}" if reverse else ""),
        verdict(bool(rescued), bool(sgd_fails) and not rescued)))
    return claims


# ---------------------------------------------------------------------------------------------
# figure


def _curve(records, **match):
    """Steps and the median, min and max of |grad Phi| over seeds (runs that all finished)."""
    runs = [run for run in _runs(records, **match).values() if not run[-1]["diverged"]]
    steps = [r["step"] for r in runs[0]]
    G = np.array([[r["grad_norm"] for r in run] for run in runs])
    return steps, np.median(G, axis=0), G.min(axis=0), G.max(axis=0)


def plot(results: dict, out_dir) -> list[Path]:
    records, summary, cfg = results["records"], results["summary"], results["config"]
    shown = "sngdm"
    markers = {"sgd": "o", "clipped": "s", "normalized": "^", "sngdm": "D"}
    with style():
        fig, axes = panels(4, width=5.0, height=4.2)
        for ax, regime in zip(axes[:2], ("full", "sampled")):
            R = cfg["logistic"]["regimes"][regime]
            for est in ESTIMATORS:
                steps, med, lo, hi = _curve(records, family="logistic", regime=regime, optimizer=shown, estimator=est)
                ax.plot(steps, med, color=METHOD_COLORS[est], label=est)
                ax.fill_between(steps, lo, hi, color=METHOD_COLORS[est], alpha=0.15, linewidth=0)
            if regime == "sampled":
                for est in ("fo_maml", "reptile"):
                    ax.axhline(summary["logistic"]["full"][shown][est]["grad_norm"], color=METHOD_COLORS[est],
                               linestyle="--", linewidth=1, label=f"{est} bias (full batch)")
            ax.set(yscale="log", xlabel="meta-step", ylabel="exact |grad Phi| (all tasks)",
                   title=f"logistic, {shown}, meta-batch {R['meta_batch']} of {cfg['logistic']['n_tasks']}")
            ax.legend(loc="lower left" if regime == "full" else "upper right")  # where no curve runs
        ax = axes[2]
        for i, est in enumerate(ESTIMATORS):
            for j, opt in enumerate(markers):
                for regime, fill in (("full", METHOD_COLORS[est]), ("sampled", "none")):
                    level = summary["logistic"][regime][opt][est]["grad_norm"]
                    ax.scatter(i + (j - 1.5) * 0.15, level, marker=markers[opt], s=30, facecolors=fill,
                               edgecolors=METHOD_COLORS[est], label=f"{opt}" if i == 0 and regime == "full" else None)
        ax.set_xticks(range(len(ESTIMATORS)), [e.replace("_", "\n") for e in ESTIMATORS])
        ax.set(yscale="log", ylabel="final |grad Phi| (median over seeds)",
               title="logistic: filled = full batch, hollow = sampled")
        ax.legend(loc="lower right", title="optimizer")
        ax = axes[3]
        cos = summary["cosine"]
        for opt, by_lr in cos.items():
            lrs = [float(lr) for lr in by_lr]
            levels = [lv["grad_norm"] if lv["outcome"] != "diverged" else None for lv in by_lr.values()]
            ax.plot(lrs, [np.nan if v is None else v for v in levels], marker=markers[opt],
                    color=OPTIMIZER_COLORS[opt], label=opt)
            div = [lr for lr, lv in zip(lrs, by_lr.values()) if lv["outcome"] == "diverged"]
            ax.scatter(div, [1e3] * len(div), marker="x", s=60, color=OPTIMIZER_COLORS[opt])
        start = np.median([lv["initial"] for lv in cos["sgd"].values()])
        ax.axhline(start, color="grey", linestyle=":", linewidth=1, label="initial |grad Phi|")
        ax.axhline(cfg["cosine"]["converged"] * start, color="grey", linestyle="--", linewidth=1,
                   label="converged below")
        ax.set(xscale="log", yscale="log", xlabel="base step size", ylabel="final |grad Phi| (median over seeds)",
               title=f"cosine (L0, L1) problem, {cfg['cosine']['estimator']}: x = diverged")
        ax.legend(loc="upper center", ncol=2)
        fig.tight_layout()
        mark_quick(fig, results)
        path = save_figure(fig, Path(out_dir) / f"{NAME}.png")
        close(fig)
    return [path]
