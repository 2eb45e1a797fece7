"""Memory and time per meta-gradient: the activation bottleneck of MAML vs FO-B-MAML (claim 4).

For each setting (depth, meta-batch, shots), width and number of inner steps K, one
meta-gradient of a meta-batch of episodes is computed by each method, all in one process:

- ``peak_bytes``: the largest total of live tensor storages (:class:`fobtheory.memory.PeakMemory`),
  the same number on every run; on CUDA also ``torch.cuda.max_memory_allocated``;
- ``seconds``: the median wall time over ``repeats`` rounds in which the methods take turns
  (so that machine noise hits them alike), measured without the meter.

FO-B-MAML symmetric appears twice: as used for training (the inner iterates stored, K+1
parameter vectors per task; the two stencil points in one batched call) and *lean*
(``store_iterates=False``: iterates recomputed, memory flat in K for ``K(K-1)/2`` more
gradient calls; ``stack_stencil=False``: one stencil point per call, the peak of a single
gradient). Exact MAML by Hessian-vector products (``maml_hvp``) appears with
its iterates stored and recomputed (``maml_hvp_lean``), FO-B's storage options. The inputs are
random tensors shaped like MNIST-1D episodes: memory and time do not depend on their values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.ticker import LogFormatter

from fobtheory import plotting
from fobtheory.memory import measure, wall_time
from fobtheory.nn import CNN1D, PLAIN_DIFFERENCES, meta_gradient_batch
from fobtheory.progress import track
from fobtheory.results import claim, make_results, save_figure, verdict

NAME = "memory"
# label -> (method, FO-B memory options)
LEAN = dict(store_iterates=False, stack_stencil=False)
VARIANTS = {"maml": ("maml", {}), "fo_maml": ("fo_maml", {}), "fob_forward": ("fob_forward", {}),
            "fob_symmetric": ("fob_symmetric", {}), "fob_symmetric_lean": ("fob_symmetric", LEAN),
            "maml_hvp": ("maml_hvp", {}), "maml_hvp_lean": ("maml_hvp", dict(store_iterates=False))}
MIB = 2**20


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    cfg = dict(
        settings={"standard": dict(depth=3, meta_batch=8, shots=5, queries=15),
                  "heavy": dict(depth=6, meta_batch=16, shots=5, queries=15)},
        widths=[16, 32, 64, 128, 250], inner_steps=[1, 5, 10], ways=5, length=40, alpha=0.4, delta=1e-3,
        variants=list(VARIANTS), repeats=5, seed=seed, device=device, torch_threads=1,
    )
    if quick:
        cfg.update(settings={"standard": dict(depth=3, meta_batch=2, shots=5, queries=15)}, widths=[16, 64],
                   inner_steps=[1, 3], repeats=1)
    return cfg


def _episodes(cfg, setting, device):
    g = torch.Generator().manual_seed(cfg["seed"])
    B, n_s, n_q = setting["meta_batch"], cfg["ways"] * setting["shots"], cfg["ways"] * setting["queries"]
    def pair(n):
        return (torch.randn(B, n, 1, cfg["length"], generator=g).to(device),
                torch.randint(0, cfg["ways"], (B, n), generator=g).to(device))
    return pair(n_s), pair(n_q)


def _call(model, supports, queries, variant, K, cfg):
    method, options = VARIANTS[variant]
    return lambda: meta_gradient_batch(model, supports, queries, method=method, alpha=cfg["alpha"], inner_steps=K,
                                       delta=cfg["delta"], **PLAIN_DIFFERENCES, **options)


def measure_points(cfg: dict, desc: str = "memory") -> list[dict]:
    """Peak and time of every variant of ``cfg["variants"]`` at every (setting, width, K) of
    ``cfg``, the variants interleaved round by round: one record per variant and point."""
    unknown = set(cfg["variants"]) - set(VARIANTS)
    if unknown:
        raise ValueError(f"variants must be among {list(VARIANTS)}, got {sorted(unknown)}")
    device = cfg["device"]
    before = torch.get_num_threads()
    torch.set_num_threads(cfg["torch_threads"] or before)
    records = []
    points = [(s, w, K) for s in cfg["settings"] for w in cfg["widths"] for K in cfg["inner_steps"]]
    try:
        for name, width, K in track(points, desc=desc, unit="config"):
            setting = cfg["settings"][name]
            torch.manual_seed(cfg["seed"])
            model = CNN1D(width=width, depth=setting["depth"], n_classes=cfg["ways"], length=cfg["length"]).to(device)
            supports, queries = _episodes(cfg, setting, device)
            alive = [*model.parameters(), *supports, *queries]
            calls = {v: _call(model, supports, queries, v, K, cfg) for v in cfg["variants"]}
            for fn in calls.values():  # warm-up: first-call caches are not the method's memory
                fn()
            mem = {v: measure(fn, *alive, device=device) for v, fn in calls.items()}
            times = {v: [] for v in calls}
            for _ in range(cfg["repeats"]):
                for v, fn in calls.items():
                    times[v].append(wall_time(fn, device))
            params = sum(p.numel() for p in model.parameters())
            for v in calls:
                records.append(dict(setting=name, method=VARIANTS[v][0], variant=v, lean=v.endswith("_lean"),
                                    width=width,
                                    depth=setting["depth"], inner_steps=K, meta_batch=setting["meta_batch"],
                                    shots=setting["shots"], queries=setting["queries"], parameters=params,
                                    peak_bytes=mem[v].peak_bytes, cuda_max_allocated=mem[v].cuda_max_allocated,
                                    seconds=float(np.median(times[v]))))
    finally:
        torch.set_num_threads(before)
    return records


def run(cfg: dict) -> dict:
    records = measure_points(cfg)
    summary = summarize(records, cfg)
    return make_results(NAME, cfg, records, summary, claims(summary, cfg), device=cfg["device"])


# ---------------------------------------------------------------------------------------------
# summary and claims


def _get(records, **match):
    rows = [r for r in records if all(r[k] == v for k, v in match.items())]
    return rows[0] if rows else None


def summarize(records, cfg) -> dict:
    """Ratios at the largest width and K of the heaviest setting, and worst cases over the grid."""
    setting = list(cfg["settings"])[-1]
    w, Kmax, Kmin = max(cfg["widths"]), max(cfg["inner_steps"]), min(cfg["inner_steps"])
    at = lambda v, K=Kmax, width=w: _get(records, setting=setting, variant=v, width=width, inner_steps=K)  # noqa: E731
    present = [v for v in cfg["variants"] if at(v)]
    out = {"setting": setting, "width": w, "inner_steps": Kmax,
           "peak_mib": {v: at(v)["peak_bytes"] / MIB for v in present},
           "seconds": {v: at(v)["seconds"] for v in present}}
    if "maml" in present:
        out["peak_ratio_to_maml"] = {v: at(v)["peak_bytes"] / at("maml")["peak_bytes"] for v in present}
        out["time_ratio_to_maml"] = {v: at(v)["seconds"] / at("maml")["seconds"] for v in present}
    if "fo_maml" in present:
        out["peak_ratio_to_fo_maml"] = {v: at(v)["peak_bytes"] / at("fo_maml")["peak_bytes"] for v in present}
    out["peak_growth_K"] = {v: at(v)["peak_bytes"] / at(v, Kmin)["peak_bytes"] for v in present}
    grid = [(s, width, K) for s in cfg["settings"] for width in cfg["widths"] for K in cfg["inner_steps"]]

    def worst(num, den, Ks=cfg["inner_steps"]):
        ratios = [(_get(records, setting=s, variant=num, width=width, inner_steps=K)["peak_bytes"]
                   / _get(records, setting=s, variant=den, width=width, inner_steps=K)["peak_bytes"], s, width, K)
                  for s, width, K in grid if K in Ks]
        return max(ratios)

    def growth(v):
        return max((_get(records, setting=s, variant=v, width=width, inner_steps=Kmax)["peak_bytes"]
                    / _get(records, setting=s, variant=v, width=width, inner_steps=Kmin)["peak_bytes"], s, width)
                   for s in cfg["settings"] for width in cfg["widths"])

    for v in ("fob_symmetric", "fob_symmetric_lean", "fob_forward"):
        if v in present and "fo_maml" in present:
            out[f"worst_{v}_over_fo_maml"] = worst(v, "fo_maml")
        if v in present:
            out[f"worst_growth_K_{v}"] = growth(v)
    if "maml" in present:
        out["least_growth_K_maml"] = min((_get(records, setting=s, variant="maml", width=width, inner_steps=Kmax)
                                          ["peak_bytes"] / _get(records, setting=s, variant="maml", width=width,
                                                                inner_steps=Kmin)["peak_bytes"], s, width)
                                         for s in cfg["settings"] for width in cfg["widths"])
    st = cfg["settings"][setting]
    where = (f"{setting} setting (depth {st['depth']}, meta-batch {st['meta_batch']}, {st['shots']}-shot, "
             f"{st['queries']} queries), width {w}, K = {Kmax}")
    out["highlights"] = [f"{where}: peak live tensors " + ", ".join(f"{v} {m:.3g} MiB" for v, m in out["peak_mib"].items())]
    for ratio, label in (("peak_ratio_to_maml", "peak / MAML's"), ("peak_ratio_to_fo_maml", "peak / FO-MAML's"),
                         ("peak_growth_K", f"peak(K={Kmax}) / peak(K={Kmin})"), ("time_ratio_to_maml", "time / MAML's")):
        if ratio in out:
            out["highlights"].append(f"{label}: " + ", ".join(f"{v} {r:.2f}" for v, r in out[ratio].items()))
    mid = sorted(cfg["inner_steps"])[len(cfg["inner_steps"]) // 2]
    if {"maml", "fob_symmetric"} <= set(present):
        out["time_ratio_fob_symmetric_to_maml_midK"] = {
            f"{s}/w{width}/K{mid}": _get(records, setting=s, variant="fob_symmetric", width=width, inner_steps=mid)
            ["seconds"] / _get(records, setting=s, variant="maml", width=width, inner_steps=mid)["seconds"]
            for s in cfg["settings"] for width in cfg["widths"]}
    return out


def claims(summary, cfg) -> list[dict]:
    out = []
    where = f"{summary['setting']} setting, width {summary['width']}"
    Kmin, Kmax = min(cfg["inner_steps"]), max(cfg["inner_steps"])
    for v, label in (("fob_symmetric", "inner iterates stored, stencil batched"),
                     ("fob_symmetric_lean", "lean: iterates recomputed, one stencil point per call")):
        key = f"worst_growth_K_{v}"
        if key in summary:
            g, s, w = summary[key]
            out.append(claim(
                f"fob_memory_flat_in_K_{'lean' if 'lean' in v else 'store'}",
                f"FO-B-MAML symmetric ({label}) keeps a flat memory footprint in the number of inner steps",
                f"peak(K={Kmax}) / peak(K={Kmin}) <= 1.3 at every width and setting",
                f"worst {g:.2f} ({s}, width {w}); at {where}: {summary['peak_growth_K'][v]:.2f}",
                verdict(g <= 1.3, g > 1.3)))
    for v in ("fob_symmetric", "fob_symmetric_lean"):
        key = f"worst_{v}_over_fo_maml"
        if key in summary:
            r, s, w, K = summary[key]
            out.append(claim(
                f"{v}_near_first_order_floor",
                f"FO-B-MAML symmetric{' (lean)' if 'lean' in v else ''} needs about the memory of FO-MAML, "
                f"the first-order floor",
                "peak / FO-MAML peak <= 1.3 at every width, K and setting",
                f"worst {r:.2f} ({s}, width {w}, K={K})",
                verdict(r <= 1.3, r > 1.3)))
    if "least_growth_K_maml" in summary and "peak_ratio_to_maml" in summary:
        g, s, w = summary["least_growth_K_maml"]
        ratio = summary["peak_ratio_to_maml"]
        out.append(claim(
            "maml_memory_grows",
            "Second-order MAML's memory grows with the inner steps (the activation bottleneck)",
            f"peak(K={Kmax}) / peak(K={Kmin}) > 1.3 at every width and setting",
            f"least growth {g:.2f} ({s}, width {w}); at {where}, K={Kmax}: FO-B symmetric / MAML = "
            f"{ratio.get('fob_symmetric', float('nan')):.2f}",
            verdict(g > 1.3, g <= 1.3)))
    if "time_ratio_fob_symmetric_to_maml_midK" in summary:
        ratios = summary["time_ratio_fob_symmetric_to_maml_midK"]
        worst_key = max(ratios, key=ratios.get)
        out.append(claim(
            "fob_time_vs_maml",
            "FO-B-MAML symmetric is not slower than second-order MAML per meta-gradient (issue target 1.2x, CPU)",
            "time(FO-B symmetric) / time(MAML) <= 1.2 at the middle K, every width and setting",
            f"worst {ratios[worst_key]:.2f} ({worst_key}); median {np.median(list(ratios.values())):.2f}",
            verdict(max(ratios.values()) <= 1.2, np.median(list(ratios.values())) > 1.2)))
    return out


# ---------------------------------------------------------------------------------------------
# figure


def plot(results: dict, out_dir) -> list[Path]:
    cfg, recs = results["config"], results["records"]
    settings, Kmax = list(cfg["settings"]), max(cfg["inner_steps"])
    path = Path(out_dir) / "memory.png"
    style = {f"{m}_lean": dict(color=plotting.METHOD_COLORS[m], linestyle="--") for m in ("fob_symmetric", "maml_hvp")}
    with plotting.style():
        fig, axes = plotting.plt.subplots(len(settings), 3, figsize=(15, 3.9 * len(settings)), squeeze=False)
        for i, s in enumerate(settings):
            st = cfg["settings"][s]
            tag = f"{s}: depth {st['depth']}, meta-batch {st['meta_batch']}, {st['shots']}-shot"
            for v in cfg["variants"]:
                kw = style.get(v, dict(color=plotting.METHOD_COLORS.get(v)))
                rows = sorted((r for r in recs if r["setting"] == s and r["variant"] == v and r["inner_steps"] == Kmax),
                              key=lambda r: r["width"])
                axes[i][0].plot([r["width"] for r in rows], [r["peak_bytes"] / MIB for r in rows], marker="o",
                                label=v, **kw)
                rows = sorted((r for r in recs if r["setting"] == s and r["variant"] == v
                               and r["width"] == max(cfg["widths"])), key=lambda r: r["inner_steps"])
                axes[i][1].plot([r["inner_steps"] for r in rows], [r["peak_bytes"] / MIB for r in rows], marker="o",
                                label=v, **kw)
                rows = sorted((r for r in recs if r["setting"] == s and r["variant"] == v and r["inner_steps"] == Kmax),
                              key=lambda r: r["width"])
                maml = {r["width"]: r["seconds"] for r in recs if r["setting"] == s and r["variant"] == "maml"
                        and r["inner_steps"] == Kmax}
                if maml:
                    axes[i][2].plot([r["width"] for r in rows], [r["seconds"] / maml[r["width"]] for r in rows],
                                    marker="o", label=v, **kw)
            axes[i][0].set(title=f"peak memory, K={Kmax} ({tag})", xlabel="width (channels)",
                           ylabel="peak live tensors, MiB", xscale="log", yscale="log")
            axes[i][1].set(title=f"peak memory, width {max(cfg['widths'])}", xlabel="inner steps K",
                           ylabel="peak live tensors, MiB", yscale="log")
            axes[i][1].set_xticks(cfg["inner_steps"], [str(k) for k in cfg["inner_steps"]])  # the measured K
            axes[i][2].set(title=f"time per meta-gradient / MAML's, K={Kmax}", xlabel="width (channels)",
                           ylabel="time ratio to MAML", xscale="log")
            axes[i][2].axhline(1.0, color="black", linewidth=0.8)
            for ax in (axes[i][0], axes[i][2]):  # the measured widths, not powers of ten
                plotting.plain_ticks(ax.xaxis, cfg["widths"])
            for ax in axes[i][:2]:  # plain numbers, minor ticks labelled where the axis spans about a decade
                ax.yaxis.set_major_formatter(LogFormatter())
                ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
        env = results["environment"]
        fig.suptitle(f"one meta-gradient per method, interleaved; device: {env.get('cuda_device') or env.get('device')}, "
                     f"torch {env['torch']}")
        fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=len(cfg["variants"]),
                   fontsize=9)  # one legend for every panel, off the lines
        fig.tight_layout(rect=(0, 0.06 / len(settings), 1, 1))
        plotting.mark_quick(fig, results)
        save_figure(fig, path)
    plotting.close(fig)
    return [path]
