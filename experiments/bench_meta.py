"""Time per meta-gradient of ``fobtheory.nn`` against plain autograd loops, as a Markdown table
and a results file (``<out>/bench_meta.json``: the rows as records, the ratios in the summary;
no claims: speed is measured as ratios, never asserted), from which the README's speed table
is generated.

    python -m fobtheory.experiments.bench_meta [--width 64] [--inner-steps 5] [--meta-batch 8] [--out figures]

The baselines are written here with nothing but ``torch.autograd.grad`` on the model's
parameters, one task at a time, the way a user would write them without the toolkit:

- maml: K steps with ``create_graph=True``, then the gradient of the query loss;
- maml_hvp: K plain steps, then ``v <- v - alpha H_k v`` backwards, each ``H_k v`` by double
  backward of one step's gradient;
- fo_maml, reptile: K (K+1) plain gradient steps;
- fob_forward, fob_symmetric: the same gradient calls as the estimator (inner loop, then
  ``v <- v - alpha (grad f(x_k + h v) - grad f(x_k - h v)) / (2h)`` backwards, h = delta/|v|).

Two rows per method: one task (``meta_gradient``) against the plain loop, and a meta-batch
(``meta_gradient_batch``) against the plain loop over its tasks (and against ``higher``'s
functional MAML when that package is installed). Methods are interleaved round by round, in
a new random order each round, and the median is reported, so machine load and cache state
shift numerator and denominator alike.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from fobtheory.memory import wall_time
from fobtheory.nn import ALL_METHODS, CNN1D, PLAIN_DIFFERENCES, meta_gradient, meta_gradient_batch
from fobtheory.results import make_results, write_json_atomic

NAME = "bench_meta"


def _plain(model, support, query, method, alpha, K, delta):
    """One task's meta-gradient with plain autograd (see the module docstring)."""
    names = [n for n, _ in model.named_parameters()]

    def loss(params, data, create_graph=False):
        out = F.cross_entropy(functional_call(model, dict(zip(names, params)), (data[0],)), data[1])
        return torch.autograd.grad(out, params, create_graph=create_graph)

    theta = [p.detach().requires_grad_(True) for p in model.parameters()]
    step = lambda w, g, a=alpha: [wi - a * gi for wi, gi in zip(w, g)]  # noqa: E731
    if method == "maml":
        fast = theta
        for _ in range(K):
            fast = step(fast, loss(fast, support, create_graph=True))
        out = F.cross_entropy(functional_call(model, dict(zip(names, fast)), (query[0],)), query[1])
        return torch.autograd.grad(out, theta)
    leaf = lambda w: [wi.detach().requires_grad_(True) for wi in w]  # noqa: E731
    if method == "reptile":
        u = theta
        for _ in range(K + 1):
            u = leaf(step(u, [a + b for a, b in zip(loss(u, support), loss(u, query))]))
        return [(t - ui) / ((K + 1) * alpha) for t, ui in zip(theta, u)]
    if method == "maml_hvp":
        xs, x = [], theta
        for _ in range(K):
            xs.append(x)
            x = leaf(step(x, loss(x, support)))
        v = loss(x, query)
        for xk in reversed(xs):
            xk = leaf(xk)
            v = [vi - alpha * hv for vi, hv in zip(v, torch.autograd.grad(loss(xk, support, create_graph=True), xk, v))]
        return v
    xs, gs, x = [], [], theta
    for _ in range(K):
        g = loss(x, support)
        xs.append(x)
        gs.append(g)
        x = leaf(step(x, g))
    v = loss(x, query)
    if method == "fo_maml":
        return v
    for xk, gk in zip(reversed(xs), reversed(gs)):
        h = delta / float(torch.sqrt(sum((vi ** 2).sum() for vi in v)))
        minus = loss(leaf(step(xk, v, h)), support)
        if method == "fob_forward":
            v = [vi - alpha * (g0 - gm) / h for vi, g0, gm in zip(v, gk, minus)]
        else:
            plus = loss(leaf(step(xk, v, -h)), support)
            v = [vi - alpha * (gp - gm) / (2 * h) for vi, gp, gm in zip(v, plus, minus)]
    return v


def _higher_maml(model, supports, queries, alpha, K):
    """Second-order MAML of a meta-batch with ``higher``'s functional model (per task)."""
    import higher

    opt = torch.optim.SGD(model.parameters(), lr=alpha)
    grads = []
    for b in range(supports[0].shape[0]):
        with higher.innerloop_ctx(model, opt, copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(K):
                diffopt.step(F.cross_entropy(fmodel(supports[0][b]), supports[1][b]))
            out = F.cross_entropy(fmodel(queries[0][b]), queries[1][b])
            grads.append(torch.autograd.grad(out, list(model.parameters())))
    return grads


def benchmark(width=64, depth=3, activation="elu", inner_steps=5, meta_batch=8, shots=5, queries=15, ways=5,
              alpha=0.1, delta=1e-3, rounds=15, seed=0) -> list[dict]:
    """Median seconds per meta-gradient of each method and baseline; rows of a table."""
    torch.manual_seed(seed)
    model = CNN1D(width=width, depth=depth, activation=activation, n_classes=ways)
    g = torch.Generator().manual_seed(seed)
    data = lambda n: (torch.randn(meta_batch, n, 1, 40, generator=g),  # noqa: E731
                      torch.randint(0, ways, (meta_batch, n), generator=g))
    supports, queries_ = data(ways * shots), data(ways * queries)
    one = lambda pair: (pair[0][0], pair[1][0])  # noqa: E731
    kw = dict(alpha=alpha, inner_steps=inner_steps)
    fob = dict(delta=delta, normalize=True, **PLAIN_DIFFERENCES)  # the plain loops' differences
    calls = {}
    for m in ALL_METHODS:
        extra = fob if m.startswith("fob_") else {}
        calls[(m, 1, "fobtheory")] = lambda m=m, e=extra: meta_gradient(model, one(supports), one(queries_), method=m,
                                                                        **kw, **e)
        calls[(m, 1, "plain")] = lambda m=m: _plain(model, one(supports), one(queries_), m, alpha, inner_steps, delta)
        calls[(m, meta_batch, "fobtheory")] = lambda m=m, e=extra: meta_gradient_batch(model, supports, queries_,
                                                                                     method=m, **kw, **e)
        calls[(m, meta_batch, "plain")] = lambda m=m: [
            _plain(model, (supports[0][b], supports[1][b]), (queries_[0][b], queries_[1][b]), m, alpha, inner_steps,
                   delta) for b in range(meta_batch)]
    try:
        import higher  # noqa: F401

        calls[("maml", meta_batch, "higher")] = lambda: _higher_maml(model, supports, queries_, alpha, inner_steps)
    except ImportError:
        pass
    times = {key: [] for key in calls}
    order = np.random.default_rng(seed)
    for _ in range(rounds + 1):  # the first round warms up; a new order each round, so that no
        for i in order.permutation(len(calls)):  # call always follows the same (cache-cold) one
            key = list(calls)[i]
            times[key].append(wall_time(calls[key]))
    median = {key: float(np.median(t[1:])) for key, t in times.items()}
    rows = []
    for m in ALL_METHODS:
        for tasks in (1, meta_batch):
            ours, plain = median[(m, tasks, "fobtheory")], median[(m, tasks, "plain")]
            row = dict(method=m, tasks=tasks, ms=1e3 * ours, plain_ms=1e3 * plain, ratio=ours / plain)
            if (m, tasks, "higher") in median:
                row["ratio_higher"] = ours / median[(m, tasks, "higher")]
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    higher = any("ratio_higher" in r for r in rows)
    head = "| method | tasks | fobtheory (ms) | plain loop (ms) | ratio |" + (" / higher |" if higher else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r["method"], str(r["tasks"]), f"{r['ms']:.1f}", f"{r['plain_ms']:.1f}", f"{r['ratio']:.2f}"]
        if higher:
            cells.append(f"{r['ratio_higher']:.2f}" if "ratio_higher" in r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results(rows: list[dict], config: dict, seconds: float) -> dict:
    """The benchmark as a results file: its rows, and in the summary HVP-MAML's time over
    MAML's and FO-B symmetric's over HVP-MAML's for the meta-batch, the range of the ratios to
    the plain loop for one task and for the meta-batch, and the run's seconds."""
    ms = {(r["method"], r["tasks"]): r["ms"] for r in rows}
    b = config["meta_batch"]
    ratios = {t: [r["ratio"] for r in rows if r["tasks"] == t] for t in (1, b)}
    summary = dict(hvp_over_maml=ms["maml_hvp", b] / ms["maml", b], fob_symmetric_over_hvp=ms["fob_symmetric", b] /
                   ms["maml_hvp", b], ratio_one_task=[min(ratios[1]), max(ratios[1])],
                   ratio_meta_batch=[min(ratios[b]), max(ratios[b])], seconds=round(seconds, 1))
    return make_results(NAME, config, [dict(kind="timing", **r) for r in rows], summary, [])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--activation", default="elu")
    parser.add_argument("--inner-steps", type=int, default=5)
    parser.add_argument("--meta-batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier timings)")
    parser.add_argument("--out", default="figures", help="folder of bench_meta.json (default figures)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = dict(width=args.width, depth=3, activation=args.activation, inner_steps=args.inner_steps,
                  meta_batch=args.meta_batch, shots=5, queries=15, ways=5, rounds=args.rounds, threads=args.threads)
    start = time.perf_counter()
    rows = benchmark(width=args.width, activation=args.activation, inner_steps=args.inner_steps,
                     meta_batch=args.meta_batch, rounds=args.rounds)
    out = results(rows, config, time.perf_counter() - start)
    print(f"CNN1D width {args.width} {args.activation}, K = {args.inner_steps}, 5-way 5-shot (25 support, 75 query), "
          f"{args.threads} torch thread(s); median of {args.rounds} interleaved rounds; ratio = fobtheory / plain")
    print(table(rows))
    print(f"HVP-MAML / MAML time, {args.meta_batch} tasks: {out['summary']['hvp_over_maml']:.2f}; "
          f"FO-B symmetric / HVP-MAML: {out['summary']['fob_symmetric_over_hvp']:.2f}")
    print(f"wrote {write_json_atomic(Path(args.out) / f'{NAME}.json', out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
