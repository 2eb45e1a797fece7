"""The ``fobtheory`` command."""
from __future__ import annotations

import argparse
import sys
from functools import partial

import numpy as np


def demo(args) -> int:
    """Print the relative error of each estimator against the closed-form meta-gradient."""
    from .estimators import fo_maml, fob_maml, reptile
    from .problems import logistic_tasks
    from .testing import relative_error

    task = logistic_tasks(1, args.dim, seed=args.seed)[0]
    x = np.random.default_rng(args.seed).standard_normal(task.dim)
    exact = task.meta_grad(x, args.inner_steps)
    run = dict(alpha=task.alpha, inner_steps=args.inner_steps)
    deltas = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8]
    rows = [(f"fob_maml {s}", partial(fob_maml, scheme=s)) for s in ("forward", "symmetric", 4, "complex")]
    print(f"logistic task, d={task.dim}, alpha*L={task.alpha * task.L:.2f}, K={args.inner_steps}, seed={args.seed}")
    print(f"relative error |g - grad Phi| / |grad Phi|\n{'estimator':<20}" + "".join(f"{d:>10.0e}" for d in deltas))
    for name, est in rows:
        errs = [relative_error(est(x, task.inner_grad, task.outer_grad, delta=d, **run), exact) for d in deltas]
        print(f"{name:<20}" + "".join(f"{e:>10.1e}" for e in errs))
    for name, est in (("fo_maml", fo_maml), ("reptile", reptile)):
        err = relative_error(est(x, task.inner_grad, task.outer_grad, **run), exact)
        print(f"{name:<20}" + f"{err:>10.1e}" * len(deltas) + "   (no delta: bias does not vanish)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fobtheory", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="table of estimator errors on a logistic task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--inner-steps", type=int, default=1)
    p.set_defaults(func=demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"fobtheory {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
