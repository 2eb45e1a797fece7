"""fobtheory: experiments that turn each claim of the FO-B-MAML paper into a verdict."""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from . import progress


def demo(args) -> int:
    """Print the relative error of each estimator against the closed-form meta-gradient."""
    from .estimators import fo_maml, fob_maml, reptile
    from .problems import logistic_tasks
    from .rates import relative_error

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


EXPERIMENT_HELP = {
    "bias": "bias rates: error against delta and against solve accuracy (claims 1-2)",
    "bilevel": "bilevel ridge tasks with closed forms: FO-B against F2SA-p (identity at delta = 1/lambda), "
               "O(delta^p) rates for p = 1..8, the eps law of inexact lower-level solves",
    "smoothness": "(L0, L1)-smoothness of the MAML objective (claim 3)",
    "optimize": "meta-training with each estimator and optimizer (claims 1, 3)",
    "mnist1d": "few-shot MNIST-1D with CNNs: accuracy of each method (claim 4)",
    "select": "MNIST-1D fair baselines: each method at its own (alpha, K) chosen on validation episodes, "
              "the full protocol there, accuracy against time and memory (claim 4)",
    "fidelity": "MNIST-1D: error tails of the finite differences against MAML, plain, guarded, frozen (claim 4)",
    "paired": "MNIST-1D paired tracking: MAML, FO-B and MAML perturbed at FO-B's measured error, in lockstep; "
              "distances, accuracy differences, equivalence over paired seeds (claim 4)",
    "conv4-fidelity": "Conv4 with BatchNorm on procedural strokes: error tails of FO-B against MAML, the float32 "
                      "floor and the delta that reaches it (claim 4)",
    "memory": "peak memory and time per meta-gradient against width and inner steps (claim 4)",
    "memory-scale": "peak memory at scale from shapes (meta device): what fits an 80 GB / 141 GB card; "
                    "checkpointed FO-B (claim 4)",
    "second-order": "exact MAML by Hessian-vector products against FO-B: exactness, memory and time, HF-MAML, "
                    "kernels without second derivatives (claim 4)",
}
TORCH_EXPERIMENTS = ("mnist1d", "select", "fidelity", "paired", "conv4-fidelity", "memory", "memory-scale",
                     "second-order")
CAMPAIGNS = ("mnist1d", "select", "fidelity", "paired")  # experiments made of runs, with --executor and --workers


def experiment(args) -> int:
    from .experiments import execute

    keys = ("methods", "shots", "seeds", "activations", "variants", "settings", "committed_only")
    overrides = {key: getattr(args, key) for key in keys if getattr(args, key, None) is not None}
    device = resolve_device(getattr(args, "device", "cpu"))
    if hasattr(args, "executor"):  # a campaign: its executor and protocol
        from .experiments.mnist1d import overrides as campaign_overrides

        overrides.update(campaign_overrides(args))
    if getattr(args, "plan", False):
        from .experiments import module, runs_under

        mod = module(args.command)
        print(mod.plan(runs_under(mod.make_config(args), output_folder(args.out, args.quick))))
        return 0
    execute(args.command, quick=args.quick, seed=args.seed, out=output_folder(args.out, args.quick), device=device,
            overrides=overrides)
    return 0


def claims(args) -> int:
    from . import docs_numbers, ledger
    from .experiments import default_out

    out = args.out or default_out(False)
    for option, path in (("--readme", args.readme), ("--docs", args.docs)):  # checked before anything is written
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{option} {path!r} is not an existing file: give the page whose generated blocks to fill")
    if args.readme or args.docs:
        quick = [r["results"] for r in ledger.collect(out) if r["quick"]]
        if quick and not args.force:
            raise ValueError(f"{out} holds quick results ({', '.join(sorted(set(quick)))}): they would replace the "
                             "committed verdicts of the README and docs; pass --force to write them anyway")
    rows = ledger.write_ledger(out, committed=default_out(False))
    if args.readme:
        changed = ledger.update_readme(args.readme, rows, figure_prefix=f"{Path(out).as_posix()}/", folder=out)
        print(f"{'updated' if changed else 'unchanged'}: the generated blocks of {args.readme}")
    if args.docs:
        figures = Path(os.path.relpath(out, Path(args.docs).parent)).as_posix()  # as the page sees them
        text = ledger.claims_rst(rows, figure_prefix=f"{figures}/")
        changed = Path(args.docs).read_text() != text
        Path(args.docs).write_text(text)
        print(f"{'updated' if changed else 'unchanged'}: {args.docs}")
        for page in sorted(Path(args.docs).parent.glob("*.rst")):  # the claims blocks of the other pages
            if page != Path(args.docs) and docs_numbers.BLOCK.search(page.read_text()):
                print(f"{'updated' if docs_numbers.update_page(page, out) else 'unchanged'}: "
                      f"the claims blocks of {page}")
    return 0


def reproduce(args) -> int:
    from .experiments import reproduce as run_all

    device = resolve_device(args.device)
    run_all(quick=args.quick, seed=args.seed, out=output_folder(args.out, args.quick), device=device, force=args.force)
    return 0


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` as
    given. Anything else, or a CUDA device torch does not see, is a ValueError naming --device."""
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", device):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N (N a GPU index), got {device!r}")
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device} but torch sees no CUDA device; use --device cpu or auto")
    count, index = torch.cuda.device_count(), int(device.partition(":")[2] or 0)
    if index >= count:
        raise ValueError(f"--device {device} but torch sees {count} CUDA device(s): use cuda:0 to cuda:{count - 1}")
    return device


def output_folder(out, quick: bool) -> Path:
    """The folder an experiment writes to (``--out``, or the default for ``quick``), created
    and test-written now, so that one that cannot be used is refused before any work."""
    from .experiments import default_out

    path = Path(out) if out is not None else default_out(quick)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ValueError(f"--out {str(path)!r} is not a writable folder ({err.strerror or err}): "
                         "give a folder that can be created and written") from None
    return path


def integer_at_least(minimum: int):
    """An argparse ``type``: the integer in the text, refused (one line, naming the valid
    range) unless it is at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    return parse


_seed = integer_at_least(0)


class Parser(argparse.ArgumentParser):
    """argparse with each error on one line, ``prog: error: message``, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _progress_flags(p, default):
    group = p.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_const", const="bar", default=default,
                       help="progress bars even when the output is not a terminal")
    group.add_argument("--no-progress", dest="progress", action="store_const", const="off", default=default,
                       help="no progress output (default: bars on a terminal, one line per finished unit "
                            "of work otherwise)")


def _common(p, device: bool):
    p.add_argument("--quick", action="store_true", help="small configuration for CI (seconds)")
    p.add_argument("--out", default=None, help="output folder (default: figures/, or runs/quick/ with --quick)")
    p.add_argument("--seed", type=_seed, default=0, help="base random seed (default 0)")
    if device:
        p.add_argument("--device", default="cpu", help="auto, cpu or cuda[:N] (default cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fobtheory", description=__doc__)
    _progress_flags(parser, "auto")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in EXPERIMENT_HELP.items():
        p = sub.add_parser(name, help=text, description=text)
        _common(p, device=name in TORCH_EXPERIMENTS)
        p.set_defaults(func=experiment)
        if name in CAMPAIGNS:
            from .campaign import add_options

            add_options(p, executor=None, workers=None, threads=None)
        if name in ("mnist1d", "select"):
            p.add_argument("--no-early-stopping", dest="early_stopping", action="store_false", default=None,
                           help="protocol version 2 (no early stopping): the runs committed before it")
        if name in ("mnist1d", "select", "paired"):
            p.add_argument("--plan", action="store_true",
                           help="print the campaign's cost in process-hours and the units not committed yet "
                                "(and any broken result file), then stop")
        if name == "mnist1d":
            p.add_argument("--methods", "--method", nargs="+", default=None,
                           help="maml fo_maml reptile fob_forward fob_symmetric (default: all)")
            p.add_argument("--shots", nargs="+", type=int, default=None, help="shots per class (default 1 5)")
            p.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds")
            p.add_argument("--activations", nargs="+", default=None, help="relu gelu (default both)")
            p.add_argument("--variants", nargs="+", default=None,
                           help="plain guard frozen (default all): plain methods, FO-B symmetric with the kink guard, "
                                "FO-B with frozen activation patterns")
        if name == "select":
            p.add_argument("--methods", "--method", nargs="+", default=None,
                           help="maml fo_maml reptile fob_forward fob_symmetric (default: all)")
            p.add_argument("--activations", nargs="+", default=None, help="relu gelu (default both)")
            p.add_argument("--committed", dest="committed_only", action="store_true", default=None,
                           help="train and time nothing: assemble from the committed runs, reusing the cost rows of "
                                "the results file beside them (every unit must be committed)")
        if name == "paired":
            p.add_argument("--activations", nargs="+", default=None, help="relu gelu (default both)")
            p.add_argument("--shots", nargs="+", type=int, default=None, help="shots per class (default 1 5)")
            p.add_argument("--settings", nargs="+", default=None,
                           help="shared tuned (default both): the config's (alpha, K), MAML's chosen one")
            p.add_argument("--committed", dest="committed_only", action="store_true", default=None,
                           help="train nothing: summarize the committed units and list the cells with units "
                                "still to train as pending (a campaign's interim results)")
    p = sub.add_parser("claims", help="print the claims ledger of a results folder and write its CLAIMS.md")
    p.add_argument("--out", default=None, help="results folder (default figures/)")
    p.add_argument("--readme", default=None, help="also rewrite the generated blocks of this README (an existing file)")
    p.add_argument("--docs", default=None,
                   help="also rewrite this generated docs page of the claims (an existing file, e.g. "
                        "docs/claims.rst) and the claims blocks of the pages beside it")
    p.add_argument("--force", action="store_true",
                   help="write quick results into --readme and --docs (refused without it: they are not the verdicts)")
    p.set_defaults(func=claims)
    p = sub.add_parser("reproduce", help="run every experiment, resuming; then the claims ledger")
    _common(p, device=True)
    p.add_argument("--force", action="store_true", help="rerun experiments whose results are up to date")
    p.set_defaults(func=reproduce)
    p = sub.add_parser("demo", help="table of estimator errors on a logistic task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--inner-steps", type=int, default=1)
    p.set_defaults(func=demo)
    for p in sub.choices.values():  # the progress flags after the command too; SUPPRESS keeps the global one
        _progress_flags(p, argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    """Run a command; a bad value (ValueError) or a failed read or write (OSError) ends it
    with one line on stderr and exit status 2 or 1, an interrupted campaign with one line
    and 128 + the signal's number."""
    from .campaign import Interrupted

    args = build_parser().parse_args(argv)
    previous = progress.set_mode(args.progress)
    try:
        return args.func(args)
    except Interrupted as stop:  # a campaign's workers ended; what is committed stays
        print(f"fobtheory {args.command}: {stop}", file=sys.stderr)
        return stop.status
    except (ValueError, OSError) as err:
        print(f"fobtheory {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2 if isinstance(err, ValueError) else 1
    finally:
        progress.set_mode(previous)


if __name__ == "__main__":
    sys.exit(main())
