"""Train the runs of the MNIST-1D campaign on an executor, without assembling the results.

Each unit of the plan (one run: activation, shots, method, variant, seed; see
:func:`fobtheory.experiments.mnist1d.jobs`) is a :mod:`fobtheory.campaign` job: it trains on
``--executor`` (``local``: ``--workers`` spawned processes, one torch thread each by
default; ``slurm``: a submitit job array) on ``--device``; units whose results are already
committed under ``<results_dir>/<run key>/`` are skipped, and every finished unit commits
its own result at once, so the command can be interrupted and rerun, and several machines
can share a campaign through the committed folder. Afterwards ``fobtheory mnist1d`` with the
same options trains nothing and assembles ``mnist1d.json`` and its figure.

    python -m fobtheory.experiments.run_parallel --workers 2                       # the whole plan, here
    python -m fobtheory.experiments.run_parallel --workers 16 --device cuda --variants frozen
    python -m fobtheory.experiments.run_parallel --executor slurm --workers 64 --cluster-option slurm_partition=cpu
    python -m fobtheory.experiments.run_parallel --dry-run --seeds 0               # the plan and its cost
"""
from __future__ import annotations

import sys

from fobtheory import campaign
from fobtheory.experiments import mnist1d


def build_parser():
    p = mnist1d.campaign_parser("python -m fobtheory.experiments.run_parallel", __doc__)
    p.add_argument("--shots", nargs="+", type=int, default=None)
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--variants", nargs="+", default=None, help="plain guard frozen (default all)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (units, broken files, cost) and stop")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        cfg = mnist1d.make_config(args)
        print(mnist1d.plan(cfg))
        if args.dry_run:
            return None
        mnist1d.train_all(lambda: mnist1d.jobs(cfg), cfg, "mnist1d runs")
        return "all units committed; `fobtheory mnist1d` with the same options assembles the results"

    return campaign.command("run_parallel", body)


if __name__ == "__main__":
    sys.exit(main())
