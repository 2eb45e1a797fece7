"""MNIST-1D few-shot meta-learning: MAML, FO-MAML, Reptile and FO-B-MAML on CNNs (claim 4).

Three parts, one results file (``mnist1d.json``) and two figures:

1. **accuracy**: for each activation, shots, method and seed, meta-train ``CNN1D`` on
   episodes of the train split (Adam, meta-batch of tasks), then evaluate on a fixed set
   of test-split episodes (mean and 95% interval). Runs checkpoint to disk and resume.
2. **fidelity** (``mnist1d_fidelity.png``): along a MAML training run, the relative error
   of the FO-B forward and symmetric estimates against the float64 MAML meta-gradient over
   a delta grid, for ReLU and GELU, float32 and float64, with the kink guard off and on.
3. **timing**: seconds per meta-step of each method, interleaved in one process.

Intervals: the accuracy of a method is the mean over seeds of the mean over evaluation
episodes; its 95% interval is a two-level bootstrap (seeds, then episodes). Differences
between methods are paired: same seeds, same training episodes, same test episodes.
"""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fobtheory import plotting
from fobtheory.data import EpisodeSampler, cache_dir, load_mnist1d
from fobtheory.memory import wall_time
from fobtheory.nn import CNN1D, METHODS, adapted_accuracy, meta_gradient_batch
from fobtheory.results import claim, make_results, save_figure, verdict

NAME = "mnist1d"
TRAINING_VERSION = 1  # bump when a change to training, estimators or data alters a run's numbers
FIDELITY_METHODS = ("fob_forward", "fob_symmetric")
# what a fairly tuned second-order MAML reached on a prototype (DESIGN.md section 4.4)
REFERENCE_MAML = {5: 73.0, 1: 60.4}


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    cfg = dict(
        methods=list(METHODS), shots=[1, 5], activations=["relu", "gelu"], seeds=[seed, seed + 1, seed + 2],
        guarded_activations=["relu"],  # also train fob_symmetric with the kink guard for these
        ways=5, queries=15, width=25, depth=3, alpha=0.4, inner_steps=1, delta=1e-3, kink_tol=0.1,
        meta_batch=8, meta_steps=4000, lr=1e-3, eval_episodes=600, eval_every=250, curve_episodes=100,
        eval_seed=10_000 + seed, num_samples=5000, test_classes=None, dtype="float32", device=device,
        torch_threads=1, checkpoint_every=250, checkpoint_dir=None,
        fidelity=dict(steps=[0, 200, 800], episodes=8, deltas=np.geomspace(1e-8, 1e-1, 15).tolist(),
                      dtypes=["float32", "float64"], shots=5),
        timing_rounds=20,
    )
    if quick:
        cfg.update(shots=[5], activations=["gelu"], seeds=[seed], guarded_activations=[], meta_steps=30,
                   eval_episodes=40, eval_every=15, curve_episodes=20, checkpoint_every=15, timing_rounds=3,
                   fidelity=dict(steps=[0, 30], episodes=2, deltas=[1e-6, 1e-4, 1e-2], dtypes=["float32", "float64"],
                                 shots=5))
    return cfg


# ---------------------------------------------------------------------------------------------
# episodes and runs


def stack(episodes, dtype=None):
    """Stacked ``(supports, queries)`` of a list of episodes, optionally cast to ``dtype``."""
    def cast(t):
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    supports = tuple(cast(torch.stack([e.support[i] for e in episodes])) for i in range(2))
    queries = tuple(cast(torch.stack([e.query[i] for e in episodes])) for i in range(2))
    return supports, queries


def _samplers(cfg, data, shots):
    classes = set(range(10))
    test_classes = set(cfg["test_classes"]) if cfg["test_classes"] is not None else classes
    train_classes = classes - test_classes if cfg["test_classes"] is not None else classes
    common = dict(ways=cfg["ways"], shots=shots, queries=cfg["queries"], device=cfg["device"],
                  dtype=getattr(torch, cfg["dtype"]))
    train = lambda seed: EpisodeSampler(data["x"], data["y"], classes=train_classes, seed=seed, **common)  # noqa: E731
    test = EpisodeSampler(data["x_test"], data["y_test"], classes=test_classes, seed=cfg["eval_seed"] + shots, **common)
    return train, test


def _model(cfg, activation, seed):
    torch.manual_seed(seed)
    return CNN1D(width=cfg["width"], depth=cfg["depth"], activation=activation, n_classes=cfg["ways"]).to(
        device=cfg["device"], dtype=getattr(torch, cfg["dtype"]))


def evaluate(model, episodes, cfg, batch: int = 50) -> np.ndarray:
    """Accuracy (percent) on each episode after adaptation."""
    out = [adapted_accuracy(model, *stack(episodes[i:i + batch]), alpha=cfg["alpha"], inner_steps=cfg["inner_steps"])
           for i in range(0, len(episodes), batch)]
    return 100 * torch.cat(out).cpu().numpy()


def _run_dir(cfg) -> Path:
    """Folder of the finished runs and checkpoints of this training configuration: keyed by
    the parameters that shape a run and by TRAINING_VERSION, so a run resumes only into
    the same configuration and code."""
    shared = {k: v for k, v in cfg.items() if k not in ("methods", "shots", "activations", "seeds", "device",
                                                        "checkpoint_dir", "fidelity", "timing_rounds",
                                                        "guarded_activations", "torch_threads")}
    key = hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cfg["checkpoint_dir"]) if cfg["checkpoint_dir"] else cache_dir() / "mnist1d-runs"
    return root / f"v{TRAINING_VERSION}-{key}"


def _save(obj, path: Path):
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(cfg, data, *, activation, shots, method, seed, guard, run_dir: Path, progress, snapshot_steps=()) -> dict:
    """Meta-train one configuration (resuming from its checkpoint) and evaluate it."""
    name = f"{activation}-{shots}shot-{method}{'-guard' if guard else ''}-seed{seed}"
    done = run_dir / f"{name}.json"
    if done.exists():
        progress.update(cfg["meta_steps"])
        return json.loads(done.read_text())
    train_sampler, test_sampler = _samplers(cfg, data, shots)
    sampler = train_sampler(seed)
    curve_episodes = test_sampler.batch(cfg["curve_episodes"])
    model = _model(cfg, activation, seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    state = dict(step=0, curve=[], seconds=[], snapshots={})
    ckpt = run_dir / f"{name}.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sampler.rng.bit_generator.state = saved["rng"]
        state = saved["state"]
        progress.update(state["step"])
    kw = dict(method=method, alpha=cfg["alpha"], inner_steps=cfg["inner_steps"], delta=cfg["delta"],
              kink_tol=cfg["kink_tol"] if guard else None)
    for step in range(state["step"], cfg["meta_steps"]):
        if step in snapshot_steps:
            state["snapshots"][step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        start = time.perf_counter()
        grads = meta_gradient_batch(model, *stack(sampler.batch(cfg["meta_batch"])), **kw)
        for n, p in model.named_parameters():
            p.grad = grads[n].mean(0)
        opt.step()
        state["seconds"].append(time.perf_counter() - start)
        state["step"] = step + 1
        progress.update(1)
        if state["step"] % cfg["eval_every"] == 0 or state["step"] == cfg["meta_steps"]:
            state["curve"].append((state["step"], float(evaluate(model, curve_episodes, cfg).mean())))
        if state["step"] % cfg["checkpoint_every"] == 0 and state["step"] < cfg["meta_steps"]:
            _save(dict(model=model.state_dict(), opt=opt.state_dict(), rng=sampler.rng.bit_generator.state,
                       state=state), ckpt)
    if cfg["meta_steps"] in snapshot_steps:
        state["snapshots"][cfg["meta_steps"]] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    accuracy = evaluate(model, test_sampler.batch(cfg["eval_episodes"]), cfg)
    result = dict(activation=activation, shots=shots, method=method, kink_guard=guard, seed=seed,
                  accuracy=accuracy.tolist(), curve=state["curve"],
                  seconds_per_step=float(np.median(state["seconds"])) if state["seconds"] else None)
    if state["snapshots"]:
        _save(state["snapshots"], run_dir / f"{name}.snapshots.pt")
    done.write_text(json.dumps(result))
    ckpt.unlink(missing_ok=True)
    return result


# ---------------------------------------------------------------------------------------------
# fidelity of the finite differences against the MAML meta-gradient


def _flat(grads):
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1).to(torch.float64)


def fidelity(cfg, data, activation, snapshots: dict) -> list[dict]:
    """Relative error of FO-B estimates against the float64 MAML meta-gradient."""
    f = cfg["fidelity"]
    deltas = sorted({float(f"{d:.6g}") for d in f["deltas"]} | {cfg["delta"]})  # the training delta included
    _, test_sampler = _samplers(cfg, data, f["shots"])
    episodes = test_sampler.batch(f["episodes"])
    rows = []
    for step, weights in sorted(snapshots.items()):
        model64 = _model(cfg, activation, 0).double()
        model64.load_state_dict(weights)
        reference = _flat(meta_gradient_batch(model64, *stack(episodes, torch.float64), method="maml",
                                              alpha=cfg["alpha"], inner_steps=cfg["inner_steps"]))
        scale = reference.norm(dim=1)
        for dtype_name in f["dtypes"]:
            dtype = getattr(torch, dtype_name)
            model = model64.to(dtype) if dtype != torch.float64 else model64
            batch = stack(episodes, dtype)
            base = dict(activation=activation, dtype=dtype_name, step=step, kind="fidelity")

            def errors(**kw):
                g = _flat(meta_gradient_batch(model, *batch, alpha=cfg["alpha"], inner_steps=cfg["inner_steps"], **kw))
                return ((g - reference).norm(dim=1) / scale).tolist()

            for e, err in enumerate(errors(method="maml")):
                rows.append(dict(base, method="maml", delta=None, kink_guard=False, episode=e, error=err))
            for method in FIDELITY_METHODS:
                for guard in (False, True) if method == "fob_symmetric" else (False,):
                    for delta in deltas:
                        for e, err in enumerate(errors(method=method, delta=delta,
                                                       kink_tol=cfg["kink_tol"] if guard else None)):
                            rows.append(dict(base, method=method, delta=delta, kink_guard=guard, episode=e, error=err))
            model64 = model.double()
    return rows


# ---------------------------------------------------------------------------------------------
# timing


def timing(cfg, data) -> list[dict]:
    """Median seconds per meta-step of each method, the methods interleaved round by round."""
    train_sampler, _ = _samplers(cfg, data, max(cfg["shots"]))
    sampler = train_sampler(cfg["seeds"][0])
    model = _model(cfg, cfg["activations"][0], cfg["seeds"][0])
    batch = stack(sampler.batch(cfg["meta_batch"]))
    times = {m: [] for m in cfg["methods"]}
    for _ in range(cfg["timing_rounds"] + 1):  # the first round warms up
        for m in cfg["methods"]:
            times[m].append(wall_time(lambda: meta_gradient_batch(  # noqa: B023 (called at once)
                model, *batch, method=m, alpha=cfg["alpha"], inner_steps=cfg["inner_steps"], delta=cfg["delta"]),
                cfg["device"]))
    median = {m: float(np.median(t[1:])) for m, t in times.items()}
    base = median.get("maml", np.nan)
    return [dict(kind="timing", method=m, shots=max(cfg["shots"]), meta_batch=cfg["meta_batch"],
                 seconds_per_step=s, ratio_to_maml=s / base) for m, s in median.items()]


# ---------------------------------------------------------------------------------------------
# statistics and claims


def hierarchical_interval(per_seed: list[np.ndarray], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds of the mean over episodes, and a 95% bootstrap interval that resamples
    seeds and then episodes within each seed."""
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        picks = rng.integers(0, len(per_seed), len(per_seed))
        means.append(np.mean([rng.choice(per_seed[i], len(per_seed[i])).mean() for i in picks]))
    low, high = np.percentile(means, [2.5, 97.5])
    return float(np.mean([a.mean() for a in per_seed])), float(low), float(high)


def _interval(per_seed: list[np.ndarray]) -> dict:
    """:func:`hierarchical_interval` as ``{"mean", "ci_low", "ci_high"}``."""
    return dict(zip(("mean", "ci_low", "ci_high"), hierarchical_interval(per_seed)))


def _paired(a: list[np.ndarray], b: list[np.ndarray]) -> dict:
    """Interval of the accuracy difference a - b, paired by seed and episode."""
    return _interval([x - y for x, y in zip(a, b)])


def _points(d: dict) -> str:
    return f"{d['mean']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}] points"


def _accuracies(results, activation, shots, method, guard=False) -> list[np.ndarray]:
    runs = sorted((r for r in results if (r["activation"], r["shots"], r["method"], r["kink_guard"])
                   == (activation, shots, method, guard)), key=lambda r: r["seed"])
    return [np.asarray(r["accuracy"]) for r in runs]


def summarize(results: list[dict], timing_rows, fidelity_rows, cfg) -> tuple[dict, list[dict]]:
    summary = {"accuracy": {}, "difference_to_maml": {}, "timing": {r["method"]: r["ratio_to_maml"] for r in timing_rows}}
    variants = sorted({(r["activation"], r["shots"], r["method"], r["kink_guard"]) for r in results})
    for act, shots, method, guard in variants:
        key = f"{act}/{shots}shot/{method}{'+guard' if guard else ''}"
        summary["accuracy"][key] = _interval(_accuracies(results, act, shots, method, guard))
        maml = _accuracies(results, act, shots, "maml")
        if method != "maml" and maml:
            summary["difference_to_maml"][key] = _paired(_accuracies(results, act, shots, method, guard), maml)
    summary["highlights"] = _highlights(summary, fidelity_rows, cfg)
    return summary, _claims(summary, results, fidelity_rows, cfg)


def _highlights(summary, fidelity_rows, cfg) -> list[str]:
    """Key numbers as sentences, for the README and the ledger."""
    lines = []
    for act in cfg["activations"]:
        for s in cfg["shots"]:
            cells = [(k.split("/")[2], a) for k, a in summary["accuracy"].items() if k.startswith(f"{act}/{s}shot/")]
            if cells:
                ref = f"; prototype MAML {REFERENCE_MAML[s]:.1f} (DESIGN 4.4)" if s in REFERENCE_MAML else ""
                lines.append(f"{act.upper()}, 5-way {s}-shot, accuracy % [95% interval], {len(cfg['seeds'])} seeds x "
                             f"{cfg['eval_episodes']} test episodes: " + ", ".join(
                                 f"{m} {a['mean']:.1f} [{a['ci_low']:.1f}, {a['ci_high']:.1f}]" for m, a in cells) + ref)
    if summary["timing"]:
        lines.append("Time per meta-step / MAML's (interleaved, meta-batch "
                     f"{cfg['meta_batch']}, {max(cfg['shots'])}-shot, {cfg['device']}): "
                     + ", ".join(f"{m} {r:.2f}" for m, r in summary["timing"].items()))
    if fidelity_rows:
        last = max(r["step"] for r in fidelity_rows)
        cells = [f"{act.upper()} {dt}{' + guard' if guard else ''} "
                 f"{_median_error(fidelity_rows, activation=act, dtype=dt, kink_guard=guard, step=last, method='fob_symmetric', delta=cfg['delta']):.2g}"
                 for act in sorted({r['activation'] for r in fidelity_rows}) for dt in cfg["fidelity"]["dtypes"]
                 for guard in (False, True)]
        lines.append(f"Median relative error of FO-B symmetric against the float64 MAML meta-gradient at delta = "
                     f"{cfg['delta']:g} after {last} MAML steps: " + ", ".join(cells))
    return lines


def _claims(summary, results, fidelity_rows, cfg) -> list[dict]:
    claims = []
    diff = summary["difference_to_maml"]
    for act in cfg["activations"]:
        cells = [(s, diff.get(f"{act}/{s}shot/fob_symmetric")) for s in cfg["shots"]]
        cells = [(s, d) for s, d in cells if d is not None]
        if not cells:
            continue
        inside = [d["ci_low"] >= -1 and d["ci_high"] <= 1 for _, d in cells]
        outside = [d["ci_low"] > 1 or d["ci_high"] < -1 for _, d in cells]
        claims.append(claim(
            f"fob_tracks_maml_{act}",
            f"FO-B-MAML (symmetric, delta={cfg['delta']:g} normalized, {cfg['dtype']}) tracks second-order MAML "
            f"on MNIST-1D with {act.upper()}",
            "accuracy difference to MAML within +-1 point (95% interval)",
            "; ".join(f"{s}-shot: {_points(d)}" for s, d in cells),
            verdict(all(inside), any(outside))))
    acc = summary["accuracy"]
    for act in cfg["activations"]:
        for s in cfg["shots"]:
            fob = _accuracies(results, act, s, "fob_symmetric")
            rivals = [m for m in ("fo_maml", "reptile") if _accuracies(results, act, s, m)]
            if not fob or not rivals:
                continue
            best = max(rivals, key=lambda m: acc[f"{act}/{s}shot/{m}"]["mean"])
            d = _paired(fob, _accuracies(results, act, s, best))
            claims.append(claim(
                f"fob_above_first_order_{act}_{s}shot",
                f"FO-B-MAML symmetric is at or above FO-MAML and Reptile ({act.upper()}, 5-way {s}-shot)",
                "difference to the better of FO-MAML/Reptile not below -1 point (95% interval)",
                f"{_points(d)} vs {best}",
                verdict(d["ci_low"] >= -1, d["ci_high"] < 0)))
    claims += _guard_claims(results, cfg)
    claims += _fidelity_claims(fidelity_rows, cfg)
    return claims


def _guard_claims(results, cfg) -> list[dict]:
    """Does the kink guard, switched on during meta-training, raise ReLU accuracy? Paired by seed."""
    cells = []
    for s in cfg["shots"]:
        on = _accuracies(results, "relu", s, "fob_symmetric", guard=True)
        off = _accuracies(results, "relu", s, "fob_symmetric")
        if on and len(on) == len(off):
            cells.append((s, _paired(on, off)))
    if not cells:
        return []
    return [claim(
        "kink_guard_improves_relu_accuracy",
        "Meta-training FO-B-MAML symmetric with the kink guard on raises its ReLU accuracy",
        "accuracy with the guard minus without above 0 at every shot count (95% interval)",
        "; ".join(f"{s}-shot: {_points(d)}" for s, d in cells),
        verdict(all(d["ci_low"] > 0 for _, d in cells), any(d["ci_high"] < 0 for _, d in cells)))]


def _median_error(rows, **match) -> float:
    errs = [r["error"] for r in rows if all(r.get(k) == v for k, v in match.items())]
    return float(np.median(errs)) if errs else float("nan")


def _fidelity_claims(rows, cfg) -> list[dict]:
    if not rows:
        return []
    last = max(r["step"] for r in rows)
    at = dict(step=last, dtype=cfg["dtype"], method="fob_symmetric", delta=cfg["delta"])
    relu = _median_error(rows, activation="relu", kink_guard=False, **at)
    gelu = _median_error(rows, activation="gelu", kink_guard=False, **at)
    guarded = _median_error(rows, activation="relu", kink_guard=True, **at)
    claims = []
    if np.isfinite(relu) and np.isfinite(gelu):
        claims.append(claim(
            "relu_kinks_degrade_finite_differences",
            f"After {last} MAML steps, activation kinks make the symmetric difference inaccurate at the default "
            f"delta ({cfg['delta']:g}, {cfg['dtype']}): ReLU's error exceeds GELU's",
            "median relative error ReLU >= 10x GELU",
            f"ReLU {relu:.2g}, GELU {gelu:.2g} (ratio {relu / gelu:.3g})",
            verdict(relu >= 10 * gelu, relu < 2 * gelu)))
    if np.isfinite(relu) and np.isfinite(guarded):
        claims.append(claim(
            "kink_guard_restores_fidelity",
            "The kink guard (shrink delta when the one-sided differences disagree) lowers ReLU's error",
            "median relative error with the guard <= half of without",
            f"{guarded:.2g} with the guard, {relu:.2g} without",
            verdict(guarded <= relu / 2, guarded >= relu)))
    return claims


# ---------------------------------------------------------------------------------------------
# the experiment


@contextmanager
def _threads(n):
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _plan(cfg):
    runs = [(a, s, m, s == cfg["fidelity"]["shots"] and m == "maml" and seed == cfg["seeds"][0], seed, False)
            for a in cfg["activations"] for s in cfg["shots"] for seed in cfg["seeds"] for m in cfg["methods"]]
    runs += [(a, s, "fob_symmetric", False, seed, True) for a in cfg["guarded_activations"] if a in cfg["activations"]
             for s in cfg["shots"] for seed in cfg["seeds"] if "fob_symmetric" in cfg["methods"]]
    return runs


def run(cfg: dict) -> dict:
    unknown = set(cfg["methods"]) - set(METHODS)
    if unknown:
        raise ValueError(f"methods must be among {METHODS}, got {sorted(unknown)}")
    data = load_mnist1d(num_samples=cfg["num_samples"])
    run_dir = _run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(cfg)
    results, snapshots = [], {}
    with _threads(cfg["torch_threads"]):
        with tqdm(total=len(plan) * cfg["meta_steps"], desc="mnist1d meta-steps", unit="step") as progress:
            for act, shots, method, snap, seed, guard in plan:
                progress.set_postfix_str(f"{act} {shots}-shot {method}{' guard' if guard else ''} seed {seed}")
                results.append(train(cfg, data, activation=act, shots=shots, method=method, seed=seed, guard=guard,
                                     run_dir=run_dir, progress=progress,
                                     snapshot_steps=cfg["fidelity"]["steps"] if snap else ()))
                if snap:
                    snapshots[act] = torch.load(run_dir / f"{act}-{shots}shot-maml-seed{seed}.snapshots.pt")
        fidelity_rows = [r for act, snaps in snapshots.items() for r in fidelity(cfg, data, act, snaps)]
        timing_rows = timing(cfg, data)
    records = []
    for r in results:
        per_seed = np.asarray(r["accuracy"])
        common = {k: r[k] for k in ("method", "activation", "kink_guard", "seed", "shots")}
        records.append(dict(kind="final", ways=cfg["ways"], **common, accuracy=float(per_seed.mean()),
                            ci95=float(1.96 * per_seed.std(ddof=1) / np.sqrt(len(per_seed))),
                            episodes=len(per_seed), seconds_per_step=r["seconds_per_step"]))
        records += [dict(kind="curve", ways=cfg["ways"], **common, step=s, accuracy=a) for s, a in r["curve"]]
    summary, claims = summarize(results, timing_rows, fidelity_rows, cfg)
    return make_results(NAME, cfg, records + fidelity_rows + timing_rows, summary, claims, device=cfg["device"])


# ---------------------------------------------------------------------------------------------
# figures


def plot(results: dict, out_dir) -> list[Path]:
    out_dir = Path(out_dir)
    return [_plot_accuracy(results, out_dir / "mnist1d.png"), _plot_fidelity(results, out_dir / "mnist1d_fidelity.png")]


def _label(method, guard):
    return method + (" + kink guard" if guard else "")


def _plot_accuracy(results, path):
    cfg, recs = results["config"], results["records"]
    acts, shots = cfg["activations"], cfg["shots"]
    with plotting.style():
        fig, axes = plotting.plt.subplots(len(acts), len(shots) + 1, figsize=(4.6 * (len(shots) + 1), 3.6 * len(acts)),
                                          squeeze=False)
        for i, act in enumerate(acts):
            for j, s in enumerate(shots):
                ax = axes[i][j]
                variants = sorted({(r["method"], r["kink_guard"]) for r in recs
                                   if r["kind"] == "curve" and r["activation"] == act and r["shots"] == s})
                for method, guard in variants:
                    rows = [r for r in recs if r["kind"] == "curve" and (r["activation"], r["shots"], r["method"],
                                                                          r["kink_guard"]) == (act, s, method, guard)]
                    steps = sorted({r["step"] for r in rows})
                    mean = [np.mean([r["accuracy"] for r in rows if r["step"] == t]) for t in steps]
                    ax.plot(steps, mean, color=plotting.METHOD_COLORS.get(method), linestyle=":" if guard else "-",
                            label=_label(method, guard))
                if s in REFERENCE_MAML:
                    ax.axhline(REFERENCE_MAML[s], color="grey", linewidth=0.8, linestyle="--",
                               label="prototype MAML (DESIGN 4.4)")
                ax.set(title=f"{act.upper()}, 5-way {s}-shot", xlabel="meta-step",
                       ylabel=f"test accuracy, % ({cfg['curve_episodes']} episodes)")
                ax.legend(loc="best")
            ax = axes[i][-1]
            keys = [k for k in results["summary"]["accuracy"] if k.startswith(f"{act}/")]
            for y, key in enumerate(keys):
                a = results["summary"]["accuracy"][key]
                method = key.split("/")[2].split("+")[0]
                ax.errorbar(a["mean"], y, xerr=[[a["mean"] - a["ci_low"]], [a["ci_high"] - a["mean"]]], fmt="o",
                            color=plotting.METHOD_COLORS.get(method), capsize=3)
            ax.set_yticks(range(len(keys)), [k.split("/", 1)[1] for k in keys], fontsize=7)
            ax.set(title=f"{act.upper()}: final accuracy, 95% interval", xlabel=f"test accuracy, % "
                   f"({cfg['eval_episodes']} episodes x {len(cfg['seeds'])} seeds)")
        fig.tight_layout()
        save_figure(fig, path)
    plotting.close(fig)
    return path


def _plot_fidelity(results, path):
    cfg = results["config"]
    rows = [r for r in results["records"] if r.get("kind") == "fidelity"]
    acts = sorted({r["activation"] for r in rows}) or cfg["activations"]
    dtypes = cfg["fidelity"]["dtypes"]
    steps = sorted({r["step"] for r in rows})
    cmap = plotting.plt.get_cmap("viridis")
    with plotting.style():
        fig, axes = plotting.plt.subplots(len(dtypes), len(acts), figsize=(5 * len(acts), 3.8 * len(dtypes)),
                                          squeeze=False, sharey=True)
        for i, dt in enumerate(dtypes):
            for j, act in enumerate(acts):
                ax = axes[i][j]
                for k, step in enumerate(steps):
                    color = cmap(k / max(1, len(steps) - 1))
                    for method, guard, style in (("fob_symmetric", False, "-"), ("fob_forward", False, "--"),
                                                 ("fob_symmetric", True, ":")):
                        if (method, guard) != ("fob_symmetric", False) and step != steps[-1]:
                            continue
                        sel = [r for r in rows if (r["activation"], r["dtype"], r["step"], r["method"], r["kink_guard"])
                               == (act, dt, step, method, guard)]
                        deltas = sorted({r["delta"] for r in sel})
                        med = [np.median([r["error"] for r in sel if r["delta"] == d]) for d in deltas]
                        ax.loglog(deltas, med, style, color=color, marker="o" if style == "-" else None, markersize=3,
                                  label=f"{_label(method, guard)}, step {step}")
                    maml = [r["error"] for r in rows if (r["activation"], r["dtype"], r["step"], r["method"])
                            == (act, dt, step, "maml")]
                    if dt != "float64" and maml:
                        ax.axhline(np.median(maml), color=color, linewidth=0.6, alpha=0.6)
                ax.axvline(cfg["delta"], color="grey", linewidth=0.8, linestyle="--")
                ax.set(title=f"{act.upper()}, {dt} (thin lines: MAML itself in {dt})",
                       xlabel="delta (norm of the parameter displacement)",
                       ylabel="relative error vs float64 MAML (median)")
                ax.legend(fontsize=6, loc="upper left")
        fig.tight_layout()
        save_figure(fig, path)
    plotting.close(fig)
    return path
