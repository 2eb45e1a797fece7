"""Fidelity of the finite differences on MAML's Conv4 backbone with BatchNorm: error tails
against MAML, and the float32 floor (issue 20, item 4).

``Conv4`` (:class:`fobtheory.models.Conv4`: conv 3x3 - BatchNorm2d with its defaults - ReLU -
MaxPool2d(2), four times, then linear) is meta-trained by second-order MAML on procedural
stroke images (:func:`fobtheory.data.stroke_images`, 28 x 28, one channel, no download),
5-way ``shots``-shot. The weights at the checkpoints ``steps`` serve as anchors. At each, on
``episodes`` tasks of held-out classes, the relative error

    |g - g_MAML| / |g_MAML|,   g_MAML the float64 second-order meta-gradient,

of FO-B forward and symmetric, plain and with the activation pattern of the anchor frozen
(Theory page, "Frozen activation patterns"), over a delta grid per dtype. Every meta-gradient is taken in training
mode: BatchNorm normalises with the statistics of the set at hand (support in the inner loop,
query in the outer loss), as MAML's reference code does.

In float32 the frozen symmetric difference has two error branches: truncation, O(delta^2),
and rounding of the gradient difference, O(eps_32 / delta). Its smallest maximum over tasks
on the grid is the float32 floor, reached at the recommended delta.

Records and tails have the format of :mod:`fobtheory.experiments.mnist1d_fidelity` (the
network's key in ``activation``, here ``"conv4"``), so the two fold into one results file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fobtheory import plotting
from fobtheory.data import EpisodeSampler, stroke_images
from fobtheory.models import Conv4
from fobtheory.nn import PLAIN_DIFFERENCES, adapted_accuracy, meta_gradient, meta_gradient_batch
from fobtheory.progress import track
from fobtheory.results import claim, make_results, save_figure, verdict

from .mnist1d import stack, threads
from .mnist1d_fidelity import COLORS, ESTIMATORS as _MNIST1D_ESTIMATORS, _flat, _Tails, draw_tails, tails

NAME = "conv4_fidelity"
NETWORK = "conv4"  # the key of the records' ``activation`` field
LABEL = "Conv4 (BatchNorm, ReLU, MaxPool2d)"
# (method, kink_guard, freeze_pattern) -> label: mnist1d_fidelity's, without the kink guard
ESTIMATORS = {key: label for key, label in _MNIST1D_ESTIMATORS.items() if not key[1]}
PLAIN, FROZEN = ("fob_symmetric", False, False), ("fob_symmetric", False, True)
FROZEN_BOUNDS = {"float32": 2e-4, "float64": 1e-8}  # max over tasks at the best delta of the grid
LIBRARY_DELTA = 1e-3  # meta_gradient_batch's default delta


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    """MAML's Omniglot protocol (Finn et al. 2017: one inner step, alpha 0.4, 5-way) on
    procedural strokes, meta-batch 8, Adam 1e-3; 200 meta-steps on 1 CPU thread take ~5 minutes,
    the estimates ~5 minutes per checkpoint."""
    cfg = dict(width=32, size=28, channels=1, ways=5, shots=5, queries=15, alpha=0.4, inner_steps=1, meta_batch=8,
               lr=1e-3, steps=[0, 50, 200], episodes=32, train_classes=60, test_classes=20, per_class=30,
               deltas={"float32": [1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "float64": [1e-6, 1e-5, 1e-4]},
               seed=seed, device=device, torch_threads=1)
    if quick:
        cfg.update(width=8, steps=[0, 3], episodes=3, meta_batch=2, train_classes=10, test_classes=5, per_class=20,
                   deltas={"float32": [1e-3, 1e-2], "float64": [1e-5]})
    return cfg


def _check(cfg):
    if sorted(cfg["steps"]) != cfg["steps"] or cfg["steps"][0] < 0:
        raise ValueError(f"steps must be increasing meta-steps >= 0, got {cfg['steps']}")
    unknown = set(cfg["deltas"]) - set(FROZEN_BOUNDS)
    if unknown:
        raise ValueError(f"deltas must be keyed by dtypes among {sorted(FROZEN_BOUNDS)}, got {sorted(unknown)}")


def samplers(cfg) -> tuple[EpisodeSampler, EpisodeSampler]:
    """Episodes of the training classes and of the held-out test classes (one stroke set)."""
    n = cfg["train_classes"] + cfg["test_classes"]
    x, y = stroke_images(n, cfg["per_class"], size=cfg["size"], channels=cfg["channels"], seed=cfg["seed"])
    common = dict(ways=cfg["ways"], shots=cfg["shots"], queries=cfg["queries"], device=cfg["device"])
    return (EpisodeSampler(x, y, classes=range(cfg["train_classes"]), seed=cfg["seed"], **common),
            EpisodeSampler(x, y, classes=range(cfg["train_classes"], n), seed=cfg["seed"] + 1, **common))


def model(cfg) -> Conv4:
    torch.manual_seed(cfg["seed"])
    return Conv4(width=cfg["width"], n_classes=cfg["ways"], channels=cfg["channels"], size=cfg["size"]).to(
        cfg["device"])


def train(cfg, sampler: EpisodeSampler, progress=None) -> dict[int, dict]:
    """Second-order MAML (Adam on the mean meta-gradient of ``meta_batch`` tasks, one task at
    a time: for MAML the single-task path is the fastest on CPU); the state at each of
    ``cfg['steps']``."""
    net = model(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    snapshots = {}
    for step in range(max(cfg["steps"]) + 1):
        if step in cfg["steps"]:
            snapshots[step] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if step == max(cfg["steps"]):
            break
        grads = [meta_gradient(net, ep.support, ep.query, method="maml", alpha=cfg["alpha"],
                               inner_steps=cfg["inner_steps"]) for ep in sampler.batch(cfg["meta_batch"])]
        for name, p in net.named_parameters():
            p.grad = torch.stack([g[name] for g in grads]).mean(0)
        opt.step()
        if progress is not None:
            progress.update(1)
    return snapshots


def fidelity(cfg, snapshots: dict, episodes) -> list[dict]:
    """Per-task relative errors against the float64 MAML meta-gradient, at every snapshot: of
    MAML in each dtype and of each estimator at each delta of its dtype (``kind="fidelity"``);
    one ``kink_info`` row per estimate, and the adapted query accuracy of each task
    (``kind="accuracy"``, float64)."""
    rows = []
    common = dict(alpha=cfg["alpha"], inner_steps=cfg["inner_steps"])

    def model_at(step, dtype):
        net = model(cfg).to(getattr(torch, dtype))
        net.load_state_dict(snapshots[step])
        return net

    for step in cfg["steps"]:
        reference_model, batch64 = model_at(step, "float64"), stack(episodes, torch.float64)
        reference = _flat(meta_gradient_batch(reference_model, *batch64, method="maml", **common))
        scale = reference.norm(dim=1)
        accuracy = adapted_accuracy(reference_model, *batch64, **common).tolist()
        rows += [dict(activation=NETWORK, kind="accuracy", step=step, episode=e, accuracy=a)
                 for e, a in enumerate(accuracy)]
        for dtype, deltas in cfg["deltas"].items():
            net, batch = model_at(step, dtype), stack(episodes, getattr(torch, dtype))
            base = dict(activation=NETWORK, dtype=dtype, step=step, kink_guard=False)

            def errors(**kw):
                g, info = meta_gradient_batch(net, *batch, return_info=True, **common, **kw)
                return ((_flat(g) - reference).norm(dim=1) / scale).tolist(), info

            errs, _ = errors(method="maml")
            rows += [dict(base, kind="fidelity", method="maml", freeze_pattern=False, delta=None, episode=e,
                          error=err) for e, err in enumerate(errs)]
            for method, _, frozen in ESTIMATORS:
                for delta in deltas:
                    errs, info = errors(method=method, delta=delta,
                                        **({"freeze_pattern": True} if frozen else PLAIN_DIFFERENCES))
                    est = dict(base, method=method, freeze_pattern=frozen, delta=delta)
                    rows += [dict(est, kind="fidelity", episode=e, error=err) for e, err in enumerate(errs)]
                    rows.append(dict(est, kind="kink_info", tasks=len(errs), kink_retries=info.kink_retries,
                                     kink_unresolved=info.kink_unresolved))
    return rows


# ---------------------------------------------------------------------------------------------
# floor, claims


def floors(t: _Tails, cfg) -> dict:
    """Per dtype: the delta of the grid whose largest maximum over tasks and checkpoints is
    smallest for the frozen symmetric difference (the recommended delta), that error (the
    floor), and the same statistic at the library's default delta. In float32 also the
    branch constants c_r = max * delta at the smallest delta (rounding) and c_t = max /
    delta^2 at the largest (truncation), whose crossing delta (c_r / 2 c_t)^(1/3) the floor
    should sit near."""
    out = {}
    for dtype, deltas in cfg["deltas"].items():
        worst = {d: max(t.at("max", NETWORK, dtype, s, FROZEN, d) for s in cfg["steps"]) for d in deltas}
        best = min(deltas, key=worst.get)
        out[dtype] = dict(delta=best, max_error=worst[best], by_delta=worst,
                          library_delta_max_error=worst.get(LIBRARY_DELTA))
        if dtype == "float32" and len(deltas) > 1:
            c_r, c_t = worst[deltas[0]] * deltas[0], worst[deltas[-1]] / deltas[-1] ** 2
            out[dtype].update(rounding_constant=c_r, truncation_constant=c_t,
                              crossing_delta=(c_r / (2 * c_t)) ** (1 / 3))
    return out


def _claims(t: _Tails, cfg, floor: dict) -> list[dict]:
    out = []
    for dtype, bound in FROZEN_BOUNDS.items():
        if dtype not in floor:
            continue
        f = floor[dtype]
        cells = ", ".join(f"step {s} {t.at('max', NETWORK, dtype, s, FROZEN, f['delta']):.2g}" for s in cfg["steps"])
        out.append(claim(
            f"conv4_frozen_pattern_max_error_{dtype}",
            f"On Conv4 with BatchNorm, FO-B symmetric with the anchor's activation pattern frozen matches "
            f"second-order MAML on every task in {dtype} at the recommended delta {f['delta']:g}",
            f"maximum relative error over {cfg['episodes']} tasks <= {bound:g} at every MAML checkpoint",
            f"{cells} (grid: " + ", ".join(f"delta {float(d):g}: {v:.2g}" for d, v in f["by_delta"].items()) + ")",
            verdict(f["max_error"] <= bound, f["max_error"] > bound)))
    if "float32" in floor:  # the floor's reason: float32 arithmetic bounds MAML itself as much
        f = floor["float32"]
        pairs = {s: (t.at("max", NETWORK, "float32", s, FROZEN, f["delta"]),
                     t.at("max", NETWORK, "float32", s, ("maml", False, False), None)) for s in cfg["steps"]}
        out.append(claim(
            "conv4_frozen_at_maml_float32_floor",
            "In float32, frozen FO-B symmetric on Conv4 is as accurate as second-order MAML computed in float32: "
            "the floor is the arithmetic's, not the estimator's",
            f"at delta {f['delta']:g}, max error over tasks <= 1.5x float32 MAML's own max error, every checkpoint",
            ", ".join(f"step {s}: FO-B {a:.2g}, MAML float32 {b:.2g}" for s, (a, b) in pairs.items()),
            verdict(all(a <= 1.5 * b for a, b in pairs.values()), any(a > 3 * b for a, b in pairs.values()))))
    trained = [s for s in cfg["steps"] if s > 0]
    if trained:
        best = {(dtype, s): min(t.at("max", NETWORK, dtype, s, PLAIN, d) for d in deltas)
                for dtype, deltas in cfg["deltas"].items() for s in trained}
        out.append(claim(
            "conv4_plain_tail_at_every_delta",
            "Without a frozen pattern no delta of the grid makes FO-B symmetric accurate on every task of the "
            "trained Conv4: ReLU and max-pooling kinks are crossed",
            "at every delta and checkpoint after step 0, the maximum relative error over tasks > 1e-2",
            "smallest max over the grid: " + "; ".join(f"{dtype} step {s}: {v:.2g}" for (dtype, s), v in best.items()),
            verdict(all(v > 1e-2 for v in best.values()), any(v <= 1e-2 for v in best.values()))))
    return out


def _highlights(t: _Tails, cfg, floor: dict, accuracy: dict) -> list[str]:
    last = max(cfg["steps"])
    lines = [f"MAML training on strokes ({cfg['ways']}-way {cfg['shots']}-shot, alpha {cfg['alpha']}, K "
             f"{cfg['inner_steps']}): adapted query accuracy on the {cfg['episodes']} tasks "
             + ", ".join(f"step {s} {a:.1%}" for s, a in accuracy.items())]
    for dtype, f in floor.items():
        cells = [f"{label} " + " / ".join(f"{t.at(stat, NETWORK, dtype, last, est, f['delta']):.2g}"
                                          for stat in ("median", "p90", "max")) for est, label in ESTIMATORS.items()]
        lines.append(f"{LABEL}, {dtype}, delta {f['delta']:g} (recommended), step {last}, median / p90 / max over "
                     f"tasks: " + ", ".join(cells)
                     + f"; MAML itself in {dtype}: max {t.at('max', NETWORK, dtype, last, ('maml', False, False), None):.2g}")
    f = floor.get("float32")
    if f and "crossing_delta" in f:
        lines.append(f"float32 floor {f['max_error']:.2g} at delta {f['delta']:g} (library default {LIBRARY_DELTA:g}: "
                     f"{f['library_delta_max_error'] or float('nan'):.2g}); rounding branch max ~ "
                     f"{f['rounding_constant']:.2g} / delta, truncation branch ~ {f['truncation_constant']:.2g} "
                     f"delta^2, crossing at delta {f['crossing_delta']:.2g}")
    return lines


# ---------------------------------------------------------------------------------------------
# the experiment


def run(cfg: dict) -> dict:
    _check(cfg)
    train_sampler, test_sampler = samplers(cfg)
    episodes = test_sampler.batch(cfg["episodes"])
    with threads(cfg["torch_threads"]):
        with track(total=max(cfg["steps"]), desc="conv4 fidelity: MAML training", unit="step") as progress:
            snapshots = train(cfg, train_sampler, progress)
        rows = fidelity(cfg, snapshots, episodes)
    summary_rows = tails(rows)
    t = _Tails(summary_rows)
    floor = floors(t, cfg)
    accuracy = {s: float(np.mean([r["accuracy"] for r in rows if r["kind"] == "accuracy" and r["step"] == s]))
                for s in cfg["steps"]}
    summary = dict(tails=summary_rows, floors=floor, accuracy=accuracy, highlights=_highlights(t, cfg, floor, accuracy))
    return make_results(NAME, cfg, rows, summary, _claims(t, cfg, floor), device=cfg["device"])


def plot(results: dict, out_dir) -> list[Path]:
    """Per dtype: median / p90 / max over tasks against delta at the last checkpoint; and the
    maximum at the recommended delta by checkpoint."""
    path = Path(out_dir) / f"{NAME}.png"
    cfg, summary = results["config"], results["summary"]
    t, floor, last = _Tails(summary["tails"]), summary["floors"], max(cfg["steps"])
    dtypes = list(cfg["deltas"])
    with plotting.style():
        fig, axes = plotting.plt.subplots(1, len(dtypes) + 1, squeeze=False, figsize=(4.6 * (len(dtypes) + 1), 4.0))
        for ax, dtype in zip(axes[0], dtypes):
            deltas = cfg["deltas"][dtype]
            draw_tails(ax, t, NETWORK, dtype, last, deltas, ESTIMATORS)
            ax.axhline(t.at("max", NETWORK, dtype, last, ("maml", False, False), None), color="black", linewidth=0.6,
                       linestyle=":", label=f"MAML in {dtype} (max)")
            ax.axhline(FROZEN_BOUNDS[dtype], color="grey", linewidth=0.8, linestyle="-.", label="claimed bound")
            ax.axvline(floor[dtype]["delta"], color="grey", linewidth=0.8, linestyle="--")
            ax.set(title=f"{LABEL}\n{dtype}, step {last}", xlabel="delta (norm of the displacement)",
                   ylabel="relative error vs float64 MAML")
            ax.legend(fontsize=6, loc="best")
        ax = axes[0][-1]
        for dtype, style in zip(dtypes, ("-", "--")):
            for est in (PLAIN, FROZEN):
                ax.plot(cfg["steps"], [t.at("max", NETWORK, dtype, s, est, floor[dtype]["delta"]) for s in cfg["steps"]],
                        style, color=COLORS[ESTIMATORS[est]], marker="o", markersize=3,
                        label=f"{ESTIMATORS[est]}, {dtype}, delta {floor[dtype]['delta']:g}")
        ax.set_xscale("symlog", linthresh=max(1, min([s for s in cfg["steps"] if s > 0], default=1)))
        ax.set_yscale("log")
        ax.set(title="maximum over tasks by checkpoint\n(recommended delta)", xlabel="MAML meta-step",
               ylabel="maximum relative error over tasks")
        ax.legend(fontsize=6)
        fig.tight_layout()
        plotting.mark_quick(fig, results)
        save_figure(fig, path)
    plotting.close(fig)
    return [path]
