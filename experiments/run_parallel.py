"""Train the runs of the MNIST-1D campaign in parallel worker processes.

Each unit of the plan (one run: activation, shots, method, variant, seed; see
:func:`fobtheory.experiments.mnist1d._plan`) trains in one of ``--workers`` processes
(``spawn``, one torch thread each by default) on ``--device``; units whose results are
already committed under ``<results_dir>/<run key>/`` are skipped, and every finished unit
commits its own result at once, so the command can be interrupted and rerun, and several
machines can share a campaign through the committed folder. Afterwards ``fobtheory mnist1d``
with the same options trains nothing and assembles ``mnist1d.json`` and its figure.

    python -m fobtheory.experiments.run_parallel --workers 2                       # the whole plan, here
    python -m fobtheory.experiments.run_parallel --workers 16 --device cuda --variants frozen
    python -m fobtheory.experiments.run_parallel --dry-run --seeds 0               # list the pending units

:func:`run_units` takes ``(config, unit)`` jobs with a config each, for plans of other shapes
(a selection grid over alpha and K, say).
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from fobtheory.experiments import mnist1d
from fobtheory.progress import track

_DATA = {}  # per worker process: the data of each config's data key


def _init(threads: int):
    import torch

    torch.set_num_threads(threads)


def train_unit(cfg: dict, unit: mnist1d.Unit) -> dict:
    """Train one unit (in a worker); returns a line of its outcome."""
    key = (cfg["num_samples"], cfg["validation_fraction"], cfg["validation_seed"])
    if key not in _DATA:
        _DATA[key] = mnist1d.load_data(cfg)
    start = time.perf_counter()
    result = mnist1d.train(cfg, _DATA[key], activation=unit.activation, shots=unit.shots, method=unit.method,
                           seed=unit.seed, guard=unit.guard, frozen=unit.frozen)
    return dict(name=unit.name, accuracy=float(np.mean(result["accuracy"])), seconds=time.perf_counter() - start)


def pending(jobs):
    """The jobs whose unit has no committed result yet."""
    return [(cfg, u) for cfg, u in jobs if not mnist1d.finished(cfg, u)]


def run_units(jobs, *, workers: int, threads: int = 1, echo=print) -> list[str]:
    """Train ``(config, unit)`` jobs in ``workers`` processes; returns the names of the units that failed."""
    if workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    for cfg in {id(c): c for c, _ in jobs}.values():  # generate the data once, before the workers read it
        mnist1d.load_data(cfg)
    failed = []
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init, initargs=(threads,)) as pool:
        futures = {pool.submit(train_unit, cfg, unit): unit for cfg, unit in jobs}
        for future in track(as_completed(futures), total=len(futures), desc="mnist1d runs", unit="run"):
            unit = futures[future]
            try:
                out = future.result()
                echo(f"done {out['name']}: {out['accuracy']:.1f}% test accuracy, {out['seconds']:.0f} s")
            except Exception as err:  # noqa: BLE001 (report, and let the other units finish)
                failed.append(unit.name)
                echo(f"FAILED {unit.name}: {type(err).__name__}: {err}")
    return failed


def campaign_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the options every campaign command takes: workers, threads, device,
    the configuration (quick, seed), methods, activations and the committed results root."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda[:N] (default cpu)")
    p.add_argument("--quick", action="store_true", help="the quick configuration")
    p.add_argument("--seed", type=int, default=0, help="base seed of the configuration (default 0)")
    p.add_argument("--methods", nargs="+", default=None, help="maml fo_maml reptile fob_forward fob_symmetric")
    p.add_argument("--activations", nargs="+", default=None, help="relu gelu (default both)")
    p.add_argument("--results-dir", default=None, help="committed results root (default figures/mnist1d-runs)")
    return p


def report_failed(failed: list[str]) -> int:
    """Exit status of a campaign: 1, naming the failed units on stderr, or 0."""
    if failed:
        print(f"{len(failed)} unit(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = campaign_parser("python -m fobtheory.experiments.run_parallel", __doc__)
    p.add_argument("--shots", nargs="+", type=int, default=None)
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--variants", nargs="+", default=None, help="plain guard frozen (default all)")
    p.add_argument("--dry-run", action="store_true", help="list the pending units and stop")
    return p


def main(argv=None) -> int:
    from fobtheory.cli import resolve_device

    args = build_parser().parse_args(argv)
    try:
        cfg = mnist1d.config(quick=args.quick, seed=args.seed, device=resolve_device(args.device))
        cfg.update({k: getattr(args, k) for k in ("methods", "shots", "seeds", "activations", "variants", "results_dir")
                    if getattr(args, k) is not None})
        mnist1d._check(cfg)
        plan = mnist1d._plan(cfg)
        todo = pending([(cfg, u) for u in plan])
        print(f"{len(plan)} units planned, {len(plan) - len(todo)} committed, {len(todo)} to train; "
              f"results in {mnist1d.results_dir(cfg)}")
        if args.dry_run:
            print("\n".join(u.name for _, u in todo))
            return 0
        failed = run_units(todo, workers=args.workers, threads=args.threads)
    except ValueError as err:
        print(f"run_parallel: error: {err}", file=sys.stderr)
        return 2
    if report_failed(failed):
        return 1
    print("all units committed; `fobtheory mnist1d` with the same options assembles the results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
