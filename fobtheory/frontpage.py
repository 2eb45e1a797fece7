"""The generated blocks of the README's front page besides the verdicts (:mod:`fobtheory.ledger`):
the figures with the tally of their claims, the commands with their run times, and the speed
table, each filled from the results files of a folder between ``<!-- name:start -->`` and
``<!-- name:end -->`` markers, so that no measured number on the front page is typed by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

# commands that are not experiments, and what they do
OTHER_COMMANDS = {
    "claims": "the ledger of a results folder and its CLAIMS.md; `--readme`, `--docs` fill the generated blocks",
    "reproduce": "every experiment in turn, resuming where an interrupted run stopped; then the claims ledger",
    "demo": "a table of each estimator's error against the closed-form meta-gradient on a logistic task",
}
BENCH = "bench_meta"
THUMBNAIL = 320  # pixels: a figure's width in the front page's table
KINK_CHECK_COST = "bench/kink_check_cost"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _load(folder, name: str) -> dict | None:
    path = Path(folder) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def tally(rows: list[dict]) -> str:
    """``n confirmed, n refuted, ...``: the verdicts of ``rows``, in the ledger's order."""
    from .ledger import UNDECIDED
    from .results import VERDICTS

    counts = {v: sum(r["verdict"] == v for r in rows) for v in (*VERDICTS, UNDECIDED)}
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)


def figures_markdown(rows: list[dict], prefix: str = "figures/") -> str:
    """One line per experiment that has figures: its title, its figures (thumbnails that link
    to the full size) and the tally of its claims' verdicts."""
    from .experiments import TITLES
    from .ledger import _order

    out = ["| experiment | figures | its claims |", "|---|---|---|"]
    for name in _order(rows):
        own = [r for r in rows if r["experiment"] == name]
        if own[0]["figures"]:
            links = " ".join(f'<a href="{prefix}{f}"><img src="{prefix}{f}" alt="{f}" width="{THUMBNAIL}"></a>'
                             for f in own[0]["figures"])
            out.append(f"| {TITLES.get(name, name)} | {links} | {tally(own)} |")
    return "\n".join(out)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def run_time(results: dict | None) -> str:
    """A committed run's time from its results file: a campaign's process-hours of training
    (the summary's, or the sum over its runs' ``final`` records of seconds per step x steps),
    else the command's wall time; '-' without a results file."""
    if results is None:
        return "-"
    summary = results["summary"]
    hours = summary.get("process_hours") or summary.get("campaign", {}).get("meta_step_process_hours")
    steps = results["config"].get("meta_steps")
    finals = [r for r in results["records"] if r.get("kind") == "final" and r.get("seconds_per_step")]
    if hours is None and finals and steps:
        hours = sum(r["seconds_per_step"] * r.get("meta_steps", steps) for r in finals) / 3600
    if hours is not None:
        return f"{hours:.1f} process-hours of training (resumable), then {_duration(summary.get('seconds', 0))}"
    return _duration(summary["seconds"]) if summary.get("seconds") is not None else "-"


def commands_markdown(folder) -> str:
    """Every command of the ``fobtheory`` CLI: what it does, and the time of its committed run
    in ``folder`` where a results file holds one."""
    from .cli import EXPERIMENT_HELP
    from .experiments import COMMANDS

    out = ["| command | what it does | committed run (wall time, or a campaign's training) |", "|---|---|---|"]
    for name, text in EXPERIMENT_HELP.items():
        module = COMMANDS.get(name)
        out.append(f"| `fobtheory {name}` | {text} | {run_time(_load(folder, module) if module else None)} |")
    out += [f"| `fobtheory {name}` | {text} | - |" for name, text in OTHER_COMMANDS.items()]
    return "\n".join(out)


def speed_markdown(folder) -> str:
    """The time per meta-gradient against plain autograd loops (``bench_meta.json``): the
    table, then its ratios in one sentence."""
    results = _load(folder, BENCH)
    if results is None:
        return f"No {BENCH}.json in the results folder: `python -m fobtheory.experiments.bench_meta` writes it."
    from .experiments.bench_meta import table

    c, s = results["config"], results["summary"]
    env = results["environment"]
    return "\n".join([
        f"CNN1D width {c['width']} ({c['activation']}), K = {c['inner_steps']}, 5-way 5-shot, {c['threads']} torch "
        f"thread(s), median of {c['rounds']} interleaved rounds, torch {env['torch']} on a machine of "
        f"{env['cpu_count']} CPU cores:",
        "", table(results["records"]), "",
        f"One task: {s['ratio_one_task'][0]:.2f}x to {s['ratio_one_task'][1]:.2f}x the plain loop's time; a meta-batch "
        f"of {c['meta_batch']} (vmapped): {s['ratio_meta_batch'][0]:.2f}x to {s['ratio_meta_batch'][1]:.2f}x. HVP-MAML "
        f"takes {s['hvp_over_maml']:.2f}x MAML's time for the meta-batch, FO-B symmetric "
        f"{s['fob_symmetric_over_hvp']:.2f}x HVP-MAML's."])


def kink_check_markdown(folder) -> str:
    """The cost of the default kink check on plain differences, and what it flags
    (``bench/kink_check_cost.json``): the table, then its largest ratios in one sentence."""
    results = _load(folder, KINK_CHECK_COST)
    if results is None:
        return (f"No {KINK_CHECK_COST}.json in the results folder: "
                "`python -m fobtheory.experiments.bench_kink_check` writes it.")
    from .experiments.bench_kink_check import table

    c, s = results["config"], results["summary"]
    return "\n".join([
        f"fob_symmetric in {c['dtype']}, delta {c['delta']:g}, K = {c['inner_steps']}, {c['meta_batch']} tasks, "
        f"median of {c['rounds']} interleaved rounds (plain: the paper's estimator unchecked; checked: plain "
        "differences with the default check; default: frozen patterns):",
        "", table(results["records"]), "",
        f"The check costs no gradient call: at most {s['max_check_time_ratio']:.2f}x the unchecked time and "
        f"{s['max_check_peak_ratio']:.2f}x its peak memory (the K kept gradients), tolerance {s['kink_check']:g}."])


def blocks(folder, rows: list[dict], prefix: str = "figures/") -> dict[str, str]:
    """The body of each generated block this module fills, by marker name."""
    return {"figures": figures_markdown(rows, prefix), "commands": commands_markdown(folder),
            "bench": speed_markdown(folder), "kinkcheck": kink_check_markdown(folder)}
