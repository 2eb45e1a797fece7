"""MNIST-1D fair baselines: every method at its own inner step and step count, and its cost.

One results file (``mnist1d_select.json``) and two figures (``mnist1d_select.png``: accuracy
against time and memory; ``mnist1d_select_grid.png``: the selection grid).

1. **Selection grid** (5-way ``grid_shots``-shot, seed ``grid_seed``, ``grid_meta_steps``
   meta-steps). Each *variant* (every method on every activation; FO-B forward and symmetric
   with frozen activation patterns on ``frozen_activations``) is trained at inner step alpha
   in ``grid_alphas`` x inner steps K in ``grid_inner_steps`` and scored by its mean accuracy
   on ``eval_episodes`` validation episodes (samples held out of the train split; the test
   split plays no part in the choice): with early stopping, at the run's best checkpoint, so
   that the number of meta-steps is part of the choice as it is of the full run's result. **Widening:** when the best point lies on the edge of
   the points tried, its untried neighbours one step along ``alpha_ladder`` or
   ``inner_steps_ladder`` are added, for ``grid_rounds`` rounds in all; the ladders' ends
   bound it too (K stops at 10: the budget of the full protocol's runs grows with K), and a
   choice left on an edge says so (``untried_beyond``). The chosen setting is the
   argmax (ties: fewer inner steps, then the smaller alpha). **1-shot reuses the 5-shot
   choice**: selecting at 1-shot too would double the grid, and the shared protocol also
   uses one setting for both shot counts, so the two tables differ only in the setting.
2. **Full protocol** (``seeds``, ``meta_steps``, every shot count, ``eval_episodes`` test
   episodes) for each variant at its chosen setting (table ``best``) and at the shared one,
   the config's ``alpha`` and ``inner_steps`` (table ``shared``: the same runs, with the same
   run keys, as ``fobtheory mnist1d``). Tables and claims read the test accuracy at the best
   validation checkpoint with early stopping (:func:`test_key`; ``accuracy_final`` keeps the
   last step's beside it). For each table, claims: FO-B symmetric (plain, and
   frozen on ReLU) against MAML, and against the better of FO-MAML and Reptile; differences
   paired by seed and test episode (every setting is evaluated on the same test episodes);
   95% intervals are t intervals over the seed means (:func:`mnist1d.seed_interval`: with 3
   seeds a bootstrap over seeds spans little more than their range), a claim the bootstrap
   would have decided otherwise says so (:func:`claims`), and :func:`seed_needs` (in the
   highlights and ``--plan``) says which verdicts hinge on seeds and what would settle them.
   **Carry-over** (:func:`carry_over`): whether the choice, made on a short budget and one
   seed, stays at least as good as the shared setting in the full runs (their validation
   accuracy, every seed and shot count).
3. **Cost**: seconds per meta-step (median, every variant interleaved round by round,
   :func:`fobtheory.memory.wall_time`) and the meter's peak bytes of one meta-gradient
   (:func:`fobtheory.memory.peak_bytes`) at each table's setting. HVP-MAML (``maml_hvp``,
   iterates stored) is costed at MAML's settings: it computes MAML's meta-gradient (to
   1e-16, ``fobtheory second-order``), so MAML's selection and accuracies are its own.

**Units and stages.** Each run is one unit of a :mod:`fobtheory.campaign`, trained by
:func:`mnist1d.train` and committed at once under ``<results_dir>/<run key>/`` (the key hashes
alpha, K, meta-steps, ...), so a campaign resumes on any machine and units run on any
executor (``--executor``, ``--workers``). Which units exist depends on results: round r + 1
of a variant's grid on round r, its ``best`` runs on its whole grid. :func:`jobs` lists the
units known now; ``fobtheory select --plan`` prints them with the cost of the campaign in
process-hours (and any broken result file); ``python -m fobtheory.experiments.mnist1d_select``
trains them stage by stage, one seed at a time.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from scipy import stats

from fobtheory import campaign, plotting
from fobtheory.experiments import mnist1d
from fobtheory.memory import peak_bytes, wall_time
from fobtheory.nn import METHODS, PLAIN_DIFFERENCES, meta_gradient_batch
from fobtheory.results import DamagedResult, claim, load_results, make_results, save_figure, verdict

NAME = "mnist1d_select"
TABLES = ("shared", "best")
# entries of this experiment's config that are not entries of a mnist1d run config
SELECTION_KEYS = ("frozen_activations", "grid_alphas", "grid_inner_steps", "alpha_ladder", "inner_steps_ladder",
                  "grid_rounds", "grid_meta_steps", "grid_shots", "grid_seed", "cost_rounds")
TOLERANCE = 1.0  # points of accuracy: "tracks" = within +-TOLERANCE, "at or above" = not below -TOLERANCE


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    """mnist1d's config (the full protocol; its ``alpha`` and ``inner_steps`` are the shared
    setting) with the selection entries."""
    cfg = mnist1d.config(quick=quick, seed=seed, device=device)
    for key in ("guarded_activations", "variants"):  # the kink guard is not part of this comparison
        del cfg[key]
    cfg.update(frozen_activations=["relu"], grid_alphas=[0.1, 0.4], grid_inner_steps=[1, 5],
               alpha_ladder=[0.01, 0.03, 0.1, 0.4, 0.8], inner_steps_ladder=[1, 5, 10], grid_rounds=3,
               grid_meta_steps=1000, grid_shots=5, grid_seed=seed, timing_rounds=10, cost_rounds=2)
    if quick:
        cfg.update(methods=["maml", "fob_symmetric"], frozen_activations=[], grid_inner_steps=[1],
                   inner_steps_ladder=[1, 2], grid_meta_steps=10, timing_rounds=2, cost_rounds=1)
    return cfg


def _check(cfg):
    unknown = set(cfg["methods"]) - set(METHODS)
    if unknown:
        raise ValueError(f"methods must be among {METHODS}, got {sorted(unknown)}")
    for grid, ladder in (("grid_alphas", "alpha_ladder"), ("grid_inner_steps", "inner_steps_ladder")):
        values = cfg[ladder]
        if not values or list(values) != sorted(set(values)) or values[0] <= 0:
            raise ValueError(f"{ladder} must be positive and strictly increasing, got {values}")
        if not cfg[grid] or not set(cfg[grid]) <= set(values):
            raise ValueError(f"{grid} must be a non-empty subset of {ladder} {values}, got {cfg[grid]}")
    if any(int(k) != k for k in cfg["inner_steps_ladder"]):
        raise ValueError(f"inner_steps_ladder must hold integers, got {cfg['inner_steps_ladder']}")
    for key in ("grid_rounds", "grid_meta_steps", "cost_rounds"):
        if int(cfg[key]) != cfg[key] or cfg[key] < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {cfg[key]!r}")


# ---------------------------------------------------------------------------------------------
# variants, run configs, units


class Variant(NamedTuple):
    """One method on one activation, with or without frozen patterns."""

    activation: str
    method: str
    frozen: bool = False

    @property
    def key(self) -> str:
        return f"{self.activation}/{self.method}{'+frozen' if self.frozen else ''}"

    def unit(self, shots: int, seed: int) -> mnist1d.Unit:
        return mnist1d.Unit(self.activation, shots, self.method, seed, frozen=self.frozen)


def variants(cfg) -> list[Variant]:
    """Every method on every activation, then FO-B with frozen patterns on ``frozen_activations``."""
    out = [Variant(a, m) for a in cfg["activations"] for m in cfg["methods"]]
    return out + [Variant(a, m, True) for a in cfg["activations"] if a in cfg["frozen_activations"]
                  for m in mnist1d.FROZEN_METHODS if m in cfg["methods"]]


def train_config(cfg, alpha, inner_steps, *, grid: bool = False) -> dict:
    """The :func:`mnist1d.config` of runs at ``(alpha, inner_steps)``: the full protocol, or
    with ``grid`` the selection budget (``grid_meta_steps``, ``grid_shots``, ``grid_seed``)."""
    out = {k: v for k, v in cfg.items() if k not in SELECTION_KEYS}
    out.update(alpha=alpha, inner_steps=inner_steps)
    if grid:
        out.update(meta_steps=cfg["grid_meta_steps"], shots=[cfg["grid_shots"]], seeds=[cfg["grid_seed"]])
    return out


def committed(train_cfg, unit) -> dict | None:
    """The committed result of ``unit`` under ``train_cfg``, or None (a broken file raises, naming it)."""
    return campaign.read(mnist1d.result_path(train_cfg, unit.name))


def _score(train_cfg, unit) -> float | None:
    """Validation accuracy (:func:`validation_key`) of a committed grid run; None when not
    trained (or broken: the plan lists it)."""
    try:
        result = committed(train_cfg, unit)
    except DamagedResult:
        return None
    return None if result is None else float(np.mean(result[validation_key(train_cfg)]))


# ---------------------------------------------------------------------------------------------
# selection: pure functions of validation scores {(alpha, K): accuracy}


def select(scores: dict) -> tuple:
    """The point of highest validation accuracy; ties go to fewer inner steps, then the smaller alpha."""
    if not scores:
        raise ValueError("select needs at least one scored point")
    return min(scores, key=lambda p: (-scores[p], p[1], p[0]))


def _moved(point: tuple, axis: int, value) -> tuple:
    return (value, point[1]) if axis == 0 else (point[0], value)


def neighbours(point: tuple, alpha_ladder, inner_steps_ladder) -> list[tuple]:
    """The points one ladder step from ``point``: alpha up, alpha down, K up, K down."""
    out = []
    for axis, ladder in enumerate((list(alpha_ladder), list(inner_steps_ladder))):
        i = ladder.index(point[axis])
        out += [_moved(point, axis, ladder[j]) for j in (i + 1, i - 1) if 0 <= j < len(ladder)]
    return out


def widen(scores: dict, alpha_ladder, inner_steps_ladder) -> list[tuple]:
    """The best point's untried neighbours on the ladders: none when it is inside the tried
    grid, the points beyond it when it lies on the grid's edge."""
    return [p for p in neighbours(select(scores), alpha_ladder, inner_steps_ladder) if p not in scores]


class Grid(NamedTuple):
    rounds: dict  # every point planned so far -> the round that added it
    scores: dict  # validation accuracy of the points finished
    chosen: tuple | None  # the selected point, once every round is finished


def grid(cfg, score: Callable[[tuple], float | None]) -> Grid:
    """The grid of one variant as far as ``score(point)`` (validation accuracy, None when not
    trained yet) allows: round 1 is ``grid_alphas`` x ``grid_inner_steps``; each finished round
    below ``grid_rounds`` adds :func:`widen`'s points; :func:`select` once nothing is added."""
    rounds = {(a, k): 1 for a in cfg["grid_alphas"] for k in cfg["grid_inner_steps"]}
    r = 1
    while True:
        scores = {p: s for p in rounds if (s := score(p)) is not None}
        if len(scores) < len(rounds):
            return Grid(rounds, scores, None)
        new = widen(scores, cfg["alpha_ladder"], cfg["inner_steps_ladder"]) if r < cfg["grid_rounds"] else []
        if not new:
            return Grid(rounds, scores, select(scores))
        r += 1
        rounds.update(dict.fromkeys(new, r))


def open_edges(scores: dict, point: tuple, alpha_ladder, inner_steps_ladder) -> list[str]:
    """Directions in which the grid did not look one ladder step beyond ``point`` (the
    neighbour was not tried, or the ladder ends there; K below 1 does not exist)."""
    out = []
    for axis, (name, ladder) in enumerate((("alpha", list(alpha_ladder)), ("K", list(inner_steps_ladder)))):
        i = ladder.index(point[axis])
        for j, word in ((i + 1, "above"), (i - 1, "below")):
            if axis == 1 and point[1] == 1 and word == "below":
                continue
            if not 0 <= j < len(ladder) or _moved(point, axis, ladder[j]) not in scores:
                out.append(f"{name} {word} {point[axis]:g}")
    return out


def grids(cfg) -> dict[Variant, Grid]:
    """Each variant's :func:`grid` from the committed grid runs."""
    def score(v):
        return lambda point: _score(train_config(cfg, *point, grid=True), v.unit(cfg["grid_shots"], cfg["grid_seed"]))

    return {v: grid(cfg, score(v)) for v in variants(cfg)}


# ---------------------------------------------------------------------------------------------
# the plan: units known now, and their cost


class Run(NamedTuple):
    stage: str  # "grid round r", "shared" or "best"
    cfg: dict  # the mnist1d config of the run
    unit: mnist1d.Unit

    @property
    def job(self) -> campaign.Job:
        return mnist1d.job(self.cfg, self.unit, self.stage)


def setting(cfg, table: str, chosen) -> tuple:
    return (cfg["alpha"], cfg["inner_steps"]) if table == "shared" else chosen


def jobs(cfg, state: dict[Variant, Grid] | None = None) -> list[Run]:
    """Every unit known now (finished or not): the grid points planned so far, the shared
    runs, and the ``best`` runs of the variants whose grid is finished; a run shared by two
    stages (a variant whose best is the shared setting) is listed once."""
    state = grids(cfg) if state is None else state
    out = {}
    for v, g in state.items():
        for point, r in g.rounds.items():
            job = Run(f"grid round {r}", train_config(cfg, *point, grid=True),
                      v.unit(cfg["grid_shots"], cfg["grid_seed"]))
            out.setdefault(mnist1d.result_path(job.cfg, job.unit.name), job)
        for table in TABLES:
            if table == "best" and g.chosen is None:
                continue
            tcfg = train_config(cfg, *setting(cfg, table, g.chosen))
            for shots in cfg["shots"]:
                for seed in cfg["seeds"]:
                    job = Run(table, tcfg, v.unit(shots, seed))
                    out.setdefault(mnist1d.result_path(tcfg, job.unit.name), job)
    return list(out.values())


def pending(cfg, state=None) -> list[Run]:
    """The runs known now that are neither committed nor broken."""
    return [j for j in jobs(cfg, state) if campaign.status(j.job) == "pending"]


def campaign_cost(cfg, seconds: dict, state: dict[Variant, Grid] | None = None) -> dict:
    """Process-hours of the campaign's units not yet committed: ``known`` (units listed by
    :func:`pending`), ``widening`` (a bound: per variant and remaining round, the most
    untried neighbours any planned point has, each at the ladder's largest K),
    ``best_low``/``best_high`` (the ``best`` runs of variants whose choice is not known, all
    at the ladder's smallest / largest K), and the unit counts."""
    state = grids(cfg) if state is None else state
    todo = pending(cfg, state)
    known = sum(mnist1d.unit_seconds(j.cfg, j.unit, seconds) for j in todo)
    widening, low, high, unknown_units = 0.0, 0.0, 0.0, 0
    k_low, k_high = cfg["inner_steps_ladder"][0], cfg["inner_steps_ladder"][-1]
    for v, g in state.items():
        if g.chosen is not None:
            continue
        rounds_left = cfg["grid_rounds"] - max(g.rounds.values())
        ladders = cfg["alpha_ladder"], cfg["inner_steps_ladder"]
        most = max(len([q for q in neighbours(p, *ladders) if q not in g.rounds]) for p in g.rounds)
        unit = v.unit(cfg["grid_shots"], cfg["grid_seed"])
        widening += most * rounds_left * mnist1d.unit_seconds(train_config(cfg, cfg["alpha"], k_high, grid=True), unit, seconds)
        for shots in cfg["shots"]:
            n = len(cfg["seeds"])
            unknown_units += n
            low += n * mnist1d.unit_seconds(train_config(cfg, cfg["alpha"], k_low), v.unit(shots, 0), seconds)
            high += n * mnist1d.unit_seconds(train_config(cfg, cfg["alpha"], k_high), v.unit(shots, 0), seconds)
    return dict(known=known / 3600, known_units=len(todo), widening=widening / 3600, best_low=low / 3600,
                best_high=high / 3600, best_units_unknown=unknown_units)


def cost_keys(cfg, state=None) -> set[tuple]:
    """The ``(activation, method, frozen, K, shots)`` keys :func:`campaign_cost` needs."""
    state = grids(cfg) if state is None else state
    keys = {(j.unit.activation, j.unit.method, j.unit.frozen, j.cfg["inner_steps"], j.unit.shots)
            for j in pending(cfg, state)}
    for v, g in state.items():
        if g.chosen is None:
            for k in (cfg["inner_steps_ladder"][0], cfg["inner_steps_ladder"][-1]):
                keys |= {(v.activation, v.method, v.frozen, k, s) for s in {*cfg["shots"], cfg["grid_shots"]}}
    return keys


def describe_cost(cost: dict) -> str:
    lines = [f"campaign cost on this machine (process-hours, one unit per process): {cost['known']:.2f} for the "
             f"{cost['known_units']} units known now"]
    if cost["widening"] or cost["best_units_unknown"]:
        lines.append(f"  then up to {cost['widening']:.2f} for widening rounds, and {cost['best_low']:.2f} to "
                     f"{cost['best_high']:.2f} for the {cost['best_units_unknown']} 'best' runs whose setting the "
                     "grid has not chosen yet (all at the smallest / largest K)")
        lines.append(f"  total: {cost['known'] + cost['best_low']:.2f} to "
                     f"{cost['known'] + cost['widening'] + cost['best_high']:.2f} process-hours")
    return "\n".join(lines)


def describe_selection(cfg, state: dict[Variant, Grid]) -> str:
    """Each variant's choice so far, as text: the chosen point and its validation accuracy
    (with the directions the grid did not look in), or how many grid points are trained."""
    lines = [f"selection ({cfg['grid_shots']}-shot validation accuracy, {cfg['grid_meta_steps']} meta-steps):"]
    for v, g in state.items():
        if g.chosen is None:
            lines.append(f"  {v.key:<26} grid pending: {len(g.scores)} of {len(g.rounds)} points trained")
            continue
        edges = open_edges(g.scores, g.chosen, cfg["alpha_ladder"], cfg["inner_steps_ladder"])
        lines.append(f"  {v.key:<26} alpha {g.chosen[0]:g}, K {g.chosen[1]}: {g.scores[g.chosen]:.1f}% "
                     f"({len(g.scores)} points)" + (f"; not tried beyond: {', '.join(edges)}" if edges else ""))
    return "\n".join(lines)


def plan(cfg, data=None) -> str:
    """Each variant's selection so far, the cost of the campaign and its pending units (stage,
    run key, name), as text."""
    data = mnist1d._data(cfg) if data is None else data
    state = grids(cfg)
    with mnist1d.threads(cfg["torch_threads"]):
        seconds = _plan_seconds(cfg, data, state)
    return "\n".join([describe_selection(cfg, state), seconds.source,
                      describe_cost(campaign_cost(cfg, seconds.calibrated, state)),
                      campaign.describe([r.job for r in jobs(cfg, state)], mnist1d.job_seconds(seconds.calibrated),
                                        cfg["results_dir"] or "the cache",
                                        (mnist1d.LIVE, mnist1d.job_seconds(seconds.live))),
                      *_committed_needs(cfg)])


def _committed_file(cfg) -> Path | None:
    """The results file beside the committed runs (``<results_dir>/../mnist1d_select.json``)."""
    return Path(cfg["results_dir"]).parent / f"{NAME}.json" if cfg["results_dir"] else None


def _committed_needs(cfg) -> list[str]:
    """:func:`seed_needs` of the results file beside the runs, when there is one."""
    path = _committed_file(cfg)
    return seed_needs(cfg, load_results(path)) if path is not None and path.exists() else []


CELL = re.compile(r"(\d+)-shot: ([+-]?[\d.]+) \[([+-]?[\d.]+), ([+-]?[\d.]+)\]")


def seeds_to_decide(mean: float, half: float, n: int, bound: float, limit: int = 10_000) -> int | None:
    """The smallest seed count whose 95% t interval, at the spread behind ``half`` (a t interval's
    half-width over ``n`` seeds) and this ``mean``, stays on one side of ``bound``; None if the
    mean sits on the bound or more than ``limit`` are needed."""
    sd, gap = half * np.sqrt(n) / stats.t.ppf(0.975, n - 1), abs(mean - bound)
    return next((m for m in range(n, limit) if stats.t.ppf(0.975, m - 1) * sd / np.sqrt(m) < gap), None) \
        if gap > 0 else None


def seed_needs(cfg, results: dict) -> list[str]:
    """The select verdicts that hinge on seeds, read from committed ``results``: per open cell
    (a 95% t interval over the seeds that crosses a decision bound) the seeds that would decide it
    if the mean stayed where it is, at the measured spread and at its 95% upper confidence limit
    (the spread of n seeds has only n - 1 degrees of freedom), and the extra runs and
    process-hours (two runs per extra seed: FO-B and the method it is compared with, each at the
    mean training time of the committed runs of that shot count)."""
    n = len(results["config"]["seeds"])
    hours = {}
    for r in results["records"]:
        if r.get("kind") == "final":
            hours.setdefault(r["shots"], []).append(r["seconds_per_step"] * r["meta_steps"] / 3600)
    ucl = np.sqrt((n - 1) / stats.chi2.ppf(0.05, n - 1))
    lines = [f"Select verdicts that hinge on seeds (t intervals over {n} seeds: each spread has {n - 1} degrees of "
             f"freedom, so the need is also given at the sd's 95% upper confidence limit, {ucl:.1f}x the sd):"]
    for c in results["claims"]:
        if c["verdict"] != "inconclusive" or c["id"] == "selection_carries_over":
            continue
        bounds = (-TOLERANCE, TOLERANCE) if "_tracks_maml_" in c["id"] else (-TOLERANCE,)
        for shots, mean, low, high in ((int(a), *map(float, b)) for a, *b in CELL.findall(c["measured"])):
            crossed = [b for b in bounds if low <= b <= high]
            if not crossed:
                continue
            half = (high - low) / 2
            need = max((seeds_to_decide(mean, half, n, b) or 10_000) for b in crossed)
            need_ucl = max((seeds_to_decide(mean, half * ucl, n, b) or 10_000) for b in crossed)
            per_run = float(np.mean(hours.get(shots, [0.0])))  # the mean run of this shot count
            lines.append(f"  {c['id']} {shots}-shot: {mean:+.1f} [{low:+.1f}, {high:+.1f}] crosses "
                         f"{' and '.join(f'{b:+g}' for b in crossed)}: {need} seeds at the measured sd "
                         f"(+{2 * max(need - n, 0)} runs, {2 * max(need - n, 0) * per_run:.1f} process-hours), "
                         f"{need_ucl} at its upper limit (+{2 * max(need_ucl - n, 0)} runs, "
                         f"{2 * max(need_ucl - n, 0) * per_run:.1f} process-hours); open until then")
    if len(lines) == 1:
        lines.append("  none")
    return lines


def _plan_seconds(cfg, data, state) -> mnist1d.PlanSeconds:
    """The step and episode times :func:`campaign_cost` needs (:func:`mnist1d.plan_seconds`)."""
    return mnist1d.plan_seconds(cfg, data, cost_keys(cfg, state), cfg["cost_rounds"], cfg["results_dir"])


# ---------------------------------------------------------------------------------------------
# the experiment


def _next_seed(todo: list[campaign.Job]) -> list[campaign.Job]:
    """The pending jobs of the lowest seed, the grid's first (its choice decides which runs follow),
    then the costliest first: an interrupted campaign leaves whole seeds and a decided grid."""
    seed = min(j.args[1].seed for j in todo)
    return sorted((j for j in todo if j.args[1].seed == seed),
                  key=lambda j: (not j.stage.startswith("grid"), -j.args[0]["meta_steps"] * j.args[0]["inner_steps"]))


def train_pending(cfg) -> None:
    """Train every unit not committed yet on ``cfg``'s executor, one seed at a time, re-planned
    after each (a finished grid adds its variant's runs)."""
    mnist1d.train_all(lambda: [r.job for r in jobs(cfg)], cfg, "select runs", batch=_next_seed)


def run(cfg: dict, echo=print) -> dict:
    """Train the units not committed yet (:func:`train_pending`; the campaign's cost is printed
    first), then measure the cost of each setting and assemble the results. With
    ``committed_only`` (``fobtheory select --committed``) nothing is trained or timed: every
    unit must be committed, and the cost rows are those of the results file beside the runs
    (:func:`committed_cost`), so only the statistics are recomputed. It says how the results
    were assembled, not what they are, and is not kept in the results' configuration."""
    _check(cfg)
    only = cfg.pop("committed_only", False)
    if only:
        todo = pending(cfg)
        if todo:
            raise ValueError(f"--committed: {len(todo)} units are not committed yet (`fobtheory select --plan` lists "
                             "them): train them first")
        state = grids(cfg)
        tables, cost_rows = _tables(cfg, state), committed_cost(cfg)
    else:
        data = mnist1d._data(cfg)
        with mnist1d.threads(cfg["torch_threads"]):
            if pending(cfg):
                state = grids(cfg)
                seconds = _plan_seconds(cfg, data, state)
                echo(f"{seconds.source}\n{describe_cost(campaign_cost(cfg, seconds.calibrated, state))}")
            train_pending(cfg)
            state = grids(cfg)
            tables = _tables(cfg, state)
            cost_rows = cost(cfg, data, state)
    summary = summarize(cfg, state, tables, cost_rows)
    records = _grid_records(cfg, state) + _final_records(cfg, tables) + cost_rows
    results = make_results(NAME, cfg, records, summary, claims(cfg, state, tables), device=cfg["device"])
    head, *cells = seed_needs(cfg, results)
    results["summary"]["highlights"].append(f"{head} " + "; ".join(c.strip() for c in cells))
    return results


def committed_cost(cfg) -> list[dict]:
    """The ``cost`` rows of the results file beside the runs (:func:`_committed_file`)."""
    path = _committed_file(cfg)
    if path is None or not path.exists():
        raise ValueError(f"--committed reuses the cost rows of a results file, and there is none at {path}")
    rows = [r for r in load_results(path)["records"] if r.get("kind") == "cost"]
    if not rows:
        raise ValueError(f"--committed: {path} holds no cost rows to reuse")
    return rows


def _tables(cfg, state) -> dict[str, list[dict]]:
    """``{table: [result of every run]}``, each result with its ``alpha``, ``inner_steps``."""
    out = {t: [] for t in TABLES}
    for v, g in state.items():
        for table in TABLES:
            alpha, k = setting(cfg, table, g.chosen)
            for shots in cfg["shots"]:
                for seed in cfg["seeds"]:
                    result = committed(train_config(cfg, alpha, k), v.unit(shots, seed))
                    out[table].append(dict(result, alpha=alpha, inner_steps=k))
    return out


def exact_twins(state) -> dict[Variant, Grid]:
    """``state`` with HVP-MAML beside each MAML variant, at MAML's grid (the same meta-gradient)."""
    return {**state, **{Variant(v.activation, "maml_hvp"): g for v, g in state.items() if v.method == "maml"}}


def cost(cfg, data, state) -> list[dict]:
    """Rows ``kind="cost"``: seconds per meta-step (median of ``timing_rounds`` calls, every
    variant, table setting and shot count interleaved round by round) and the meter's peak
    bytes of one meta-gradient (meta-batch ``meta_batch``), at initial weights; HVP-MAML at
    MAML's settings (:func:`exact_twins`)."""
    state = exact_twins(state)
    entries = sorted({(v, setting(cfg, t, g.chosen), s) for v, g in state.items() for t in TABLES
                      for s in cfg["shots"]})
    batches = {s: mnist1d.stack(mnist1d._samplers(cfg, data, s)[0](cfg["seeds"][0]).batch(cfg["meta_batch"]))
               for s in cfg["shots"]}
    models = {a: mnist1d._model(cfg, a, cfg["seeds"][0]) for a in cfg["activations"]}

    def call(v, point, shots):
        return dict(model=models[v.activation], supports=batches[shots][0], queries=batches[shots][1],
                    method=v.method, alpha=point[0], inner_steps=point[1], delta=cfg["delta"],
                    **({"freeze_pattern": True} if v.frozen else PLAIN_DIFFERENCES))

    times = {e: [] for e in entries}
    for _ in range(cfg["timing_rounds"] + 1):  # the first round warms up
        for e in entries:
            times[e].append(wall_time(lambda: meta_gradient_batch(**call(*e)), cfg["device"]))  # noqa: B023
    rows = []
    for (v, point, shots) in entries:
        seconds = float(np.median(times[v, point, shots][1:]))
        rows.append(dict(kind="cost", method=v.method, activation=v.activation, freeze_pattern=v.frozen,
                         alpha=point[0], inner_steps=point[1], shots=shots, meta_batch=cfg["meta_batch"],
                         tables=[t for t in TABLES if setting(cfg, t, state[v].chosen) == point],
                         seconds_per_step=seconds, peak_bytes=peak_bytes(device=cfg["device"], **call(v, point, shots)),
                         device=cfg["device"]))
    return rows


def _grid_records(cfg, state) -> list[dict]:
    """Rows ``kind="grid"``: validation accuracy of every grid point (no test numbers)."""
    rows = []
    for v, g in state.items():
        for point, r in g.rounds.items():
            tcfg = train_config(cfg, *point, grid=True)
            result = committed(tcfg, v.unit(cfg["grid_shots"], cfg["grid_seed"]))
            val = np.asarray(result[validation_key(tcfg)])
            rows.append(dict(kind="grid", method=v.method, activation=v.activation, freeze_pattern=v.frozen,
                             alpha=point[0], inner_steps=point[1], round=r, chosen=point == g.chosen,
                             split="validation", ways=cfg["ways"], shots=cfg["grid_shots"], seed=cfg["grid_seed"],
                             meta_steps=tcfg["meta_steps"], accuracy=float(val.mean()),
                             ci95=float(1.96 * val.std(ddof=1) / np.sqrt(len(val))), episodes=len(val),
                             seconds_per_step=result["seconds_per_step"],
                             device=result.get("environment", {}).get("device")))
    return rows


def _final_records(cfg, tables) -> list[dict]:
    """mnist1d's ``final`` (test) and ``curve`` (validation) rows of each table's runs, with
    the table and the setting."""
    rows = []
    for table, results in tables.items():
        for r in results:
            extra = dict(table=table, alpha=r["alpha"], inner_steps=r["inner_steps"], meta_steps=cfg["meta_steps"])
            rows += [dict(row, **extra) for row in mnist1d.records([r], cfg) if row["kind"] in ("final", "curve")]
    return rows


# ---------------------------------------------------------------------------------------------
# summary and claims


def _key(v: Variant, shots: int) -> str:
    return f"{v.activation}/{shots}shot/{v.method}{'+frozen' if v.frozen else ''}"


def stopping(cfg) -> str:
    """The protocol's word for where accuracies are read: ``early-stopped`` or ``final-step``."""
    return "early-stopped" if cfg.get("early_stopping") else "final-step"


def test_key(cfg) -> str:
    """The test accuracy the tables and claims report: at the best validation checkpoint with
    early stopping, else at the last step (the final step's is kept beside it as ``accuracy_final``)."""
    return "accuracy_early" if cfg.get("early_stopping") else "accuracy"


def _accuracies(results, v: Variant, shots, key: str) -> list[np.ndarray]:
    return mnist1d._accuracies(results, v.activation, shots, v.method, frozen=v.frozen, key=key)


def summarize(cfg, state, tables, cost_rows) -> dict:
    summary = {"chosen": {}, "accuracy": {t: {} for t in TABLES}, "accuracy_final": {t: {} for t in TABLES},
               "difference_to_maml": {t: {} for t in TABLES}, "gain_from_tuning": {}, "cost": {}, "equal_compute": {}}
    key = test_key(cfg)
    for v, g in state.items():
        summary["chosen"][v.key] = dict(alpha=g.chosen[0], inner_steps=g.chosen[1],
                                        validation_accuracy=g.scores[g.chosen], points=len(g.rounds),
                                        rounds=max(g.rounds.values()),
                                        untried_beyond=open_edges(g.scores, g.chosen, cfg["alpha_ladder"],
                                                                  cfg["inner_steps_ladder"]))
        for s in cfg["shots"]:
            for t in TABLES:
                ours = _accuracies(tables[t], v, s, key)
                summary["accuracy"][t][_key(v, s)] = mnist1d.seed_interval(ours)
                summary["accuracy_final"][t][_key(v, s)] = mnist1d.seed_interval(_accuracies(tables[t], v, s,
                                                                                               "accuracy"))
                maml = _accuracies(tables[t], Variant(v.activation, "maml"), s, key)
                if v.method != "maml" and maml:
                    summary["difference_to_maml"][t][_key(v, s)] = mnist1d.seed_paired(ours, maml)
            summary["gain_from_tuning"][_key(v, s)] = mnist1d.seed_paired(_accuracies(tables["best"], v, s, key),
                                                                     _accuracies(tables["shared"], v, s, key))
    for r in cost_rows:
        v = Variant(r["activation"], r["method"], r["freeze_pattern"])
        for t in r["tables"]:
            summary["cost"].setdefault(t, {})[_key(v, r["shots"])] = dict(seconds_per_step=r["seconds_per_step"],
                                                                          peak_bytes=r["peak_bytes"])
    summary["equal_compute"] = equal_compute(cfg, state, tables["best"], summary["cost"]["best"])
    summary["campaign"] = _campaign(cfg, state, tables)
    summary["carry_over"] = carry_over(cfg, state, tables)
    summary["highlights"] = _highlights(cfg, summary)
    return summary


def equal_compute(cfg, state, results, cost_best) -> dict:
    """At the training time at which the fastest variant of the ``best`` table finishes
    (``meta_steps`` x its seconds per step), the validation accuracy (curve, mean over seeds)
    each variant had reached by then: ``{activation/shots: {budget_seconds, accuracy: {variant: %}, winner}}``."""
    out = {}
    for act in cfg["activations"]:
        for s in cfg["shots"]:
            vs = [v for v in state if v.activation == act]
            per_step = {v: cost_best[_key(v, s)]["seconds_per_step"] for v in vs}
            budget = min(per_step.values()) * cfg["meta_steps"]
            reached = {}
            for v in vs:
                runs = [r for r in results if mnist1d._variant(r) == (act, s, v.method, False, v.frozen)]
                steps = [step for step, _ in runs[0]["curve"] if step * per_step[v] <= budget]
                if steps:
                    reached[v.key] = float(np.mean([dict(map(tuple, r["curve"]))[steps[-1]] for r in runs]))
            out[f"{act}/{s}shot"] = dict(budget_seconds=budget, accuracy=reached,
                                         winner=max(reached, key=reached.get) if reached else None)
    return out


def _campaign(cfg, state, tables) -> dict:
    """Process-hours spent in meta-steps by every run of the campaign (sum of their
    ``train_seconds``; evaluation excluded), and the devices that produced them."""
    results = [committed(train_config(cfg, *p, grid=True), v.unit(cfg["grid_shots"], cfg["grid_seed"]))
               for v, g in state.items() for p in g.rounds]
    seen, unique = set(), []
    for r in results + tables["shared"] + tables["best"]:
        if (r["run_key"], r["name"]) not in seen:
            seen.add((r["run_key"], r["name"]))
            unique.append(r)
    return dict(units=len(unique), meta_step_process_hours=sum(r["train_seconds"] for r in unique) / 3600,
                devices=sorted({r.get("environment", {}).get("device", "?") for r in unique}))


def _highlights(cfg, summary) -> list[str]:
    lines = [f"Chosen (alpha, K) on validation ({cfg['grid_shots']}-shot, seed {cfg['grid_seed']}, "
             f"{cfg['grid_meta_steps']} meta-steps, {cfg['eval_episodes']} validation episodes; 1-shot reuses it): "
             + ", ".join(f"{k} ({c['alpha']:g}, {c['inner_steps']}) {c['validation_accuracy']:.1f}"
                         + (f" [edge: {', '.join(c['untried_beyond'])}]" if c["untried_beyond"] else "")
                         for k, c in summary["chosen"].items())]
    for act in cfg["activations"]:
        for s in cfg["shots"]:
            for t, label in (("best", "each at its best"), ("shared", f"shared alpha {cfg['alpha']:g}, "
                                                                       f"K {cfg['inner_steps']}")):
                cells = [(k.split("/", 2)[2], a, summary["accuracy_final"][t][k])
                         for k, a in summary["accuracy"][t].items() if k.startswith(f"{act}/{s}shot/")]
                final = cfg.get("early_stopping")
                lines.append(f"{act.upper()} 5-way {s}-shot, {label}, {stopping(cfg)} test accuracy % [95%]"
                             f"{' (final step)' if final else ''}, {len(cfg['seeds'])} seeds x {cfg['eval_episodes']} "
                             "episodes: " + ", ".join(f"{m} {a['mean']:.1f} [{a['ci_low']:.1f}, {a['ci_high']:.1f}]"
                                                      + (f" ({f['mean']:.1f})" if final else "") for m, a, f in cells))
    lines.append("Carry-over of the choice, full-run validation accuracy chosen - shared (grid's difference): "
                 + ", ".join(f"{k} {mnist1d._points(c['full_difference'])} ({c['grid_difference']:+.1f})"
                             for k, c in summary["carry_over"].items()))
    lines.append("Gain from tuning (best - shared, paired): " + ", ".join(
        f"{k} {mnist1d._points(d)}" for k, d in summary["gain_from_tuning"].items()))
    s = max(cfg["shots"])
    lines.append(f"Cost at the chosen setting ({s}-shot, meta-batch {cfg['meta_batch']}, {cfg['device']}), "
                 "seconds per meta-step / peak MB: " + ", ".join(
                     f"{k.replace(f'/{s}shot', '')} {c['seconds_per_step']:.3f} / {c['peak_bytes'] / 1e6:.2f}"
                     for k, c in summary["cost"]["best"].items() if f"/{s}shot/" in k))
    lines.append("At equal training time (the fastest variant's full run), validation accuracy reached: " + "; ".join(
        f"{k} ({e['budget_seconds']:.0f} s): winner {e['winner']}" for k, e in summary["equal_compute"].items()))
    c = summary["campaign"]
    lines.append(f"Campaign: {c['units']} runs, {c['meta_step_process_hours']:.2f} process-hours of meta-steps on "
                 f"{', '.join(c['devices'])}")
    return lines


def validation_key(cfg) -> str:
    """The validation accuracy the protocol reports: at the best checkpoint with early
    stopping (the number of meta-steps is part of the choice), else at the last step."""
    return "val_accuracy_early" if cfg.get("early_stopping") else "val_accuracy"


def carry_over(cfg, state, tables, paired=mnist1d.seed_paired) -> dict:
    """Whether the grid's choice carries over to the full protocol, per variant whose choice is
    not the shared setting and per shot count: the full runs' validation accuracy
    (:func:`validation_key`) at the chosen setting minus at the shared one, paired by seed and
    validation episode, beside the same difference on the grid (``grid_shots``, ``grid_seed``,
    ``grid_meta_steps``), where the chosen setting beat the shared one."""
    shared, key, out = (cfg["alpha"], cfg["inner_steps"]), validation_key(cfg), {}
    for v, g in state.items():
        if g.chosen is None or g.chosen == shared or shared not in g.scores:
            continue
        for s in cfg["shots"]:
            runs = {t: sorted((r for r in tables[t] if mnist1d._variant(r) == (v.activation, s, v.method, False,
                                                                                 v.frozen)), key=lambda r: r["seed"])
                    for t in TABLES}
            full = paired(*([np.asarray(r[key]) for r in runs[t]] for t in ("best", "shared")))
            out[_key(v, s)] = dict(chosen=list(g.chosen), grid_difference=g.scores[g.chosen] - g.scores[shared],
                                   full_difference=full)
    return out


def _carry_over_claim(cfg, carried: dict) -> dict:
    worst = min(carried, key=lambda k: carried[k]["full_difference"]["mean"])
    what = stopping(cfg)
    return claim(
        "selection_carries_over",
        f"The setting chosen on the validation grid ({cfg['grid_meta_steps']} meta-steps, {cfg['grid_shots']}-shot, "
        f"one seed) stays at least as good as the shared setting in the full runs ({cfg['meta_steps']} meta-steps, "
        f"{len(cfg['seeds'])} seeds, every shot count; {what} validation accuracy)",
        f"full-run validation accuracy, chosen minus shared, not below -{TOLERANCE:g} point for every variant whose "
        "choice differs (95% interval)",
        f"worst {worst} {mnist1d._points(carried[worst]['full_difference'])} (grid: "
        f"{carried[worst]['grid_difference']:+.1f}); below -{TOLERANCE:g} for "
        f"{sum(c['full_difference']['mean'] < -TOLERANCE for c in carried.values())} of {len(carried)}",
        verdict(all(c["full_difference"]["ci_low"] >= -TOLERANCE for c in carried.values()),
                any(c["full_difference"]["ci_high"] < -TOLERANCE for c in carried.values())))


def claims(cfg, state, tables) -> list[dict]:
    """:func:`_claims` on seed-level t intervals (:func:`mnist1d.seed_paired`); a claim whose
    verdict the earlier intervals (a bootstrap over seeds, then episodes: at 3 seeds it spans
    little more than the seed means' range) would have turned says so, with their numbers."""
    return mnist1d.note_flips(_claims(cfg, state, tables), _claims(cfg, state, tables, paired=mnist1d._paired),
                              len(cfg["seeds"]))


def _claims(cfg, state, tables, paired=mnist1d.seed_paired) -> list[dict]:
    """For each table: FO-B symmetric (and frozen, where planned) against MAML, and against
    the better (by mean test accuracy in that table) of FO-MAML and Reptile, at every shot count;
    and whether the grid's choices carry over to the full runs (:func:`carry_over`); intervals
    by ``paired``."""
    carried, key = carry_over(cfg, state, tables, paired), test_key(cfg)
    claims = [_carry_over_claim(cfg, carried)] if carried else []
    for t in TABLES:
        where = ("at the shared setting (alpha {alpha:g}, K {inner_steps})".format(**cfg) if t == "shared"
                 else "each method at its own (alpha, K) chosen on validation")
        results = tables[t]

        def diff(a, b, s):
            return paired(_accuracies(results, a, s, key), _accuracies(results, b, s, key))  # noqa: B023

        def mean(v, s):
            return float(np.mean([a.mean() for a in _accuracies(results, v, s, key)]))  # noqa: B023

        for fob in [v for v in state if v.method == "fob_symmetric"]:
            name, act = ("fob_frozen" if fob.frozen else "fob"), fob.activation
            label = f"FO-B-MAML symmetric{' with frozen patterns' if fob.frozen else ''} ({act.upper()}, {where})"
            maml = Variant(act, "maml")
            rivals = [v for v in (Variant(act, "fo_maml"), Variant(act, "reptile")) if v in state]
            if maml in state:
                claims.append(mnist1d._tracking_claim(
                    f"{t}_{name}_tracks_maml_{act}",
                    f"{label} tracks second-order MAML on MNIST-1D ({stopping(cfg)} test accuracy)",
                    [(s, diff(fob, maml, s)) for s in cfg["shots"]]))
            if rivals:
                cells = []
                for s in cfg["shots"]:
                    best = max(rivals, key=lambda r: mean(r, s))  # noqa: B023
                    alpha, k = setting(cfg, t, state[best].chosen)
                    cells.append((s, diff(fob, best, s), f"{best.method} ({alpha:g}, K {k})"))
                claims.append(claim(
                    f"{t}_{name}_above_first_order_{act}",
                    f"{label} is at or above FO-MAML and Reptile ({stopping(cfg)} test accuracy)",
                    f"difference to the better of FO-MAML/Reptile not below -{TOLERANCE:g} point at every shot count "
                    "(95% interval)", "; ".join(f"{s}-shot: {mnist1d._points(d)} vs {who}" for s, d, who in cells),
                    verdict(all(d["ci_low"] >= -TOLERANCE for _, d, _ in cells),
                            any(d["ci_high"] < -TOLERANCE for _, d, _ in cells))))
    return claims


# ---------------------------------------------------------------------------------------------
# figures


def plot(results: dict, out_dir) -> list[Path]:
    out_dir = Path(out_dir)
    return [_plot_cost(results, out_dir / f"{NAME}.png"), _plot_grid(results, out_dir / f"{NAME}_grid.png")]


def _style(method, frozen):
    return dict(color=plotting.METHOD_COLORS.get(method), marker="s" if frozen else "o")


def _plot_cost(results, path):
    cfg, summary, recs = results["config"], results["summary"], results["records"]
    rows = [(a, s) for a in cfg["activations"] for s in cfg["shots"]]
    with plotting.style():
        fig, axes = plotting.plt.subplots(len(rows), 3, figsize=(15, 3.8 * len(rows)), squeeze=False)
        for (act, s), ax_row in zip(rows, axes):
            for table, fill in (("shared", "none"), ("best", None)):
                twin = f"{act}/{s}shot/maml"  # HVP-MAML: MAML's meta-gradient, so MAML's accuracy
                accuracy = dict(summary["accuracy"][table], **({f"{twin}_hvp": summary["accuracy"][table][twin]}
                                                              if f"{twin}_hvp" in summary["cost"][table] else {}))
                for key, a in accuracy.items():
                    if not key.startswith(f"{act}/{s}shot/"):
                        continue
                    method, frozen = key.split("/")[2].split("+")[0], key.endswith("+frozen")
                    c = summary["cost"][table][key]
                    for ax, x in zip(ax_row, (c["seconds_per_step"], c["peak_bytes"] / 1e6)):
                        ax.errorbar(x, a["mean"], yerr=[[a["mean"] - a["ci_low"]], [a["ci_high"] - a["mean"]]],
                                    capsize=3, markerfacecolor=fill, **_style(method, frozen),
                                    label=key.split("/")[2] if table == "best" and ax is ax_row[0] else None)
            for ax, xlabel in zip(ax_row, ("seconds per meta-step (interleaved)", "peak memory, MB (meter)")):
                ax.set(title=f"{act.upper()}, 5-way {s}-shot: filled = each at its best, hollow = shared",
                       xlabel=xlabel, ylabel=f"test accuracy, % ({len(cfg['seeds'])} seeds, 95%)")
            ax = ax_row[2]
            cost_best = summary["cost"]["best"]
            for key in summary["accuracy"]["best"]:
                if not key.startswith(f"{act}/{s}shot/"):
                    continue
                method, frozen = key.split("/")[2].split("+")[0], key.endswith("+frozen")
                curve = [r for r in recs if r["kind"] == "curve" and r.get("table") == "best" and r["activation"] == act
                         and r["shots"] == s and r["method"] == method and r["freeze_pattern"] == frozen]
                steps = sorted({r["step"] for r in curve})
                ax.plot([t * cost_best[key]["seconds_per_step"] for t in steps],
                        [np.mean([r["accuracy"] for r in curve if r["step"] == t]) for t in steps],
                        linestyle="-." if frozen else "-", label=key.split("/")[2], **_style(method, frozen))
            budget = summary["equal_compute"][f"{act}/{s}shot"]["budget_seconds"]
            ax.axvline(budget, color="grey", linewidth=0.8, linestyle="--", label="fastest run's end")
            ax.set(title=f"{act.upper()} {s}-shot at its best: accuracy against training time", xlabel="seconds of "
                   "meta-steps (step x interleaved seconds per step)",
                   ylabel=f"validation accuracy, % ({cfg['curve_episodes']} episodes)")
            for ax in (ax_row[0], ax_row[2]):  # the middle panel's points are keyed like the first's
                ax.legend(loc="best", fontsize=6)
        fig.tight_layout()
        plotting.mark_quick(fig, results)
        save_figure(fig, path)
    plotting.close(fig)
    return path


def _plot_grid(results, path):
    cfg = results["config"]
    grid_rows = [r for r in results["records"] if r["kind"] == "grid"]
    names = list(results["summary"]["chosen"])
    alphas, ks = cfg["alpha_ladder"], cfg["inner_steps_ladder"]
    with plotting.style():
        fig, axes = plotting.panels(len(names), width=3.2, height=2.6, cols=min(len(names), 5))
        for ax, name in zip(axes, names):
            act, rest = name.split("/")
            method, frozen = rest.split("+")[0], rest.endswith("+frozen")
            cells = np.full((len(ks), len(alphas)), np.nan)
            for r in grid_rows:
                if (r["activation"], r["method"], r["freeze_pattern"]) == (act, method, frozen):
                    i, j = ks.index(r["inner_steps"]), alphas.index(r["alpha"])
                    cells[i, j] = r["accuracy"]
                    ax.text(j, i, f"{r['accuracy']:.1f}", ha="center", va="center", fontsize=8,
                            fontweight="bold" if r["chosen"] else "normal")
                    if r["chosen"]:
                        ax.add_patch(plotting.plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, linewidth=2))
            ax.imshow(cells, cmap="viridis", vmin=20, vmax=100, origin="lower", aspect="auto", alpha=0.6)
            ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
            ax.set_yticks(range(len(ks)), [str(k) for k in ks])
            ax.set(title=name, xlabel="alpha", ylabel="K")
            ax.grid(False)
        fig.suptitle(f"Validation accuracy % ({cfg['grid_shots']}-shot, {cfg['grid_meta_steps']} meta-steps, "
                     f"{cfg['eval_episodes']} episodes); boxed: chosen", fontsize=10)
        fig.tight_layout()
        plotting.mark_quick(fig, results)
        save_figure(fig, path)
    plotting.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# command line: the plan and parallel workers


def build_parser() -> argparse.ArgumentParser:
    p = mnist1d.campaign_parser("python -m fobtheory.experiments.mnist1d_select", __doc__)
    p.add_argument("--plan", action="store_true", help="print the campaign's cost and its pending units, then stop")
    return p


def make_config(args) -> dict:
    from fobtheory.cli import resolve_device

    cfg = config(quick=args.quick, seed=args.seed, device=resolve_device(args.device))
    cfg.update(mnist1d.overrides(args, ("methods", "activations", "results_dir")))
    _check(cfg)
    return cfg


def main(argv=None) -> int:
    """``--plan``: the cost and the pending units; otherwise train the pending units on
    ``--executor`` (:func:`train_pending`) until every unit is committed."""
    args = build_parser().parse_args(argv)

    def body():
        cfg = make_config(args)
        print(plan(cfg))
        if args.plan:
            return None
        train_pending(cfg)
        return "all units committed; `fobtheory select` with the same options assembles mnist1d_select.json"

    return campaign.command("mnist1d_select", body)


if __name__ == "__main__":
    sys.exit(main())
