"""MNIST-1D paired tracking: FO-B-MAML against MAML and against MAML's own noise floor.

One results file (``mnist1d_paired.json``) and one figure (``mnist1d_paired.png``).

**Unit** (a :mod:`fobtheory.campaign` job): activation (ReLU, where FO-B freezes activation
patterns, and GELU), shots, setting (``shared``: the config's alpha, K; ``tuned``: MAML's
(alpha, K) chosen in ``selection``, ``figures/mnist1d_select.json``) and seed. Three *arms*
train in lockstep from one initialisation on one episode stream, each with its own Adam:

- ``maml``: the exact meta-gradient g;
- ``fob_symmetric``: FO-B symmetric (``freeze_pattern=True`` on ``frozen_activations``);
- ``maml_perturbed``: the noise floor, MAML with g + eps |g| u, where eps is FO-B's measured
  relative error and u a seeded random unit vector on the coordinates where g != 0
  (``perturbation="absolute"``, the default: FO-B's roundoff is about eps_mach |grad| / delta
  whatever the coordinate, and exactly 0 where g is, e.g. on dead ReLU units) or
  u = (g * xi) / |g * xi|, xi standard normal per coordinate (``"relative"``: each coordinate
  moved in proportion to itself, as float rounding does). Either way |g~ - g| = eps |g|.

eps is measured on the fly: at step 0 and at every checkpoint, on that step's meta-batch,
eps = |g_FOB(theta_FOB) - g_MAML(theta_FOB)| / |g_MAML(theta_FOB)| (meta-batch means, the
vectors Adam sees), and held until the next checkpoint. Which perturbation model matches
FO-B's error is measured there too: the share of |e|^2 (e = g_FOB - g_MAML) on the half of
g's nonzero coordinates where |g| is smallest, against the share each model predicts
(relative: that half's share of |g|^2; absolute: 1/2), compared on a log scale (the shares
span decades); and the share of |e|^2 where g is exactly 0.

At every checkpoint (``eval_every``): each arm's relative parameter distance to MAML,
|theta_arm - theta_MAML| / |theta_MAML|, and its validation accuracy on ``curve_episodes``
validation episodes (never test). At the end: test accuracy on ``eval_episodes`` episodes of
the final weights and of each arm's best validation checkpoint (early stopping).

**Seeds, decided before running** (:func:`seeds_needed`, printed by ``--plan``): the
smallest n with power ``power`` for a paired-t equivalence test (TOST at ``equivalence_alpha``
per side, i.e. the 1 - 2 alpha paired interval inside +-``margin``) at the paired spread s of
FO-B minus MAML test accuracies committed in ``selection`` for the same cell,
n = ((t_{1-a, n-1} + t_{1-b/2, n-1}) s / margin)^2 (true difference 0), at least
``min_seeds``; where more than ``max_seeds`` are needed, ``min_seeds`` are run (the +-margin
claim cannot be decided within the budget there, the plan and the claim say so, and the
noise-floor comparison is the test).

**Claims**, paired over seeds, per activation and setting: FO-B within the noise floor
(the geometric mean over seeds of its final distance to MAML over the perturbed arm's, 95%
interval, at most ``floor_factor``; its test accuracy departure |FO-B - MAML| minus the
perturbed arm's |perturbed - MAML|, 95% interval, at most ``margin``), and FO-B - MAML test
accuracy (final and early-stopped) inside +-``margin`` (the equivalence test above). With
fewer seeds than ``min_seeds`` (the quick configuration) every claim is inconclusive.

**Interim results** (``committed_only``, ``fobtheory paired --committed``): nothing is trained;
the committed units are summarized, the cells with planned units still to train are listed in
``summary["pending"]``, and a claim over a cell still pending stays inconclusive (no verdict
on a seed count that was not the plan's).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from scipy import stats

from fobtheory import campaign, plotting
from fobtheory.data import cache_dir, code_version
from fobtheory.experiments import mnist1d
from fobtheory.intervals import t_interval
from fobtheory.nn import PLAIN_DIFFERENCES, flatten, meta_gradient_batch
from fobtheory.results import claim, environment, make_results, save_figure, verdict

NAME = "mnist1d_paired"
VERSION = 1  # bump when a change alters a unit's numbers
ARMS = ("maml", "fob_symmetric", "maml_perturbed")
SETTINGS = ("shared", "tuned")
PERTURBATIONS = ("relative", "absolute")
# config entries that shape a unit's numbers (with the cell's alpha, K and frozen flag)
RUN_KEYS = ("ways", "queries", "width", "depth", "delta", "meta_batch", "meta_steps", "lr", "eval_episodes",
            "eval_every", "curve_episodes", "eval_seed", "num_samples", "validation_fraction", "validation_seed",
            "test_classes", "dtype", "perturbation")


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    cfg = {k: v for k, v in mnist1d.config(quick=False, seed=seed, device=device).items()
           if k in RUN_KEYS or k in ("alpha", "inner_steps", "device", "torch_threads", "executor", "workers",
                                     "cluster_options")}
    cfg.update(activations=["relu", "gelu"], shots=[1, 5], settings=list(SETTINGS), frozen_activations=["relu"],
               seeds=None, seed=seed, min_seeds=5, max_seeds=16, margin=1.0, equivalence_alpha=0.025, power=0.8,
               floor_factor=2.0, perturbation="absolute", selection="figures/mnist1d_select.json",
               budget_hours=25.0, cost_rounds=2, results_dir="figures/mnist1d_paired-runs", committed_only=False,
               timing_runs=mnist1d.config()["results_dir"])
    if quick:
        cfg.update(activations=["gelu"], shots=[5], settings=["shared"], seeds=[seed, seed + 1], meta_steps=20,
                   eval_every=10, curve_episodes=20, eval_episodes=40, cost_rounds=1, results_dir=None,
                   executor="serial")
    return cfg


def _check(cfg):
    if cfg["perturbation"] not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {cfg['perturbation']!r}")
    bad = set(cfg["settings"]) - set(SETTINGS)
    if bad:
        raise ValueError(f"settings must be among {SETTINGS}, got {sorted(bad)}")
    if not 1 <= cfg["min_seeds"] <= cfg["max_seeds"]:
        raise ValueError(f"need 1 <= min_seeds <= max_seeds, got {cfg['min_seeds']}, {cfg['max_seeds']}")


# ---------------------------------------------------------------------------------------------
# cells, seeds, units


class Cell(NamedTuple):
    activation: str
    shots: int
    setting: str
    alpha: float
    inner_steps: int

    @property
    def key(self) -> str:
        return f"{self.activation}/{self.shots}shot/{self.setting}"

    @property
    def label(self) -> str:
        return f"{self.activation}-{self.shots}shot-a{self.alpha:g}-K{self.inner_steps}"


def _selection(cfg) -> dict:
    path = Path(cfg["selection"])
    if not path.exists():
        raise ValueError(f"selection file {path} not found: run `fobtheory select` first (the tuned setting and "
                         "the paired spread come from it), or use settings=['shared']")
    return json.loads(path.read_text())


def tuned_setting(selection: dict, activation: str) -> tuple[float, int]:
    """MAML's chosen (alpha, K) on ``activation`` in a selection results file."""
    chosen = selection["summary"]["chosen"].get(f"{activation}/maml")
    if chosen is None:
        raise ValueError(f"the selection file has no chosen setting for {activation}/maml")
    return float(chosen["alpha"]), int(chosen["inner_steps"])


def cells(cfg) -> list[Cell]:
    """Every (activation, shots, setting) of ``cfg`` with its (alpha, K)."""
    _check(cfg)
    selection = _selection(cfg) if "tuned" in cfg["settings"] else None
    out = []
    for act in cfg["activations"]:
        for s in cfg["shots"]:
            for setting in cfg["settings"]:
                point = (cfg["alpha"], cfg["inner_steps"]) if setting == "shared" else tuned_setting(selection, act)
                out.append(Cell(act, s, setting, *point))
    return out


def paired_spread(selection: dict, cell: Cell, frozen: bool) -> list[float]:
    """Per seed, FO-B symmetric minus MAML mean test accuracy (points) committed in a selection
    file at the cell's activation, shots, alpha and K (both runs there, same seed)."""
    rows = [r for r in selection["records"] if r.get("kind") == "final" and r["activation"] == cell.activation
            and r["shots"] == cell.shots and r["alpha"] == cell.alpha and r["inner_steps"] == cell.inner_steps]
    maml = {r["seed"]: r["accuracy"] for r in rows if r["method"] == "maml"}
    fob = {r["seed"]: r["accuracy"] for r in rows if r["method"] == "fob_symmetric" and r["freeze_pattern"] == frozen}
    return [fob[s] - maml[s] for s in sorted(maml.keys() & fob.keys())]


def seeds_needed(sd: float, margin: float, *, alpha: float = 0.025, power: float = 0.8, difference: float = 0.0,
                 limit: int = 100_000) -> int:
    """The smallest n >= 2 with n >= ((t_{1-alpha, n-1} + t_{q, n-1}) sd / (margin - |difference|))^2,
    q = 1 - (1 - power) / 2 at difference 0 (both one-sided tests must reject) and q = power
    otherwise: the paired-t TOST sample size (normal-approximation power, t quantiles)."""
    if sd < 0 or margin <= abs(difference):
        raise ValueError(f"need sd >= 0 and margin > |difference|, got sd={sd}, margin={margin}, "
                         f"difference={difference}")
    q = 1 - (1 - power) / 2 if difference == 0 else power
    for n in range(2, limit + 1):
        if n >= ((stats.t.ppf(1 - alpha, n - 1) + stats.t.ppf(q, n - 1)) * sd / (margin - abs(difference))) ** 2:
            return n
    raise ValueError(f"more than {limit} seeds needed (sd={sd}, margin={margin})")


def seed_plan(cfg) -> dict:
    """Per cell key: the committed paired differences, their spread, the seeds needed, and the
    seeds run (``cfg['seeds']`` when given; else the seeds needed, at least ``min_seeds``, or
    ``min_seeds`` where more than ``max_seeds`` are needed: there the +-margin test cannot be
    decided within the budget, and the noise-floor comparison is the test). A cell without
    committed pairs uses the pooled spread of the cells that have them. Two stages, each fixed
    before it runs: once a cell's first seeds are committed, their own spread may ask for more
    (:func:`_first_stage_spread`), up to ``max_seeds``."""
    cs = cells(cfg)
    selection = _selection(cfg) if Path(cfg["selection"]).exists() else {"records": []}
    diffs = {c.key: paired_spread(selection, c, c.activation in cfg["frozen_activations"]) for c in cs}
    spread = [d for d in diffs.values() if len(d) >= 2]
    pooled = float(np.sqrt(sum(np.var(d, ddof=1) * (len(d) - 1) for d in spread) / sum(len(d) - 1 for d in spread))
                   ) if spread else None
    out = {}
    for c in cs:
        d = diffs[c.key]
        sd = float(np.std(d, ddof=1)) if len(d) >= 2 else pooled
        needed = _needed(sd, cfg)
        base = cfg["seed"]
        n = max(needed, cfg["min_seeds"]) if needed is not None and needed <= cfg["max_seeds"] else cfg["min_seeds"]
        sd_here, needed_here = _first_stage_spread(cfg, c, n) if cfg["seeds"] is None else (None, None)
        if needed_here is not None and n < needed_here <= cfg["max_seeds"]:
            n = needed_here
        out[c.key] = dict(differences=d, sd=sd, pooled=len(d) < 2, needed=needed, sd_here=sd_here,
                          needed_here=needed_here,
                          seeds=list(cfg["seeds"]) if cfg["seeds"] is not None else list(range(base, base + n)))
    return out


def _needed(sd: float | None, cfg) -> int | None:
    """:func:`seeds_needed` at ``cfg``'s margin, level and power (None without a spread)."""
    return None if sd is None else seeds_needed(sd, cfg["margin"], alpha=cfg["equivalence_alpha"], power=cfg["power"])


def _needed_or_more(sd: float, cfg) -> str:
    """:func:`_needed` as text, ``more than 100000`` past :func:`seeds_needed`'s limit."""
    try:
        return str(_needed(sd, cfg))
    except ValueError:
        return "more than 100000"


def _own_spread(differences, cfg) -> tuple[float | None, int | None]:
    """The sd of per-seed FO-B - MAML differences and the seeds it needs ((None, None) under 2 seeds)."""
    sd = float(np.std(differences, ddof=1)) if len(differences) >= 2 else None
    return sd, _needed(sd, cfg)


def _first_stage_spread(cfg, cell: Cell, n: int) -> tuple[float | None, int | None]:
    """A cell's first stage, once its first ``n`` units are committed: the spread of their FO-B -
    MAML test accuracies and the seeds it needs (:func:`_own_spread`), for the second stage to run
    (no more than ``max_seeds``). (None, None) before that."""
    units = [campaign.read(result_path(cfg, cell, cfg["seed"] + i)) for i in range(n)]
    if any(u is None for u in units):
        return None, None
    return _own_spread([np.mean(u["accuracy"]["fob_symmetric"]) - np.mean(u["accuracy"]["maml"]) for u in units], cfg)


def run_key(cfg, cell: Cell) -> str:
    entries = {k: cfg[k] for k in RUN_KEYS}
    entries.update(alpha=cell.alpha, inner_steps=cell.inner_steps,
                   frozen=cell.activation in cfg["frozen_activations"])
    return campaign.run_key(VERSION, entries)


def result_path(cfg, cell: Cell, seed: int) -> Path:
    """``<results_dir>/<run key>/<activation>-<shots>shot-a<alpha>-K<K>-seed<seed>.json``; without
    ``results_dir``, in the cache under ``<run key>-code-<code version>`` (:func:`fobtheory.data.code_version`):
    reused only by the code that computed it."""
    if cfg["results_dir"]:
        return Path(cfg["results_dir"]) / run_key(cfg, cell) / f"{cell.label}-seed{seed}.json"
    folder = f"{run_key(cfg, cell)}-code-{code_version()}"
    return cache_dir() / "mnist1d_paired-runs" / folder / f"{cell.label}-seed{seed}.json"


def jobs(cfg, plan: dict | None = None) -> list[campaign.Job]:
    """One job per (cell, seed); a cell whose tuned setting is the shared one shares its units."""
    plan = plan or seed_plan(cfg)
    out = {}
    for c in cells(cfg):
        for seed in plan[c.key]["seeds"]:
            path = result_path(cfg, c, seed)
            out.setdefault(path, campaign.Job(path, train_unit, (cfg, c, seed), c.key, cfg["meta_steps"]))
    return list(out.values())


# ---------------------------------------------------------------------------------------------
# one unit: three arms in lockstep


def perturb(g: torch.Tensor, eps: float, kind: str, generator: torch.Generator) -> torch.Tensor:
    """g + eps |g| u with |u| = 1: u = xi 1[g != 0] / |xi 1[g != 0]| (``absolute``: a random
    direction on the coordinates where g is not exactly 0, e.g. not on dead ReLU units, where
    FO-B's error is exactly 0 too) or g * xi / |g * xi| (``relative``); xi standard normal per
    coordinate, drawn from ``generator`` (CPU)."""
    xi = torch.randn(g.shape, generator=generator, dtype=torch.float64).to(g.device)
    direction = xi * (g != 0) if kind == "absolute" else g.to(torch.float64) * xi
    norm = direction.norm()
    if norm == 0:
        return g
    return (g + (eps * g.to(torch.float64).norm() / norm * direction).to(g.dtype))


def error_profile(g_fob: torch.Tensor, g: torch.Tensor) -> dict:
    """FO-B's relative error eps = |e| / |g|, e = g_fob - g; the share of |e|^2 on the half of
    the nonzero coordinates of g where |g| is smallest, with the share each perturbation model
    predicts there (relative: that half's share of |g|^2; absolute: one half); and the share of
    |e|^2 on the coordinates where g is exactly 0 (``zero_share``; ``zero_fraction`` of them)."""
    e, g = (g_fob - g).to(torch.float64), g.to(torch.float64)
    nonzero = torch.nonzero(g).flatten()
    low = nonzero[torch.argsort(g[nonzero].abs())[: nonzero.numel() // 2]]
    energy = float(e.pow(2).sum())
    share = lambda idx: float(e[idx].pow(2).sum()) / energy if energy else 0.0  # noqa: E731
    return dict(eps=float(e.norm() / g.norm()), low_share=share(low),
                low_share_relative=float(g[low].pow(2).sum() / g.pow(2).sum()),
                low_share_absolute=low.numel() / nonzero.numel(), zero_share=share(g == 0),
                zero_fraction=float((g == 0).double().mean()))


def _mean_gradient(model, batch, **kw) -> torch.Tensor:
    grads = meta_gradient_batch(model, *batch, **kw)
    return flatten({n: t.mean(0) for n, t in grads.items()})


def _step(model, opt, g: torch.Tensor):
    start = 0
    for p in model.parameters():
        p.grad = g[start:start + p.numel()].view_as(p).to(p.dtype)
        start += p.numel()
    opt.step()


def _theta(model) -> torch.Tensor:
    return flatten({n: p.detach() for n, p in model.named_parameters()}).to(torch.float64)


def train_unit(cfg, cell: Cell, seed: int, progress=None) -> dict:
    """Train the three arms of (``cell``, ``seed``) in lockstep and commit the unit's result
    (a committed one is returned as is). Result: ``curve`` rows {step, per arm distance_<arm>
    and val_<arm>, and eps, low_share, low_share_relative, low_share_absolute as measured at
    the previous checkpoint, the ones the perturbed arm used up to this step};
    ``accuracy`` / ``accuracy_early`` {arm: per test episode, %}, ``best_step`` {arm: step}."""
    path = result_path(cfg, cell, seed)
    done = campaign.read(path)
    progress = progress or mnist1d._NoProgress()
    if done is not None:
        progress.update(cfg["meta_steps"])
        return done
    tcfg = dict(cfg, alpha=cell.alpha, inner_steps=cell.inner_steps)
    data = mnist1d._data(tcfg)
    train_sampler, test = mnist1d._samplers(tcfg, data, cell.shots)
    sampler = train_sampler(seed)
    curve_episodes = mnist1d._samplers(tcfg, data, cell.shots, "validation")[1].batch(cfg["curve_episodes"])
    models = {arm: mnist1d._model(tcfg, cell.activation, seed) for arm in ARMS}  # same seed: same initialisation
    opts = {arm: torch.optim.Adam(m.parameters(), lr=cfg["lr"]) for arm, m in models.items()}
    kw = dict(alpha=cell.alpha, inner_steps=cell.inner_steps)
    fob_kw = dict(kw, method="fob_symmetric", delta=cfg["delta"],
                  **({"freeze_pattern": True} if cell.activation in cfg["frozen_activations"] else PLAIN_DIFFERENCES))
    noise = torch.Generator().manual_seed(10_007 * seed + 1)
    curve, best, profile = [], {}, None
    start = time.perf_counter()
    for step in range(cfg["meta_steps"] + 1):
        checkpoint = step % cfg["eval_every"] == 0 or step == cfg["meta_steps"]
        if checkpoint and step > 0:
            anchor = _theta(models["maml"])
            row = dict(step=step, **profile)
            for arm, m in models.items():
                row[f"distance_{arm}"] = float((_theta(m) - anchor).norm() / anchor.norm())
                row[f"val_{arm}"] = float(mnist1d.evaluate(m, curve_episodes, tcfg).mean())
                if arm not in best or row[f"val_{arm}"] > best[arm][1]:
                    best[arm] = (step, row[f"val_{arm}"], mnist1d._copy(m))
            curve.append(row)
        if step == cfg["meta_steps"]:
            break
        batch = mnist1d.stack(sampler.batch(cfg["meta_batch"]))
        g = {arm: _mean_gradient(models[arm], batch, method="maml", **kw) for arm in ("maml", "maml_perturbed")}
        g["fob_symmetric"] = _mean_gradient(models["fob_symmetric"], batch, **fob_kw)
        if checkpoint:  # eps from FO-B's error at its own parameters, held until the next checkpoint
            exact = g["maml"] if step == 0 else _mean_gradient(models["fob_symmetric"], batch, method="maml", **kw)
            profile = error_profile(g["fob_symmetric"], exact)
        g["maml_perturbed"] = perturb(g["maml_perturbed"], profile["eps"], cfg["perturbation"], noise)
        for arm in ARMS:
            _step(models[arm], opts[arm], g[arm])
        progress.update(1)

    episodes = test.batch(cfg["eval_episodes"])  # one set: every arm on the same test episodes

    def accuracies(weights):
        model = models["maml"]
        model.load_state_dict(weights)
        return np.round(mnist1d.evaluate(model, episodes, tcfg), 4).tolist()

    final = {arm: mnist1d._copy(m) for arm, m in models.items()}
    result = dict(name=path.stem, run_key=run_key(cfg, cell), activation=cell.activation, shots=cell.shots,
                  alpha=cell.alpha, inner_steps=cell.inner_steps, seed=seed, perturbation=cfg["perturbation"],
                  freeze_pattern=cell.activation in cfg["frozen_activations"], curve=curve,
                  accuracy={arm: accuracies(final[arm]) for arm in ARMS},
                  accuracy_early={arm: accuracies(best[arm][2]) for arm in ARMS},
                  best_step={arm: best[arm][0] for arm in ARMS}, seconds=time.perf_counter() - start,
                  environment=environment(cfg["device"]))
    info = {k: cfg[k] for k in RUN_KEYS} | dict(alpha=cell.alpha, inner_steps=cell.inner_steps, version=VERSION)
    return campaign.commit(path, result, info)


# ---------------------------------------------------------------------------------------------
# campaign, plan and cost


def unit_seconds(cfg, cell: Cell, seconds: dict) -> float:
    """Process-seconds of one unit from ``seconds[(activation, method, frozen, K, shots)] = (per
    meta-step, per evaluated episode)`` (:func:`mnist1d.measure_seconds`): two MAML arms and FO-B
    per step, one more MAML gradient per checkpoint, and every arm's evaluated episodes."""
    frozen = cell.activation in cfg["frozen_activations"]
    maml, episode = seconds[(cell.activation, "maml", False, cell.inner_steps, cell.shots)]
    fob = seconds[(cell.activation, "fob_symmetric", frozen, cell.inner_steps, cell.shots)][0]
    checkpoints = -(-cfg["meta_steps"] // cfg["eval_every"])
    episodes = len(ARMS) * (checkpoints * cfg["curve_episodes"] + 2 * cfg["eval_episodes"])
    return cfg["meta_steps"] * (2 * maml + fob) + checkpoints * maml + episodes * episode


def _seed_line(key: str, p: dict, cfg) -> str:
    """One cell of :func:`seed_plan` as a line of the plan. The cell's own first seeds' need,
    once measured, governs; the selection's otherwise."""
    diffs = ", ".join(f"{d:+.1f}" for d in p["differences"]) or "none"
    df = len(p["differences"]) - 1
    ucl = None if p["sd"] is None or p["pooled"] or df < 1 else p["sd"] * np.sqrt(df / stats.chi2.ppf(0.05, df))
    spread = "no spread measured" if p["sd"] is None else \
        f"sd {p['sd']:.2f}{' (pooled over cells)' if p['pooled'] else ''}" + (
            "" if ucl is None else f" from {df} degree{'s' * (df != 1)} of freedom (its 95% upper confidence "
                                   f"limit {ucl:.2f} needs {_needed_or_more(ucl, cfg)})")
    here = "" if p["needed_here"] is None else f"; its first seeds' sd {p['sd_here']:.2f} needs {p['needed_here']}"
    need = p["needed_here"] if p["needed_here"] is not None else p["needed"]
    note = ""
    if need is not None and need > cfg["max_seeds"]:
        note = (f" (more than max_seeds {cfg['max_seeds']} needed: the +-{cfg['margin']:g} claim cannot be "
                "decided within the budget; the noise floor is the test here)")
    elif need is not None and need > len(p["seeds"]):
        note = f" (fewer than the {need} needed: seeds given)"
    return f"  {key:<18} differences {diffs}; {spread}; needs {p['needed']}{here}; runs {len(p['seeds'])}{note}"


def plan(cfg) -> str:
    """The seeds each cell needs (from the committed paired spread) and the campaign's units and
    process-hours, as text; a plan over ``budget_hours`` says by how much."""
    seeds = seed_plan(cfg)
    lines = [f"Seeds for a paired equivalence test at +-{cfg['margin']:g} point (TOST at {cfg['equivalence_alpha']:g} "
             f"per side = the {1 - 2 * cfg['equivalence_alpha']:.0%} paired interval inside the margin; power "
             f"{cfg['power']:.0%} at a true difference of 0), from FO-B minus MAML test accuracies committed in "
             f"{cfg['selection']}:"]
    lines += [_seed_line(key, p, cfg) for key, p in seeds.items()]
    every = jobs(cfg, seeds)
    todo = [j.args[1] for j in campaign.pending(every)]
    keys = {(c.activation, m, f, c.inner_steps, c.shots) for c in todo
            for m, f in (("maml", False), ("fob_symmetric", c.activation in cfg["frozen_activations"]))}
    timing_cfg = dict(cfg, seeds=[cfg["seed"]])
    with mnist1d.threads(cfg["torch_threads"]):
        seconds = mnist1d.plan_seconds(timing_cfg, mnist1d._data(cfg), keys, cfg["cost_rounds"], cfg["timing_runs"])
    cost = lambda j: unit_seconds(cfg, j.args[1], seconds.calibrated)  # noqa: E731
    lines += [seconds.source, campaign.describe(every, cost, cfg["results_dir"] or "the cache",
                                                (mnist1d.LIVE, lambda j: unit_seconds(cfg, j.args[1], seconds.live)))]
    hours = sum(cost(j) for j in campaign.pending(every)) / 3600
    if hours > cfg["budget_hours"]:
        lines.append(f"OVER BUDGET: {hours:.1f} process-hours > {cfg['budget_hours']:g}; lower meta_steps, max_seeds "
                     "or the cells before starting")
    return "\n".join(lines)


def make_config(args) -> dict:
    """The config of the ``paired`` command's ``args`` (``--plan``)."""
    from fobtheory.cli import resolve_device

    cfg = config(quick=args.quick, seed=args.seed, device=resolve_device(args.device))
    cfg.update(mnist1d.overrides(args, ("activations", "shots", "settings")))
    _check(cfg)
    return cfg


def run(cfg: dict) -> dict:
    """Train the pending units, then summarize; with ``committed_only``, train nothing and
    summarize the committed units, listing the cells with units still to train as pending."""
    plan_ = seed_plan(cfg)
    if not cfg.get("committed_only"):
        with mnist1d.threads(cfg["torch_threads"]):
            mnist1d.train_all(lambda: jobs(cfg, plan_), cfg, "paired units")
    every = jobs(cfg, plan_)
    campaign.refuse_broken(every)
    waiting = {j.path for j in campaign.pending(every)}
    pending = {stage: dict(committed=sum(j.path not in waiting for j in every if j.stage == stage),
                           planned=sum(j.stage == stage for j in every))
               for stage in {j.stage for j in every if j.path in waiting}}
    results = [campaign.read(j.path) for j in every if j.path not in waiting]
    if not results:
        raise ValueError("no paired unit is committed: train them first (without --committed)")
    summary, claims = summarize(results, cfg, plan_, pending)
    return make_results(NAME, cfg, records(results, cfg), summary, claims, device=cfg["device"])


# ---------------------------------------------------------------------------------------------
# records, summary, claims


def records(results, cfg) -> list[dict]:
    """``checkpoint`` rows (per unit, step and arm: distance to MAML, validation accuracy and its
    difference to MAML's, FO-B's eps and error profile) and ``final`` rows (per unit and arm: test
    accuracy, final and early-stopped, and best step)."""
    rows = []
    for r in results:
        common = dict(activation=r["activation"], shots=r["shots"], alpha=r["alpha"], inner_steps=r["inner_steps"],
                      seed=r["seed"], ways=cfg["ways"], perturbation=r["perturbation"])
        for c in r["curve"]:
            profile = {k: c[k] for k in ("eps", "low_share", "low_share_relative", "low_share_absolute", "zero_share",
                                         "zero_fraction")}
            rows += [dict(kind="checkpoint", **common, arm=arm, step=c["step"], distance=c[f"distance_{arm}"],
                          val_accuracy=c[f"val_{arm}"], val_difference=c[f"val_{arm}"] - c["val_maml"], **profile)
                     for arm in ARMS]
        for arm in ARMS:
            acc, early = np.asarray(r["accuracy"][arm]), np.asarray(r["accuracy_early"][arm])
            rows.append(dict(kind="final", **common, arm=arm, method="maml" if arm != "fob_symmetric" else arm,
                             split="test", accuracy=float(acc.mean()),
                             ci95=float(1.96 * acc.std(ddof=1) / np.sqrt(len(acc))), accuracy_early=float(early.mean()),
                             best_step=r["best_step"][arm], episodes=len(acc)))
    return rows


def _cell_summary(units, cfg) -> dict:
    """Paired over seeds: distances (final checkpoint), accuracy differences, floor comparisons."""
    last = [u["curve"][-1] for u in units]
    level = 1 - 2 * cfg["equivalence_alpha"]
    acc = {a: np.array([np.mean(u["accuracy"][a]) for u in units]) for a in ARMS}
    early = {a: np.array([np.mean(u["accuracy_early"][a]) for u in units]) for a in ARMS}
    ratio = np.log([c["distance_fob_symmetric"] / c["distance_maml_perturbed"] for c in last])
    log_ratio = t_interval(ratio)
    profiles = [c for u in units for c in u["curve"]]
    gap = {a: acc[a] - acc["maml"] for a in ("fob_symmetric", "maml_perturbed")}  # paired by seed
    gap_early = {a: early[a] - early["maml"] for a in ("fob_symmetric", "maml_perturbed")}
    sd_here, needed_here = _own_spread(gap["fob_symmetric"], cfg)
    sd_here_early, needed_here_early = _own_spread(gap_early["fob_symmetric"], cfg)
    miss = lambda c, model: abs(np.log(max(c["low_share"], 1e-300) / c[f"low_share_{model}"]))  # noqa: E731
    closer = [miss(c, "relative") < miss(c, "absolute") for c in profiles]
    return dict(
        seeds=[u["seed"] for u in units], alpha=units[0]["alpha"], inner_steps=units[0]["inner_steps"],
        distance_fob=float(np.exp(np.mean(np.log([c["distance_fob_symmetric"] for c in last])))),
        distance_perturbed=float(np.exp(np.mean(np.log([c["distance_maml_perturbed"] for c in last])))),
        distance_ratio={k: (float(np.exp(v)) if k != "n" and v is not None else v) for k, v in log_ratio.items()},
        accuracy={a: float(acc[a].mean()) for a in ARMS}, accuracy_early={a: float(early[a].mean()) for a in ARMS},
        fob_minus_maml=t_interval(gap["fob_symmetric"], level),
        fob_minus_maml_early=t_interval(gap_early["fob_symmetric"], level),
        sd_here=sd_here, needed_here=needed_here, sd_here_early=sd_here_early, needed_here_early=needed_here_early,
        perturbed_minus_maml=t_interval(gap["maml_perturbed"], level),
        perturbed_minus_maml_early=t_interval(gap_early["maml_perturbed"], level),
        departure_excess=t_interval(np.abs(gap["fob_symmetric"]) - np.abs(gap["maml_perturbed"])),
        eps_median=float(np.median([c["eps"] for c in profiles])), eps_max=float(np.max([c["eps"] for c in profiles])),
        relative_model_closer=float(np.mean(closer)),
        low_share_median=float(np.median([c["low_share"] for c in profiles])),
        low_share_relative_median=float(np.median([c["low_share_relative"] for c in profiles])),
        low_share_absolute_median=float(np.median([c["low_share_absolute"] for c in profiles])),
        zero_share_max=float(np.max([c["zero_share"] for c in profiles])),
        zero_fraction_median=float(np.median([c["zero_fraction"] for c in profiles])))


def summarize(results, cfg, plan_, pending: dict | None = None) -> tuple[dict, list[dict]]:
    """Per cell with units among ``results``, :func:`_cell_summary`; ``pending``: ``{cell key:
    {committed, planned}}`` of the cells with planned units still to train."""
    kept = ("sd", "needed", "sd_here", "needed_here", "seeds")
    summary = dict(cells={}, seeds={k: {key: p[key] for key in kept} for k, p in plan_.items()},
                   pending=pending or {}, process_hours=sum(r["seconds"] for r in results) / 3600)
    by_cell = {}
    for c in cells(cfg):
        units = sorted((r for r in results if (r["activation"], r["shots"], r["alpha"], r["inner_steps"])
                        == (c.activation, c.shots, c.alpha, c.inner_steps)), key=lambda r: r["seed"])
        if units:
            by_cell[c] = units
            summary["cells"][c.key] = _cell_summary(units, cfg)
    return summary, _claims(summary, by_cell, cfg)


def _decided(n: int, cfg) -> bool:
    return n >= cfg["min_seeds"]


def _fmt(d: dict, scale=lambda v: f"{v:+.2f}") -> str:
    if d["low"] is None:
        return f"{scale(d['mean'])} (n {d['n']}, no interval)"
    return f"{scale(d['mean'])} [{scale(d['low'])}, {scale(d['high'])}] (n {d['n']})"


def _claims(summary, by_cell, cfg) -> list[dict]:
    """Per activation and setting, over its shot counts: FO-B within the noise floor (distance,
    accuracy departure) and FO-B - MAML inside +-margin (final, early-stopped). Cells with fewer
    than ``min_seeds`` seeds, or a shot count still pending, cannot confirm or refute."""
    m, f = cfg["margin"], cfg["floor_factor"]
    out = []
    for act in cfg["activations"]:
        for setting in cfg["settings"]:
            keyed = [(c, summary["cells"][c.key]) for c in by_cell if (c.activation, c.setting) == (act, setting)]
            if not keyed:
                continue
            waiting = [(c, summary["pending"][c.key]) for c in cells(cfg)
                       if c.key in summary["pending"] and (c.activation, c.setting) == (act, setting)]
            enough = all(_decided(s["distance_ratio"]["n"], cfg) for _, s in keyed) and \
                all(s["distance_ratio"]["low"] is not None for _, s in keyed) and not waiting
            note = "" if enough or waiting else f"; fewer than {cfg['min_seeds']} paired seeds: not decided at this budget"
            note += "".join(f"; {c.shots}-shot pending ({p['committed']} of {p['planned']} units committed): "
                            "not decided until it is trained" for c, p in waiting)
            where = f"{act.upper()}, {setting} setting"

            def per_shot(field, fmt):
                return "; ".join(f"{c.shots}-shot (alpha {c.alpha:g}, K {c.inner_steps}): {fmt(s[field])}"
                                 for c, s in keyed) + note

            def decide(field, inside, outside):
                return verdict(enough and all(inside(s[field]) for _, s in keyed),
                               enough and any(outside(s[field]) for _, s in keyed))

            ratio_fmt = lambda d: _fmt(d, lambda v: f"{v:.3g}")  # noqa: E731
            out.append(claim(
                f"fob_distance_within_noise_floor_{act}_{setting}",
                f"FO-B-MAML's final parameter distance to MAML is within {f:g}x the noise floor's (MAML perturbed "
                f"at FO-B's measured gradient error) ({where})",
                f"geometric mean over seeds of FO-B's final relative parameter distance to MAML over the perturbed "
                f"arm's at most {f:g} (95% interval)",
                "distance ratio " + per_shot("distance_ratio", ratio_fmt),
                decide("distance_ratio", lambda d: d["high"] is not None and d["high"] <= f,
                       lambda d: d["low"] is not None and d["low"] > f)))
            out.append(claim(
                f"fob_accuracy_within_noise_floor_{act}_{setting}",
                f"FO-B-MAML's test accuracy departs from MAML's by at most {m:g} point more than the noise floor's "
                f"does ({where})",
                f"|FO-B - MAML| minus |perturbed - MAML|, test accuracy, at most {m:g} point (95% interval)",
                "excess departure, points: " + per_shot("departure_excess", _fmt),
                decide("departure_excess", lambda d: d["high"] is not None and d["high"] <= m,
                       lambda d: d["low"] is not None and d["low"] > m)))
            level = f"{1 - 2 * cfg['equivalence_alpha']:.0%}"
            for which, name, x in (("final", "final", ""), ("early-stopped", "early", "_early")):
                field = f"fob_minus_maml{x}"
                out.append(claim(
                    f"fob_tracks_maml_paired_{act}_{setting}_{name}",
                    f"FO-B-MAML's {which} test accuracy is within +-{m:g} point of MAML's, paired by seed ({where})",
                    f"paired {level} interval of FO-B - MAML inside +-{m:g} point (TOST)",
                    "FO-B - MAML, points: " + per_shot(field, _fmt) + f"; MAML perturbed - MAML ({which}, the same "
                    "test on MAML itself): " + ", ".join(f"{c.shots}-shot {_fmt(s[f'perturbed_minus_maml{x}'])}"
                                                         for c, s in keyed) + "; seeds needed at the committed paired "
                    "spread (the selection's): " + ", ".join(
                        f"{c.shots}-shot {_or_unmeasured(summary['seeds'][c.key]['needed'])}" for c, _ in keyed)
                    + f"; at this campaign's ({which}): "
                    + ", ".join(f"{c.shots}-shot {s[f'needed_here{x}']} (sd {s[f'sd_here{x}']:.2f})"
                                for c, s in keyed if s[f"sd_here{x}"] is not None),
                    decide(field, lambda d: d["low"] is not None and d["low"] >= -m and d["high"] <= m,
                           lambda d: d["low"] is not None and (d["low"] > m or d["high"] < -m))))
    return out


def _or_unmeasured(value) -> str:
    return "not measured (no selection spread for this cell)" if value is None else str(value)


# ---------------------------------------------------------------------------------------------
# figure


def plot(results: dict, out_dir) -> list[Path]:
    """Per cell: relative parameter distance to MAML (FO-B, perturbed; geometric mean over seeds)
    and validation accuracy minus MAML's (mean over seeds) against the meta-step."""
    rows = [r for r in results["records"] if r["kind"] == "checkpoint" and r["arm"] != "maml"]
    keys = sorted({(r["activation"], r["shots"], r["alpha"], r["inner_steps"]) for r in rows})
    path = Path(out_dir) / f"{NAME}.png"
    with plotting.style():
        fig, axes = plotting.plt.subplots(2, max(len(keys), 1), figsize=(4.2 * max(len(keys), 1), 6.4), squeeze=False)
        for j, key in enumerate(keys):
            for arm, color in (("fob_symmetric", plotting.METHOD_COLORS.get("fob_symmetric")),
                               ("maml_perturbed", "grey")):
                sel = [r for r in rows if (r["activation"], r["shots"], r["alpha"], r["inner_steps"]) == key
                       and r["arm"] == arm]
                steps = sorted({r["step"] for r in sel})
                at = lambda t, f: [r[f] for r in sel if r["step"] == t]  # noqa: E731
                axes[0][j].plot(steps, [np.exp(np.mean(np.log(np.maximum(at(t, "distance"), 1e-30)))) for t in steps],
                                color=color, label=arm)
                axes[1][j].plot(steps, [np.mean(at(t, "val_difference")) for t in steps], color=color, label=arm)
            axes[0][j].set(yscale="log", title=f"{key[0].upper()} {key[1]}-shot, alpha {key[2]:g}, K {key[3]}",
                           ylabel="|theta - theta_MAML| / |theta_MAML|")
            axes[1][j].axhline(0, color="black", linewidth=0.6)
            axes[1][j].set(xlabel="meta-step", ylabel="validation accuracy - MAML's, points")
            axes[0][j].legend(loc="best")
        fig.tight_layout()
        plotting.mark_quick(fig, results)
        save_figure(fig, path)
    plotting.close(fig)
    return [path]
