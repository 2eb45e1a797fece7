"""The experiments behind the figures, installed as ``fobtheory.experiments``.

Each experiment module defines

    NAME                                 file stem of <out>/<NAME>.json and its PNG(s)
    config(quick, seed, device) -> dict  the default parameters (``quick`` shrinks them)
    run(config) -> dict                  the results (fobtheory.results.make_results)
    plot(results, out_dir) -> [Path]     the figure(s), from the results alone

and :func:`execute` runs one: config, run, atomic JSON, figure, claims printed;
:func:`reproduce` runs them all and writes the claims ledger. ``run_parallel`` is no
experiment: it trains the MNIST-1D campaign's runs in worker processes.
"""
from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from fobtheory import ledger
from fobtheory.progress import track
from fobtheory.results import claim_line, load_results, write_json_atomic

# CLI command -> module of this package, in the order `fobtheory reproduce` runs them
COMMANDS = {
    "bias": "bias_rates",
    "bilevel": "bilevel",
    "smoothness": "smoothness",
    "optimize": "optimize",
    "mnist1d": "mnist1d",
    "select": "mnist1d_select",
    "fidelity": "mnist1d_fidelity",
    "conv4-fidelity": "conv4_fidelity",
    "paired": "mnist1d_paired",
    "memory": "memory",
    "memory-scale": "memory_scale",
    "second-order": "second_order",
}
# module (results file) -> heading in the claims ledger
TITLES = {
    "bias_rates": "Bias rates: error against delta and against solve accuracy (paper claims 1-2)",
    "bilevel": "Bilevel family with closed forms: FO-B against F2SA-p, O(delta^p) rates and the eps law "
               "(the nearest published relative)",
    "smoothness": "(L0, L1)-smoothness of the MAML objective (paper claim 3)",
    "optimize": "Meta-training: biased plateaus and normalized step sizes (paper claims 1, 3)",
    "mnist1d": "MNIST-1D few-shot learning with CNNs (paper claim 4, accuracy)",
    "mnist1d_select": "MNIST-1D fair baselines: each method at its own (alpha, K) chosen on validation; "
                      "accuracy against time and memory (paper claim 4)",
    "mnist1d_fidelity": "MNIST-1D: finite differences against MAML on networks with kinks, error tails (paper claim 4)",
    "mnist1d_paired": "MNIST-1D paired tracking: FO-B-MAML against MAML and MAML's own noise floor, same "
                      "initialisation and episodes (paper claim 4)",
    "fo_maml_collapse": "Why FO-MAML collapses on MNIST-1D ReLU 5-shot: its meta-gradient against MAML's along its "
                        "own run (paper claim 4, fair baselines)",
    "conv4_fidelity": "Conv4 with BatchNorm (MAML's backbone): finite differences against MAML, error tails and the "
                      "float32 floor (paper claim 4)",
    "memory": "Memory and time per meta-gradient (paper claim 4, activation bottleneck)",
    "memory_scale": "Memory at scale from shapes: where each method runs out of a card; checkpointed FO-B (paper claim 4)",
    "second_order": "Exact second order by Hessian-vector products (HVP-MAML), HF-MAML, and kernels only first "
                    "order gets right (paper claim 4, against the strongest reference)",
}


def module(command: str):
    if command not in COMMANDS:
        raise ValueError(f"experiment must be one of {list(COMMANDS)}, got {command!r}")
    return importlib.import_module(f"{__name__}.{COMMANDS[command]}")


def default_out(quick: bool) -> Path:
    """Full runs write the committed figures; quick runs a scratch folder, so that a quick
    run never overwrites the figures the README shows."""
    return Path("runs/quick") if quick else Path("figures")


def runs_under(cfg: dict, out) -> dict:
    """``cfg`` with a campaign's per-run results beside its summary: a ``results_dir`` under
    ``figures/`` (the default) moves to the same place under ``out``."""
    runs = cfg.get("results_dir")
    if not runs or Path(runs).parts[0] != "figures":
        return cfg
    return cfg | {"results_dir": str(Path(out) / Path(runs).relative_to("figures"))}


def execute(command: str, *, quick: bool = False, seed: int = 0, out=None, device: str = "cpu",
            overrides: dict | None = None, echo=print) -> dict:
    """Run one experiment and write ``<out>/<NAME>.json`` and its figure(s)."""
    mod = module(command)
    out = Path(out) if out is not None else default_out(quick)
    cfg = runs_under(mod.config(quick=quick, seed=seed, device=device) | (overrides or {}), out)
    start = time.perf_counter()
    results = mod.run(cfg)
    results["summary"]["seconds"] = round(time.perf_counter() - start, 2)
    results["summary"]["quick"] = quick  # the ledger does not decide budget-bound claims of quick runs
    path = write_json_atomic(out / f"{mod.NAME}.json", results)
    figures = mod.plot(results, out)
    echo(f"wrote {path} and {', '.join(str(f) for f in figures)} in {results['summary']['seconds']:.1f} s"
         + (" (quick run: a check of the pipeline, not the paper's verdicts)" if quick else ""))
    for line in claim_lines(results):
        echo(line)
    return results


def claim_lines(results: dict) -> list[str]:
    """The claims of ``results`` as the console prints them, by the ledger's rule
    (:func:`fobtheory.ledger.collect`): a claim of a quick run that its budget cannot decide
    (:func:`fobtheory.ledger.budget_bound`) reads 'not decided at this budget' and says why,
    whatever its verdict at the small budget."""
    quick = bool(results["summary"].get("quick", False))
    lines = []
    for c in results["claims"]:
        reason = ledger.budget_bound(results["experiment"], c["id"]) if quick else None
        lines.append(claim_line(dict(c, verdict=ledger.UNDECIDED, measured=f"{c['measured']} ({reason})")
                                if reason else c))
    return lines


def _normalized(config: dict) -> dict:
    return json.loads(json.dumps(config, default=str))


def reproduce(*, quick: bool = False, seed: int = 0, out=None, device: str = "cpu", force: bool = False,
              echo=print) -> list[dict]:
    """Run every experiment in order, then write ``<out>/CLAIMS.md``
    (:func:`fobtheory.ledger.write_ledger`: a quick run's opens with a banner and ends
    beside the committed results in ``figures/``).

    An experiment whose results file already holds the same configuration is not run again
    (its figures are redrawn from the file), so an interrupted reproduction resumes where it
    stopped; ``force`` reruns everything.
    """
    out = Path(out) if out is not None else default_out(quick)
    if quick:
        echo(ledger.BANNER)
    for command in track(list(COMMANDS), desc="reproduce", unit="experiment"):
        mod = module(command)
        path = out / f"{mod.NAME}.json"
        config = _normalized(mod.config(quick=quick, seed=seed, device=device))
        if not force and path.exists():
            try:
                previous = load_results(path)
            except ValueError:
                previous = None
            if (previous is not None and _normalized(previous["config"]) == config
                    and previous["summary"].get("quick", False) == quick):
                mod.plot(previous, out)
                echo(f"{command}: up to date in {path}, not rerun (--force reruns it)")
                continue
        execute(command, quick=quick, seed=seed, out=out, device=device, echo=echo)
    return ledger.write_ledger(out, committed=default_out(False), echo=echo)
