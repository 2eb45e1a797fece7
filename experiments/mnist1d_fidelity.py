"""Fidelity of the finite differences on MNIST-1D networks: error tails against MAML (issue 11).

Along second-order MAML training runs (5-way 5-shot, seed 0, the MNIST-1D training protocol
of :mod:`fobtheory.experiments.mnist1d`), the weights at the checkpoints ``steps`` serve as
anchors. At each, on ``episodes`` test tasks, the relative error

    |g - g_MAML| / |g_MAML|,   g_MAML the float64 second-order meta-gradient,

of each FO-B estimator (:data:`ESTIMATORS`: plain forward and symmetric differences, the
symmetric one with the kink guard, and both with the activation pattern of the anchor frozen,
see the Theory page of the docs), in float32 and float64, over a delta grid. Networks: ``CNN1D`` with
ReLU and with GELU (smooth: the control), and ``kinked_cnn`` (``activation="mixed"``:
LeakyReLU, ReLU6 and MaxPool1d), each trained by MAML for this experiment.

A network with kinks is piecewise smooth; a stencil that crosses a kink measures a jump,
not a curvature, and some task of a trained network always crosses one. Medians over tasks
hide this: the summary and the figure report the median, the 90th percentile and the
maximum over tasks, and the claims are stated on the tails.

The MAML runs are jobs of the MNIST-1D campaign (:func:`mnist1d.job`, same run key: a
committed result is reused), on the config's ``executor``; their weight snapshots live in
the cache, and a run whose snapshots are missing is retrained (deterministic: the same
weights on the same device). Networks: :data:`NETWORKS` (name -> label), built by
:func:`mnist1d._model`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fobtheory import plotting
from fobtheory.nn import PLAIN_DIFFERENCES, meta_gradient_batch
from fobtheory.progress import track
from fobtheory.results import claim, make_results, save_figure, verdict

from . import mnist1d

NAME = "mnist1d_fidelity"
# (method, kink_guard, freeze_pattern) -> label
ESTIMATORS = {
    ("fob_symmetric", False, False): "symmetric, plain",
    ("fob_forward", False, False): "forward, plain",
    ("fob_symmetric", True, False): "symmetric + kink guard",
    ("fob_symmetric", False, True): "symmetric, frozen pattern",
    ("fob_forward", False, True): "forward, frozen pattern",
}
COLORS = {"symmetric, plain": "tab:orange", "forward, plain": "tab:blue", "symmetric + kink guard": "tab:purple",
          "symmetric, frozen pattern": "tab:green", "forward, frozen pattern": "tab:cyan"}
NETWORKS = {"relu": "CNN1D ReLU", "gelu": "CNN1D GELU", "mixed": "LeakyReLU/ReLU6/MaxPool1d net"}
KINKED = ("relu", "mixed")  # the networks with kinks that a frozen pattern covers
# the claims' thresholds: frozen patterns, max over tasks <= bound at this delta
FROZEN_BOUNDS = {"float32": (1e-3, 1e-3), "float64": (1e-5, 1e-8)}  # dtype -> (delta, bound)
PLAIN_FLOOR = 1e-2  # plain ReLU: the max over tasks stays above this at every delta


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    plan = ("methods", "shots", "activations", "seeds", "guarded_activations", "frozen_activations", "variants",
            "device", "torch_threads", "timing_rounds", "executor", "workers", "cluster_options")  # chosen here
    runs = mnist1d.config(quick=quick, seed=seed, device=device)
    training = {k: v for k, v in runs.items() if k not in plan}
    cfg = dict(activations=["relu", "gelu", "mixed"], shots=5, seed=seed, steps=[0, 200, 800, training["meta_steps"]],
               episodes=32, deltas=[10.0 ** e for e in range(-8, 0)], dtypes=["float32", "float64"],
               device=device, torch_threads=1, training=training,
               **{k: runs[k] for k in ("executor", "workers", "cluster_options")})
    if quick:
        cfg.update(steps=[0, training["meta_steps"]], episodes=4, deltas=[1e-5, 1e-3])
    return cfg


def _deltas(cfg) -> list[float]:
    """The delta grid with the training delta and the claims' deltas in it."""
    extra = {cfg["training"]["delta"]} | {d for d, _ in FROZEN_BOUNDS.values()}
    return sorted({float(f"{d:.6g}") for d in [*cfg["deltas"], *extra]})


def _check(cfg):
    bad = [s for s in cfg["steps"] if not 0 <= s <= cfg["training"]["meta_steps"]]
    if bad:
        raise ValueError(f"steps must lie in 0..meta_steps={cfg['training']['meta_steps']}, got {bad}")
    unknown = set(cfg["activations"]) - set(NETWORKS)
    if unknown:
        raise ValueError(f"activations must be among {sorted(NETWORKS)}, got {sorted(unknown)}")


def _flat(grads):
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1).to(torch.float64)


def fidelity(cfg, training, activation, snapshots: dict, episodes) -> list[dict]:
    """Per-task relative errors of MAML (in each dtype) and of each estimator at each delta
    against the float64 MAML meta-gradient, at every snapshot; plus one ``kink_info`` row per
    estimate (the estimator's kink counts over the tasks)."""
    deltas, rows = _deltas(cfg), []
    common = dict(alpha=training["alpha"], inner_steps=training["inner_steps"])

    def model_at(step, dtype):
        model = mnist1d._model(dict(training, dtype=dtype), activation, cfg["seed"])
        model.load_state_dict(snapshots[step])
        return model

    for step in cfg["steps"]:
        reference = _flat(meta_gradient_batch(model_at(step, "float64"), *mnist1d.stack(episodes, torch.float64),
                                              method="maml", **common))
        scale = reference.norm(dim=1)
        for dtype in cfg["dtypes"]:
            model, batch = model_at(step, dtype), mnist1d.stack(episodes, getattr(torch, dtype))
            base = dict(activation=activation, dtype=dtype, step=step)

            def errors(**kw):
                g, info = meta_gradient_batch(model, *batch, return_info=True, **common, **kw)
                return ((_flat(g) - reference).norm(dim=1) / scale).tolist(), info

            errs, _ = errors(method="maml")
            rows += [dict(base, kind="fidelity", method="maml", kink_guard=False, freeze_pattern=False, delta=None,
                          episode=e, error=err) for e, err in enumerate(errs)]
            for method, guard, frozen in ESTIMATORS:
                for delta in deltas:
                    errs, info = errors(method=method, delta=delta,
                                        kink_tol=training["kink_tol"] if guard else None,
                                        **({"freeze_pattern": True} if frozen else PLAIN_DIFFERENCES))
                    est = dict(base, method=method, kink_guard=guard, freeze_pattern=frozen, delta=delta)
                    rows += [dict(est, kind="fidelity", episode=e, error=err) for e, err in enumerate(errs)]
                    rows.append(dict(est, kind="kink_info", tasks=len(errs), kink_retries=info.kink_retries,
                                     kink_unresolved=info.kink_unresolved,
                                     kink_suspects=getattr(info, "kink_suspects", 0)))
    return rows


# ---------------------------------------------------------------------------------------------
# tails and claims


def _group(r) -> tuple:
    return r["activation"], r["dtype"], r["step"], r["method"], r["kink_guard"], r["freeze_pattern"], r["delta"]


def tails(rows) -> list[dict]:
    """Median, 90th percentile and maximum over tasks of each (network, dtype, step,
    estimator, delta)."""
    groups = {}
    for r in rows:
        if r["kind"] == "fidelity":
            groups.setdefault(_group(r), []).append(r["error"])
    keys = ("activation", "dtype", "step", "method", "kink_guard", "freeze_pattern", "delta")
    return [dict(zip(keys, g), tasks=len(e), median=float(np.median(e)), p90=float(np.percentile(e, 90)),
                 max=float(np.max(e))) for g, e in groups.items()]


class _Tails:
    """Look-up of :func:`tails` rows: ``at(stat, activation, dtype, step, estimator, delta)``."""

    def __init__(self, rows):
        self.rows = {(r["activation"], r["dtype"], r["step"], r["method"], r["kink_guard"], r["freeze_pattern"],
                      r["delta"]): r for r in rows}

    def at(self, stat, activation, dtype, step, estimator, delta) -> float:
        r = self.rows.get((activation, dtype, step, *estimator, delta))
        return r[stat] if r else float("nan")


PLAIN, FORWARD, GUARD, FROZEN = ("fob_symmetric", False, False), ("fob_forward", False, False), \
    ("fob_symmetric", True, False), ("fob_symmetric", False, True)


def _frozen_claim(t, cfg, dtype) -> list[dict]:
    delta, bound = FROZEN_BOUNDS[dtype]
    nets = [a for a in KINKED if a in cfg["activations"]]
    if not nets or dtype not in cfg["dtypes"]:
        return []
    cells = {(a, s): t.at("max", a, dtype, s, FROZEN, delta) for a in nets for s in cfg["steps"]}
    return [claim(
        f"frozen_pattern_max_error_{dtype}",
        f"With the activation pattern of the anchor frozen, FO-B symmetric ({dtype}, delta {delta:g}) matches "
        f"second-order MAML on every task, on networks with ReLU and with LeakyReLU/ReLU6/MaxPool1d",
        f"maximum relative error over {cfg['episodes']} test tasks <= {bound:g} at every MAML checkpoint",
        "; ".join(f"{NETWORKS[a]}: " + ", ".join(f"step {s} {cells[a, s]:.2g}" for s in cfg["steps"]) for a in nets),
        verdict(all(v <= bound for v in cells.values()), any(not v <= bound for v in cells.values())))]


def _plain_tail_claim(t, cfg) -> list[dict]:
    trained = [s for s in cfg["steps"] if s > 0]
    if "relu" not in cfg["activations"] or not trained:
        return []
    best = {}
    for dtype in cfg["dtypes"]:
        for s in trained:
            delta = min(_deltas(cfg), key=lambda d: t.at("max", "relu", dtype, s, PLAIN, d))
            best[dtype, s] = (delta, t.at("max", "relu", dtype, s, PLAIN, delta))
    return [claim(
        "plain_relu_tail_at_every_delta",
        "No delta rescues the plain symmetric difference on the trained ReLU CNN: some task crosses a kink at "
        "every delta, in float32 and float64",
        f"at every delta and every checkpoint after step 0, the maximum relative error over tasks > {PLAIN_FLOOR:g}",
        "smallest max over the delta grid: " + "; ".join(
            f"{dtype} step {s}: {v:.2g} (delta {d:g})" for (dtype, s), (d, v) in best.items()),
        verdict(all(v > PLAIN_FLOOR for _, v in best.values()), any(v <= PLAIN_FLOOR for _, v in best.values())))]


def _claims(t, cfg) -> list[dict]:
    claims = _frozen_claim(t, cfg, "float32") + _frozen_claim(t, cfg, "float64") + _plain_tail_claim(t, cfg)
    last, dtype, delta = max(cfg["steps"]), cfg["training"]["dtype"], cfg["training"]["delta"]
    at = lambda stat, act, est: t.at(stat, act, dtype, last, est, delta)  # noqa: E731
    relu, gelu = at("p90", "relu", PLAIN), at("p90", "gelu", PLAIN)
    if np.isfinite(relu) and np.isfinite(gelu):
        claims.append(claim(
            "relu_kinks_degrade_finite_differences",
            f"After {last} MAML steps, activation kinks make the symmetric difference inaccurate at the training "
            f"delta ({delta:g}, {dtype}): ReLU's error tail exceeds GELU's",
            "90th percentile over tasks of the relative error, ReLU >= 10x GELU",
            f"ReLU {relu:.2g} (max {at('max', 'relu', PLAIN):.2g}), GELU {gelu:.2g} "
            f"(max {at('max', 'gelu', PLAIN):.2g}); ratio of the p90s {relu / gelu:.3g}",
            verdict(relu >= 10 * gelu, relu < 2 * gelu)))
    guarded = at("p90", "relu", GUARD)
    if np.isfinite(relu) and np.isfinite(guarded):
        claims.append(claim(
            "kink_guard_restores_fidelity",
            "The kink guard (shrink delta when the one-sided differences disagree) lowers ReLU's error tail",
            f"90th percentile over tasks with the guard <= half of without ({dtype}, delta {delta:g}, step {last})",
            f"p90 {guarded:.2g} with the guard, {relu:.2g} without; max {at('max', 'relu', GUARD):.2g} with, "
            f"{at('max', 'relu', PLAIN):.2g} without",
            verdict(guarded <= relu / 2, guarded >= relu)))
    if "relu" in cfg["activations"]:
        pairs = {s: (t.at("max", "relu", dtype, s, FROZEN, delta), t.at("max", "relu", dtype, s, GUARD, delta))
                 for s in cfg["steps"]}
        if all(np.isfinite(v).all() for v in pairs.values()):
            claims.append(claim(
                "frozen_tail_below_guard_tail",
                "On the ReLU CNN a frozen pattern bounds the worst task far better than the kink guard",
                f"maximum relative error over tasks, frozen <= guard / 10 at every checkpoint "
                f"({dtype}, delta {delta:g})",
                ", ".join(f"step {s}: frozen {f:.2g}, guard {g:.2g}" for s, (f, g) in pairs.items()),
                verdict(all(f <= g / 10 for f, g in pairs.values()), any(f >= g for f, g in pairs.values()))))
    return claims


def _highlights(t, cfg) -> list[str]:
    last = max(cfg["steps"])
    lines = []
    for dtype in cfg["dtypes"]:
        delta = FROZEN_BOUNDS[dtype][0]
        for act in cfg["activations"]:
            cells = [f"{label} " + " / ".join(f"{t.at(stat, act, dtype, last, est, delta):.2g}"
                                              for stat in ("median", "p90", "max"))
                     for est, label in ESTIMATORS.items() if est[0] == "fob_symmetric"]
            lines.append(f"{NETWORKS[act]}, {dtype}, delta {delta:g}, after {last} MAML steps, relative error against "
                         f"float64 MAML over {cfg['episodes']} test tasks, median / p90 / max: " + ", ".join(cells))
    return lines


# ---------------------------------------------------------------------------------------------
# the experiment


def run(cfg: dict) -> dict:
    _check(cfg)
    training = dict(cfg["training"], device=cfg["device"])
    data = mnist1d._data(training)
    episodes = mnist1d._samplers(training, data, cfg["shots"], "test")[1].batch(cfg["episodes"])
    rows = []
    jobs = [mnist1d.job(training, mnist1d.Unit(act, cfg["shots"], "maml", cfg["seed"]), snapshot_steps=cfg["steps"])
            for act in cfg["activations"]]
    with mnist1d.threads(cfg["torch_threads"]):
        mnist1d.train_all(lambda: jobs, dict(training, **{k: cfg[k] for k in (
            "executor", "workers", "cluster_options", "torch_threads")}), "fidelity: MAML runs")
        for act in track(cfg["activations"], desc="fidelity: estimates", unit="network"):
            name = mnist1d.run_name(act, cfg["shots"], "maml", cfg["seed"])
            rows += fidelity(cfg, training, act, mnist1d.load_snapshots(training, name, cfg["device"]), episodes)
    summary_rows = tails(rows)
    t = _Tails(summary_rows)
    kink_info = [r for r in rows if r["kind"] == "kink_info"]
    summary = dict(tails=summary_rows, highlights=_highlights(t, cfg),
                   run_key=mnist1d.run_key(training), deltas=_deltas(cfg))
    return make_results(NAME, cfg, [r for r in rows if r["kind"] == "fidelity"] + kink_info, summary,
                        _claims(t, cfg), device=cfg["device"])


# ---------------------------------------------------------------------------------------------
# figure


def draw_tails(ax, t: _Tails, network: str, dtype: str, step: int, deltas, estimators: dict) -> None:
    """Each estimator's max (bold), p90 (dashed) and median over tasks against delta, the band
    between median and max shaded."""
    for est, label in estimators.items():
        stats = {s: [t.at(s, network, dtype, step, est, d) for d in deltas] for s in ("median", "p90", "max")}
        color = COLORS[label]
        ax.fill_between(deltas, stats["median"], stats["max"], color=color, alpha=0.08, linewidth=0)
        ax.loglog(deltas, stats["max"], color=color, linewidth=1.8, marker="o", markersize=3, label=label)
        ax.loglog(deltas, stats["p90"], color=color, linewidth=1.0, linestyle="--")
        ax.loglog(deltas, stats["median"], color=color, linewidth=0.5)


def plot(results: dict, out_dir) -> list[Path]:
    path = Path(out_dir) / f"{NAME}.png"
    cfg, summary = results["config"], results["summary"]
    t = _Tails(summary["tails"])
    acts, dtypes, last = cfg["activations"], cfg["dtypes"], max(cfg["steps"])
    deltas = summary["deltas"]
    maml = {(r["activation"], r["dtype"], r["step"]): r["max"] for r in summary["tails"] if r["method"] == "maml"}
    with plotting.style():
        fig, axes = plotting.plt.subplots(len(dtypes), len(acts) + 1, squeeze=False,
                                          figsize=(4.4 * (len(acts) + 1), 3.9 * len(dtypes)))
        for i, dtype in enumerate(dtypes):
            for j, act in enumerate(acts):
                ax = axes[i][j]
                draw_tails(ax, t, act, dtype, last, deltas, ESTIMATORS)
                if dtype != "float64" and (act, dtype, last) in maml:
                    ax.axhline(maml[act, dtype, last], color="black", linewidth=0.6, linestyle=":",
                               label=f"MAML itself in {dtype} (max)")
                ax.axvline(cfg["training"]["delta"], color="grey", linewidth=0.8, linestyle="--")
                ax.set(title=f"{NETWORKS[act]}, {dtype}, step {last}", xlabel="delta (norm of the displacement)",
                       ylabel="relative error vs float64 MAML")
            ax = axes[i][-1]
            delta = FROZEN_BOUNDS[dtype][0]
            for act, style in zip(acts, ("-", ":", "--")):
                for est in (PLAIN, GUARD, FROZEN):
                    ax.plot(cfg["steps"], [t.at("max", act, dtype, s, est, delta) for s in cfg["steps"]], style,
                            color=COLORS[ESTIMATORS[est]], marker="o", markersize=3)
                ax.plot([], [], style, color="black", label=NETWORKS[act])
            ax.axhline(FROZEN_BOUNDS[dtype][1], color="grey", linewidth=0.8, linestyle="-.", label="claimed bound")
            ax.set_xscale("symlog", linthresh=max(1, min([s for s in cfg["steps"] if s > 0], default=1)))
            ax.set_yscale("log")
            ax.set(title=f"by checkpoint: {dtype}, delta {delta:g}", xlabel="MAML meta-step",
                   ylabel="maximum relative error over tasks")
            ax.legend(fontsize=6, loc="best")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8,
                   title="over tasks: thick = maximum, dashed = 90th percentile, thin = median, band = median to max",
                   title_fontsize=8)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        plotting.mark_quick(fig, results)
        save_figure(fig, path)
    plotting.close(fig)
    return [path]
