"""The cost of FO-B's kink check, and what it catches, on three ReLU networks in float32.

    python -m fobtheory.experiments.bench_kink_check [--rounds 15] [--out figures/bench]
    python -m fobtheory.experiments.bench_kink_check --table figures/bench/kink_check_cost.json

Where plain finite differences run on a network with kinks, ``fob_symmetric`` checks by
default that the two one-sided differences of each step agree (``kink_check``, see
:func:`fobtheory.nn.meta_gradient_batch`): the gradients it compares are the stencil's and the
inner loop's, so the check costs no gradient call, only K kept gradients and a few norms.
This benchmark times one meta-gradient (``meta_gradient_batch``, default delta, K inner
steps) of three variants, interleaved round by round in a new random order (each variant's
time against ``plain``'s: the median over rounds of their ratio within a round, so that the
machine's load divides out), and counts their gradient calls:

- ``plain``: the paper's estimator, unchecked (``freeze_pattern=False, kink_check=None``);
- ``checked``: plain differences with the default check (``freeze_pattern=False``);
- ``default``: the default call, which freezes the activation patterns,

and reads their peak memory with :func:`fobtheory.memory.peak_bytes` (shape-only, exact
bytes of live tensors), on CNN1D (MNIST-1D), Conv4 with BatchNorm and the ResNet-style
network of ``tests/test_resnet.py`` (BasicBlocks, BatchNorm, max-pooling stem). Each
variant's relative error against MAML on the same float32 network (worst task) and the
task-steps the check flags show what the check is for. Prints the ratios to ``plain`` and writes
``kink_check_cost.json`` (records, summary) to ``--out``; ``--table`` prints the Markdown
table of a results file without measuring (the README's rows come from the committed one).
"""
from __future__ import annotations

import argparse
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch

from fobtheory.memory import peak_bytes, wall_time
from fobtheory.nn import KINK_CHECK, PLAIN_DIFFERENCES, CNN1D, Conv4, meta_gradient_batch
from fobtheory.results import load_results, make_results, write_json_atomic

VARIANTS = {"plain": PLAIN_DIFFERENCES, "checked": {"freeze_pattern": False}, "default": {}}
ROOT = Path(__file__).resolve().parent.parent


def resnet(width: int):
    """The ResNet-style network of ``tests/test_resnet.py`` (written there as a user would)."""
    spec = importlib.util.spec_from_file_location("test_resnet", ROOT / "tests" / "test_resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ResNet(width=width)


def networks(cfg) -> dict:
    """name -> (float32 network, its input shape)."""
    torch.manual_seed(cfg["seed"])
    return {"cnn1d": (CNN1D(width=64, depth=3, activation="relu"), (1, 40)),
            "conv4": (Conv4(width=16, size=28), (1, 28, 28)),
            "resnet": (resnet(width=16), (1, 16, 16))}


def episodes(cfg, shape):
    g = torch.Generator().manual_seed(cfg["seed"])
    B, ways = cfg["meta_batch"], cfg["ways"]

    def pair(n):
        return torch.randn(B, ways * n, *shape, generator=g), (torch.arange(ways * n) % ways).repeat(B, 1)
    return pair(cfg["shots"]), pair(cfg["queries"])


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1).to(torch.float64)


def measure(cfg) -> list[dict]:
    """One record per (network, variant): median seconds, the median per-round time ratio to
    ``plain``, gradient calls, peak bytes, worst relative error
    against MAML (float32 too), and the task-steps the check flags when forced on (an untimed
    call with ``kink_check=KINK_CHECK``: the plain variants' alarms, the frozen one's false ones)."""
    kw = dict(alpha=cfg["alpha"], inner_steps=cfg["inner_steps"])
    records = []
    for name, (net, shape) in networks(cfg).items():
        supports, queries = episodes(cfg, shape)
        reference = _flat(meta_gradient_batch(net, supports, queries, method="maml", **kw))
        calls = {v: (lambda o=o: meta_gradient_batch(net, supports, queries, method="fob_symmetric",
                                                     return_info=True, **kw, **o)) for v, o in VARIANTS.items()}
        times = {v: [] for v in calls}
        order = np.random.default_rng(cfg["seed"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the checked variant warns: that is what it is measured for
            for _ in range(cfg["rounds"] + 1):  # the first round warms up
                for i in order.permutation(len(calls)):
                    v = list(calls)[i]
                    times[v].append(wall_time(calls[v]))
            results = {v: call() for v, call in calls.items()}
            flagged = {v: meta_gradient_batch(net, supports, queries, method="fob_symmetric", return_info=True,
                                              **kw, **{**o, "kink_check": KINK_CHECK})[1].kink_suspects
                       for v, o in VARIANTS.items()}
            peaks = {v: peak_bytes(net, supports, queries, method="fob_symmetric", **kw, **o)
                     for v, o in VARIANTS.items()}
        for v, (g, info) in results.items():
            error = ((_flat(g) - reference).norm(dim=1) / reference.norm(dim=1)).max().item()
            paired = np.array(times[v][1:]) / np.array(times["plain"][1:])  # same round: the same machine load
            records.append(dict(network=name, variant=v, seconds=float(np.median(times[v][1:])),
                                time_ratio=float(np.median(paired)), grad_calls=info.grad_calls, peak_bytes=peaks[v],
                                error=error, flagged=flagged[v],
                                task_steps=cfg["meta_batch"] * cfg["inner_steps"],
                                parameters=sum(p.numel() for p in net.parameters())))
    return records


def summarize(records: list[dict]) -> dict:
    """Per network: time and peak ratios of ``checked`` and ``default`` to ``plain``, the
    task-steps flagged (plain and frozen), the errors; overall: the largest ratios of the check."""
    by = {(r["network"], r["variant"]): r for r in records}
    out = {}
    for name in dict.fromkeys(r["network"] for r in records):
        plain = by[name, "plain"]
        out[name] = {f"{v}_{k}": by[name, v][field] / plain[field] for v in ("checked", "default")
                     for k, field in (("time_ratio", "time_ratio"), ("peak_ratio", "peak_bytes"),
                                      ("grad_call_ratio", "grad_calls"))}
        out[name].update(flagged_plain=plain["flagged"], flagged_default=by[name, "default"]["flagged"],
                         task_steps=plain["task_steps"], plain_error=plain["error"],
                         default_error=by[name, "default"]["error"])
    return dict(networks=out, max_check_time_ratio=max(v["checked_time_ratio"] for v in out.values()),
                max_check_peak_ratio=max(v["checked_peak_ratio"] for v in out.values()), kink_check=KINK_CHECK)


def table(records: list[dict]) -> str:
    lines = ["| network | variant | ms | x plain | gradient calls | peak MiB | x plain | error vs MAML (float32) "
             "| flagged |", "|---|---|---|---|---|---|---|---|---|"]
    plain = {r["network"]: r for r in records if r["variant"] == "plain"}
    for r in records:
        p = plain[r["network"]]
        flagged = f"{r['flagged']} of {r['task_steps']}"
        lines.append(f"| {r['network']} | {r['variant']} | {1e3 * r['seconds']:.1f} | {r['time_ratio']:.3f} "
                     f"| {r['grad_calls']} | {r['peak_bytes'] / 2**20:.2f} | {r['peak_bytes'] / p['peak_bytes']:.3f} "
                     f"| {r['error']:.2g} "
                     f"| {flagged} |")
    return "\n".join(lines)


def config(seed: int = 0, rounds: int = 15) -> dict:
    return dict(alpha=0.01, inner_steps=5, meta_batch=4, ways=5, shots=5, queries=5, delta=1e-3, rounds=rounds,
                seed=seed, dtype="float32", torch_threads=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default="figures/bench", help="folder of kink_check_cost.json")
    parser.add_argument("--table", metavar="JSON", help="print the table of this results file and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(load_results(args.table)["records"]))
        return 0
    cfg = config(rounds=args.rounds)
    torch.set_num_threads(cfg["torch_threads"])
    records = measure(cfg)
    summary = summarize(records)
    print(f"fob_symmetric, float32, delta {cfg['delta']:g}, K = {cfg['inner_steps']}, {cfg['meta_batch']} tasks, "
          f"{cfg['ways']}-way {cfg['shots']}-shot, 1 torch thread; {cfg['rounds']} interleaved rounds "
          "(x plain: median per-round ratio); "
          f"check tolerance {KINK_CHECK:g}")
    print(table(records))
    print(f"largest time ratio checked / plain: {summary['max_check_time_ratio']:.3f}; "
          f"largest peak ratio: {summary['max_check_peak_ratio']:.3f}")
    path = write_json_atomic(Path(args.out) / "kink_check_cost.json",
                             make_results("kink_check_cost", cfg, records, summary, claims=[]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
