"""Exact second order without the activation bottleneck, and where only first order is right:
the strongest alternative to FO-B-MAML, measured beside it.

- **exactness**: ``maml_hvp`` (the backward recursion ``v_k = v_{k+1} - alpha H_k v_{k+1}``
  by Hessian-vector products) against ``maml`` (double backward through the unrolled inner
  loop), float64, on ReLU, GELU and LeakyReLU/ReLU6/MaxPool networks, K = 1..5, iterates
  stored and recomputed;
- **memory and time**: :func:`fobtheory.experiments.memory.measure_points` at the heavy
  setting (ReLU CNN1D depth 6, meta-batch 16, 5-way 5-shot) for MAML, FO-MAML, FO-B
  symmetric and HVP-MAML, each with its iterates stored and recomputed ("lean"); and the
  shape-only peaks (``device="meta"``) of a configuration no CPU holds;
- **prior art**: HF-MAML (Fallah, Mokhtari and Ozdaglar 2019: MAML's recursion with central
  difference Hessian-vector products) against FO-B's estimators on logistic tasks: the
  identity with the symmetric scheme at J = 1, and the bias and cost where they differ
  (J = 2, order 4, the forward scheme);
- **kernels without second derivatives**: a SiLU as a custom Function with a
  ``@once_differentiable`` backward: the second-order methods refuse it, FO-B matches MAML on
  ``nn.SiLU``;
- **training**: MAML and HVP-MAML meta-trained in lockstep on MNIST-1D (same initialisation,
  same episodes, float64): the relative parameter distance along the way.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.lines import Line2D
from torch import nn
from torch.autograd.function import once_differentiable

from fobtheory import estimators, plotting, problems
from fobtheory.data import EpisodeSampler, load_mnist1d
from fobtheory.experiments import memory, memory_scale
from fobtheory.experiments.mnist1d import kinked_cnn, stack
from fobtheory.memory import peak_bytes
from fobtheory.nn import CNN1D, PLAIN_DIFFERENCES, adapted_accuracy, meta_gradient_batch
from fobtheory.progress import track
from fobtheory.results import claim, make_results, save_figure, verdict

NAME = "second_order"
TABLE_VARIANTS = ["maml", "fo_maml", "fob_symmetric", "fob_symmetric_lean", "maml_hvp", "maml_hvp_lean"]
GIB = 2**30


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    cfg = dict(
        seed=seed, device=device,
        exact=dict(width=6, tasks=3, inner_steps=[1, 2, 3, 4, 5], alpha=0.1),
        memory=dict(settings={"heavy": dict(depth=6, meta_batch=16, shots=5, queries=15)}, widths=[64, 250],
                    inner_steps=[5, 10], ways=5, length=40, alpha=0.1, delta=1e-3, variants=TABLE_VARIANTS,
                    repeats=3, seed=seed, device=device, torch_threads=1),
        scale=dict(width=512, depth=8, inner_steps=20, meta_batch=32, shots=5, queries=15),
        prior_art=dict(n_tasks=10, dim=10, inner_steps=[1, 3], deltas=[1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]),
        kernel=dict(tasks=4, inner_steps=2, alpha=0.1, delta=1e-5),
        training=dict(steps=300, eval_every=50, meta_batch=8, alpha=0.1, inner_steps=3, width=25, lr=1e-3,
                      shots=5, queries=15, ways=5, val_episodes=100, num_samples=5000),
    )
    if quick:
        cfg["memory"].update(settings={"standard": dict(depth=3, meta_batch=2, shots=5, queries=15)}, widths=[16],
                             inner_steps=[1, 3], repeats=1)
        cfg["exact"].update(width=4, inner_steps=[1, 3])
        cfg["scale"].update(width=64, depth=4, inner_steps=5, meta_batch=4)
        cfg["prior_art"].update(n_tasks=3, deltas=[1e-2, 1e-4])
        cfg["training"].update(steps=10, eval_every=5, val_episodes=20, width=8)
    return cfg


def _rel(a, b) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def _flat(grads: dict) -> torch.Tensor:
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)


def _random_episodes(n_tasks, n_support, n_query, length, seed, dtype=torch.float64, ways=5):
    g = torch.Generator().manual_seed(seed)
    pair = lambda n: (torch.randn(n_tasks, n, 1, length, generator=g, dtype=dtype),  # noqa: E731
                      (torch.arange(n) % ways).repeat(n_tasks, 1))
    return pair(n_support), pair(n_query)


# ---------------------------------------------------------------------------------------------
# measurements


NETWORKS = {"relu": lambda w: CNN1D(width=w, activation="relu"), "gelu": lambda w: CNN1D(width=w, activation="gelu"),
            "leaky_relu6_maxpool": lambda w: kinked_cnn(width=w)}


def exactness(cfg) -> list[dict]:
    c, records = cfg["exact"], []
    for net, make in NETWORKS.items():
        torch.manual_seed(cfg["seed"])
        model = make(c["width"]).double()
        for K in c["inner_steps"]:
            supports, queries = _random_episodes(c["tasks"], 10, 15, 40, cfg["seed"] + K)
            ref = _flat(meta_gradient_batch(model, supports, queries, method="maml", alpha=c["alpha"], inner_steps=K))
            for storage, options in (("stored", {}), ("recomputed", dict(store_iterates=False))):
                g = _flat(meta_gradient_batch(model, supports, queries, method="maml_hvp", alpha=c["alpha"],
                                              inner_steps=K, **options))
                records.append(dict(part="exactness", network=net, method="maml_hvp", storage=storage, inner_steps=K,
                                    error=max(_rel(g[b], ref[b]) for b in range(c["tasks"]))))
    return records


def costs(cfg) -> list[dict]:
    """The memory and time table, and the shape-only peaks at scale."""
    records = [dict(part="table", **r) for r in memory.measure_points(cfg["memory"], desc="second-order table")]
    s, m = cfg["scale"], cfg["memory"]
    model, supports, queries = memory_scale.shape_only_batch(dict(m, shots=s["shots"], queries=s["queries"]),
                                                             s["width"], s["depth"], s["meta_batch"], m["length"])
    for variant in track(TABLE_VARIANTS, desc="second-order scale", unit="method"):
        method, options = memory.VARIANTS[variant]
        records.append(dict(part="scale", variant=variant, method=method, width=s["width"], depth=s["depth"],
                            inner_steps=s["inner_steps"], meta_batch=s["meta_batch"],
                            peak_bytes=peak_bytes(model, supports, queries, method=method, alpha=m["alpha"],
                                                  inner_steps=s["inner_steps"], delta=m["delta"],
                                                  **PLAIN_DIFFERENCES, **options)))
    return records


def prior_art(cfg) -> list[dict]:
    c, records = cfg["prior_art"], []
    tasks = problems.logistic_tasks(c["n_tasks"], c["dim"], seed=cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    schemes = {"hf_maml": None, "fob_symmetric": dict(scheme="symmetric"),
               "fob_symmetric_J2": dict(scheme="symmetric", fixed_point_iters=2),
               "fob_order4": dict(scheme=4), "fob_forward": dict(scheme="forward")}
    for i, task in enumerate(tasks):
        x = rng.normal(size=c["dim"])
        for K in c["inner_steps"]:
            exact = task.meta_grad(x, K)
            for delta in c["deltas"]:
                kw = dict(alpha=task.alpha, delta=delta, inner_steps=K, return_info=True)
                hf, _ = estimators.hf_maml(x, task.inner_grad, task.outer_grad, **kw)
                for name, options in schemes.items():
                    g, info = (estimators.hf_maml(x, task.inner_grad, task.outer_grad, **kw) if options is None else
                               estimators.fob_maml(x, task.inner_grad, task.outer_grad, **options, **kw))
                    records.append(dict(part="prior_art", family="logistic", task=i, scheme=name, K=K, delta=delta,
                                        error=float(np.linalg.norm(g - exact) / np.linalg.norm(exact)),
                                        from_hf=float(np.linalg.norm(g - hf) / np.linalg.norm(hf)),
                                        grad_calls=info.grad_calls))
    return records


class KernelSiLU(torch.autograd.Function):
    """SiLU as custom kernels are written: a ``@once_differentiable`` backward that computes
    outside autograd (the second-order terms through it do not exist for autograd)."""

    @staticmethod
    def forward(x):
        return x * torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return g * s * (1 + x * (1 - s))

    generate_vmap_rule = True


class Kernel(nn.Module):
    def forward(self, x):
        return KernelSiLU.apply(x)


def kernel_mlp(activation: nn.Module, seed: int = 0, length: int = 40) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(length, 32), activation, nn.Linear(32, 32), activation,
                         nn.Linear(32, 5)).double()


def kernels(cfg) -> list[dict]:
    c = cfg["kernel"]
    native, kernel = kernel_mlp(nn.SiLU(), cfg["seed"]), kernel_mlp(Kernel(), cfg["seed"])
    supports, queries = _random_episodes(c["tasks"], 10, 15, 40, cfg["seed"])
    kw = dict(alpha=c["alpha"], inner_steps=c["inner_steps"], delta=c["delta"], **PLAIN_DIFFERENCES)
    ref = _flat(meta_gradient_batch(native, supports, queries, method="maml", **kw))
    records = []
    for method in ("maml", "maml_hvp", "fo_maml", "fob_symmetric", "fob_forward"):
        try:
            g = _flat(meta_gradient_batch(kernel, supports, queries, method=method, **kw))
            error, refused = max(_rel(g[b], ref[b]) for b in range(c["tasks"])), ""
        except ValueError as e:
            error, refused = None, str(e).split(":")[0]
        records.append(dict(part="kernel", method=method, error=error, refused=refused))
    return records


def training(cfg) -> list[dict]:
    """MAML and HVP-MAML from one initialisation on one episode stream, float64."""
    c = cfg["training"]
    data = load_mnist1d(num_samples=c["num_samples"], validation_fraction=0.2, validation_seed=cfg["seed"])
    common = dict(ways=c["ways"], shots=c["shots"], queries=c["queries"], dtype=torch.float64)
    val = EpisodeSampler(data["x_val"], data["y_val"], seed=cfg["seed"] + 1, **common).batch(c["val_episodes"])
    train = EpisodeSampler(data["x"], data["y"], seed=cfg["seed"], **common)
    torch.manual_seed(cfg["seed"])
    models = {m: CNN1D(width=c["width"], n_classes=c["ways"]).double() for m in ("maml", "maml_hvp")}
    models["maml_hvp"].load_state_dict(models["maml"].state_dict())
    opts = {m: torch.optim.Adam(model.parameters(), lr=c["lr"]) for m, model in models.items()}
    records = []
    for step in track(range(c["steps"] + 1), desc="second-order training", unit="step"):
        if step % c["eval_every"] == 0:
            theta = {m: torch.cat([p.detach().reshape(-1) for p in model.parameters()]) for m, model in models.items()}
            acc = {m: float(100 * adapted_accuracy(model, *stack(val), alpha=c["alpha"],
                                                   inner_steps=c["inner_steps"]).mean()) for m, model in models.items()}
            records.append(dict(part="training", step=step, distance=_rel(theta["maml_hvp"], theta["maml"]),
                                accuracy_maml=acc["maml"], accuracy_maml_hvp=acc["maml_hvp"]))
        if step == c["steps"]:
            break
        supports, queries = stack(train.batch(c["meta_batch"]))
        for m, model in models.items():
            g = meta_gradient_batch(model, supports, queries, method=m, alpha=c["alpha"], inner_steps=c["inner_steps"])
            for name, p in model.named_parameters():
                p.grad = g[name].mean(0)
            opts[m].step()
    return records


def run(cfg: dict) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(cfg["memory"]["torch_threads"] or before)
    try:
        records = exactness(cfg) + costs(cfg) + prior_art(cfg) + kernels(cfg) + training(cfg)
    finally:
        torch.set_num_threads(before)
    summary = summarize(records, cfg)
    return make_results(NAME, cfg, records, summary, claims(summary, cfg), device=cfg["device"])


# ---------------------------------------------------------------------------------------------
# summary and claims


def _table(records, cfg) -> dict:
    """``{(width, K): {variant: (peak MiB, seconds)}}`` of the memory and time table."""
    out = {}
    for r in records:
        if r["part"] == "table":
            out.setdefault((r["width"], r["inner_steps"]), {})[r["variant"]] = (r["peak_bytes"] / memory.MIB,
                                                                                 r["seconds"])
    return out


def _budgets(row: dict) -> list[dict]:
    """At each measured peak as a memory budget: the fastest FO-B variant and the fastest
    HVP-MAML variant that fit in it."""
    out = []
    for budget in sorted(peak for peak, _ in row.values()):
        best = {family: min(((sec, v) for v, (peak, sec) in row.items() if v.startswith(family) and peak <= budget),
                            default=None) for family in ("fob_symmetric", "maml_hvp")}
        if all(best.values()):
            out.append(dict(budget_mib=budget, fob=best["fob_symmetric"][1], fob_seconds=best["fob_symmetric"][0],
                            hvp=best["maml_hvp"][1], hvp_seconds=best["maml_hvp"][0]))
    return out


def summarize(records, cfg) -> dict:
    exact = [r["error"] for r in records if r["part"] == "exactness"]
    table = _table(records, cfg)
    top = max(table)
    row = table[top]
    hf = [r for r in records if r["part"] == "prior_art"]

    def median(scheme, delta, key="error"):
        return float(np.median([r[key] for r in hf if r["scheme"] == scheme and r["delta"] == delta]))

    mid = sorted(cfg["prior_art"]["deltas"])[len(cfg["prior_art"]["deltas"]) // 2]
    Ks = sorted({K for _, K in table})
    widths = sorted({w for w, _ in table})
    s = dict(
        exact_max_error=max(exact),
        table={f"w{w}_K{K}": {v: dict(peak_mib=p, seconds=t) for v, (p, t) in vs.items()} for (w, K), vs in
               sorted(table.items())},
        at=dict(width=top[0], inner_steps=top[1]),
        growth_K={v: max(table[(w, Ks[-1])][v][0] / table[(w, Ks[0])][v][0] for w in widths) for v in row},
        peak_ratio={f"fob_over_hvp{lean}": row[f"fob_symmetric{lean}"][0] / row[f"maml_hvp{lean}"][0]
                    for lean in ("", "_lean")},
        time_ratio={f"fob_over_hvp{lean}": row[f"fob_symmetric{lean}"][1] / row[f"maml_hvp{lean}"][1]
                    for lean in ("", "_lean")},
        hvp_over_maml=dict(peak=row["maml_hvp"][0] / row["maml"][0], seconds=row["maml_hvp"][1] / row["maml"][1]),
        budgets=_budgets(row),
        scale={r["variant"]: r["peak_bytes"] / GIB for r in records if r["part"] == "scale"},
        hf_identity=max(r["from_hf"] for r in hf if r["scheme"] == "fob_symmetric"),
        hf_delta=mid,
        hf_median_error={sc: median(sc, mid) for sc in ("hf_maml", "fob_symmetric_J2", "fob_order4", "fob_forward")},
        hf_median_from_hf={sc: median(sc, mid, "from_hf") for sc in ("fob_symmetric_J2", "fob_order4", "fob_forward")},
        hf_calls={sc: int(max(r["grad_calls"] for r in hf if r["scheme"] == sc and r["K"] == max(
            cfg["prior_art"]["inner_steps"]))) for sc in ("hf_maml", "fob_symmetric_J2", "fob_order4", "fob_forward")},
        kernel={r["method"]: r["error"] if r["error"] is not None else r["refused"]
                for r in records if r["part"] == "kernel"},
        training=[r for r in records if r["part"] == "training"],
    )
    s["highlights"] = [
        f"maml_hvp vs maml (float64, 3 networks, K {cfg['exact']['inner_steps']}): max relative difference "
        f"{s['exact_max_error']:.1e}",
        f"width {top[0]}, K {top[1]}: " + ", ".join(f"{v} {p:.0f} MiB {t:.2f} s" for v, (p, t) in row.items()),
        f"shape-only, width {cfg['scale']['width']}, depth {cfg['scale']['depth']}, K {cfg['scale']['inner_steps']}, "
        f"meta-batch {cfg['scale']['meta_batch']}: " + ", ".join(f"{v} {_gib(g)}" for v, g in s["scale"].items()),
        f"HF-MAML = FO-B symmetric (J=1) to {s['hf_identity']:.1e}; median error at delta {mid:g}: "
        + ", ".join(f"{k} {v:.1e}" for k, v in s["hf_median_error"].items()),
    ]
    return s


def _gib(g: float, unit: str = " GiB") -> str:
    """``g`` GiB to one decimal, or to two significant digits below 1 GiB (toy sizes never read 0.0)."""
    return f"{g:.1f}{unit}" if g >= 1 else f"{g:.2g}{unit}"


def claims(s, cfg) -> list[dict]:
    top = f"ReLU CNN1D width {s['at']['width']}, K {s['at']['inner_steps']}"
    out = [claim(
        "maml_hvp_equals_maml",
        "HVP-MAML (backward recursion of Hessian-vector products) is MAML's exact meta-gradient",
        "max relative difference to double-backward MAML <= 1e-12 (float64; ReLU, GELU, LeakyReLU/ReLU6/MaxPool)",
        f"{s['exact_max_error']:.1e}", verdict(s["exact_max_error"] <= 1e-12, s["exact_max_error"] > 1e-10))]
    g = s["growth_K"]["maml_hvp_lean"]
    out.append(claim(
        "maml_hvp_lean_flat_in_K", "Exact second order by HVPs with recomputed iterates is flat in K",
        "peak(K max) / peak(K min) <= 1.05 at every width",
        f"{g:.3f} (MAML {s['growth_K']['maml']:.2f})", verdict(g <= 1.05, g > 1.3)))
    for lean, label in (("", "iterates stored"), ("_lean", "iterates recomputed")):
        r = s["peak_ratio"][f"fob_over_hvp{lean}"]
        out.append(claim(
            f"fob_below_hvp_peak{lean or '_stored'}",
            f"FO-B-MAML symmetric needs less memory than exact HVP-MAML with the same storage ({label})",
            f"peak(FO-B) / peak(HVP-MAML) < 1 ({top})", f"{r:.2f}", verdict(r < 1, r > 1)))
        t = s["time_ratio"][f"fob_over_hvp{lean}"]
        out.append(claim(
            f"fob_faster_than_hvp{lean or '_stored'}",
            f"FO-B-MAML symmetric is faster than exact HVP-MAML with the same storage ({label})",
            f"time(FO-B) / time(HVP-MAML) < 1, refuted above 1.1 ({top}, CPU)", f"{t:.2f}",
            verdict(t < 1, t > 1.1)))
    wins = [b for b in s["budgets"] if b["fob_seconds"] < b["hvp_seconds"]]
    out.append(claim(
        "fob_faster_than_hvp_at_equal_memory",
        "At every memory budget that fits both, the fastest FO-B variant beats the fastest HVP-MAML variant",
        f"FO-B faster at each measured budget ({top})",
        "; ".join(f"{b['budget_mib']:.0f} MiB: {b['fob']} {b['fob_seconds']:.2f} s vs {b['hvp']} {b['hvp_seconds']:.2f} s"
                  for b in s["budgets"]),
        verdict(len(wins) == len(s["budgets"]) > 0, len(wins) < len(s["budgets"]))))
    h = s["hvp_over_maml"]
    out.append(claim(
        "maml_hvp_bypasses_activation_bottleneck",
        "Exact second order also bypasses MAML's activation bottleneck: HVP-MAML (stored) needs less memory than "
        "unrolled MAML",
        f"peak(HVP-MAML) / peak(MAML) < 1 ({top})", f"{h['peak']:.2f} (time {h['seconds']:.2f}x MAML's)",
        verdict(h["peak"] < 1, h["peak"] >= 1)))
    sc = s["scale"]
    out.append(claim(
        "hvp_lean_vs_fob_lean_at_scale",
        "At scale, FO-B lean needs less memory than HVP-MAML with recomputed iterates",
        f"shape-only peak ratio < 1 (width {cfg['scale']['width']}, depth {cfg['scale']['depth']}, "
        f"K {cfg['scale']['inner_steps']}, meta-batch {cfg['scale']['meta_batch']})",
        f"FO-B lean {_gib(sc['fob_symmetric_lean'])}, HVP lean {_gib(sc['maml_hvp_lean'])}, HVP stored "
        f"{_gib(sc['maml_hvp'], '')}, MAML {_gib(sc['maml'], '')}, FO-MAML {_gib(sc['fo_maml'], '')}",
        verdict(sc["fob_symmetric_lean"] < sc["maml_hvp_lean"], sc["fob_symmetric_lean"] > sc["maml_hvp_lean"])))
    out.append(claim(
        "hf_maml_equals_fob_symmetric_J1",
        "FO-B symmetric with one fixed-point iteration is HF-MAML (Fallah et al. 2019), derived another way",
        "max relative difference <= 1e-13 (logistic tasks, every K and delta, float64)", f"{s['hf_identity']:.1e}",
        verdict(s["hf_identity"] <= 1e-13, s["hf_identity"] > 1e-10)))
    e, calls, d = s["hf_median_error"], s["hf_calls"], s["hf_delta"]
    out.append(claim(
        "fob_order4_beyond_hf_maml",
        "Where FO-B goes beyond HF-MAML: the order-4 stencil has a far smaller bias at the same delta",
        f"median error at delta {d:g}: order 4 < HF-MAML / 100",
        f"order 4 {e['fob_order4']:.1e} vs HF-MAML {e['hf_maml']:.1e} ({calls['fob_order4']} vs {calls['hf_maml']} "
        f"gradient calls at K {max(cfg['prior_art']['inner_steps'])}); J=2 {e['fob_symmetric_J2']:.1e} "
        f"({calls['fob_symmetric_J2']} calls), forward {e['fob_forward']:.1e} ({calls['fob_forward']} calls)",
        verdict(e["fob_order4"] < e["hf_maml"] / 100, e["fob_order4"] >= e["hf_maml"])))
    k = s["kernel"]
    refused = all(isinstance(k[m], str) for m in ("maml", "maml_hvp"))
    fob = k["fob_symmetric"]
    out.append(claim(
        "only_first_order_is_right_through_kernels",
        "Through a kernel without second derivatives (@once_differentiable SiLU) the second-order methods refuse, "
        "and FO-B matches MAML computed on the native op",
        "maml and maml_hvp raise; FO-B symmetric within 1e-6 of MAML on nn.SiLU (float64)",
        f"maml: {'refused' if isinstance(k['maml'], str) else k['maml']}, maml_hvp: "
        f"{'refused' if isinstance(k['maml_hvp'], str) else k['maml_hvp']}; FO-B symmetric {fob:.1e}, FO-B forward "
        f"{k['fob_forward']:.1e}, FO-MAML {k['fo_maml']:.1e}",
        verdict(refused and fob <= 1e-6, not refused or fob > 1e-4)))
    t = s["training"]
    dist = max(r["distance"] for r in t)
    same = all(r["accuracy_maml"] == r["accuracy_maml_hvp"] for r in t)
    out.append(claim(
        "maml_hvp_trains_like_maml",
        "HVP-MAML meta-trains like MAML (same initialisation and episodes, float64)",
        "relative parameter distance <= 1e-10 and equal validation accuracy at every checkpoint",
        f"max distance {dist:.1e} over {t[-1]['step']} steps; validation accuracy equal at every checkpoint: {same}",
        verdict(dist <= 1e-10 and same, dist > 1e-6)))
    return out


# ---------------------------------------------------------------------------------------------
# figure


def plot(results: dict, out_dir) -> list[Path]:
    s, recs = results["summary"], results["records"]
    path = Path(out_dir) / f"{NAME}.png"
    colors = {v: plotting.METHOD_COLORS.get(v.removesuffix("_lean")) for v in TABLE_VARIANTS}
    with plotting.style():
        fig, axes = plotting.plt.subplots(1, 3, figsize=(16, 4.4))
        shapes = dict(zip(s["table"], "osD^vP*X"))  # one marker per configuration, one colour per method
        for key, row in s["table"].items():
            for v, m in row.items():
                lean = v.endswith("_lean")
                axes[0].scatter(m["peak_mib"], m["seconds"], color=colors[v], marker=shapes[key], s=36,
                                facecolors="none" if lean else colors[v])
        methods = list(dict.fromkeys(v.removesuffix("_lean") for row in s["table"].values() for v in row))
        key_of = [Line2D([], [], color=colors[v], marker="o", linestyle="", label=v) for v in methods]
        key_of += [Line2D([], [], color="grey", marker=shapes[k], linestyle="", label=k.replace("_", ", "))
                   for k in s["table"]]
        key_of.append(Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="",
                             label="open: recomputed iterates (lean)"))
        axes[0].legend(handles=key_of, fontsize=7, loc="lower right")  # the cheap and small corner stays empty
        axes[0].set(xscale="log", yscale="log", xlabel="peak live tensors, MiB", ylabel="seconds per meta-gradient",
                    title="time against memory (colour: method; marker: width w, K)")
        hf = [r for r in recs if r["part"] == "prior_art"]
        for scheme in ("hf_maml", "fob_symmetric", "fob_symmetric_J2", "fob_order4", "fob_forward"):
            deltas = sorted({r["delta"] for r in hf})
            med = [np.median([r["error"] for r in hf if r["scheme"] == scheme and r["delta"] == d]) for d in deltas]
            axes[1].plot(deltas, med, marker="o", label=scheme, linestyle="--" if scheme == "fob_symmetric" else "-")
        axes[1].set(xscale="log", yscale="log", xlabel="delta", ylabel="median relative error (logistic)",
                    title="HF-MAML and FO-B's estimators")
        axes[1].legend(fontsize=7)
        t = s["training"]
        axes[2].plot([r["step"] for r in t], [max(r["distance"], 1e-17) for r in t], marker="o", color="tab:gray")
        axes[2].set(yscale="log", xlabel="meta-step", ylabel="|theta_hvp - theta_maml| / |theta_maml|",
                    title="MAML and HVP-MAML trained in lockstep (float64)")
        fig.tight_layout()
        plotting.mark_quick(fig, results)
        save_figure(fig, path)
    plotting.close(fig)
    return [path]
