"""MNIST-1D few-shot meta-learning: MAML, FO-MAML, Reptile and FO-B-MAML on CNNs (claim 4).

One results file (``mnist1d.json``) and one figure (``mnist1d.png``):

1. **accuracy**: for each activation, shots, method and seed, meta-train ``CNN1D`` on
   episodes of the train split minus a held-out validation part (Adam, meta-batch of
   tasks), then evaluate on a fixed set of test-split episodes (mean and 95% interval) and
   of validation episodes (for model selection). Besides the plain methods, FO-B symmetric
   with the kink guard (``guarded_activations``) and FO-B forward and symmetric with frozen
   activation patterns (``frozen_activations``; Theory page, "Frozen activation patterns").
2. **timing**: seconds per meta-step of each method, interleaved in one process.

The fidelity of the finite differences (error tails against MAML) is its own experiment,
:mod:`fobtheory.experiments.mnist1d_fidelity`, which trains its MAML runs with :func:`train`.

**Runs.** Each run (one *unit*: activation, shots, method, variant, seed) is a job of a
:mod:`fobtheory.campaign` (:func:`jobs`), trained by :func:`train` on the config's
``executor`` (``workers`` processes by default; serial in the quick configuration). Its
finished result, a small JSON, is written atomically to
``<results_dir>/<run key>/<run name>.json`` (``results_dir`` = ``figures/mnist1d-runs`` by
default, relative to the working directory: run from the repository root, and the results
are committed; quick runs keep them in the cache, keyed by the code version too); checkpoints (every ``checkpoint_every`` steps) and weight
snapshots stay in the cache, ``<checkpoint_dir or ~/.cache/fobtheory/mnist1d-runs>/<run key>/``.
The run key ``v<version>-<hash>`` hashes every config entry that shapes a run's numbers (all
but :data:`PLAN_KEYS`), so a result is reused only by the same configuration and code, on any
machine: a campaign continues on another machine, and several processes can share one.

**Early stopping** (``early_stopping``, version 3): a run keeps the weights of its best
validation accuracy on the curve episodes and reports test accuracy there too
(``accuracy_early``, ``best_step``), beside the final step's. ``early_stopping=False`` is
protocol version 2, the runs committed before it (their run keys unchanged).

Intervals: the accuracy of a method is the mean over seeds of the mean over evaluation
episodes; its 95% interval is a t interval over the seed means (:func:`seed_interval`: with 3
seeds, 2 degrees of freedom). Differences between methods are paired: same seeds, same
training episodes, same test episodes. A claim whose verdict the earlier intervals (a
bootstrap over seeds, then episodes, which at 3 seeds spans little more than the seed means'
range) would have turned says so, with their numbers (:func:`note_flips`).
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from fobtheory import campaign, plotting
from fobtheory.data import EpisodeSampler, cache_dir, code_version, load_mnist1d
from fobtheory.intervals import t_interval
from fobtheory.memory import wall_time
from fobtheory.nn import CNN1D, METHODS, PLAIN_DIFFERENCES, adapted_accuracy, meta_gradient_batch
from fobtheory.results import DamagedResult, claim, environment, make_results, read_json, save_figure, verdict

NAME = "mnist1d"
TRAINING_VERSION = 3  # bump when a change to training, estimators or data alters a run's numbers
V2 = 2  # the protocol without early stopping (early_stopping=False): the runs committed before version 3
VARIANTS = ("plain", "guard", "frozen")  # guard: fob_symmetric + kink_tol; frozen: FO-B with freeze_pattern=True
FROZEN_METHODS = ("fob_forward", "fob_symmetric")
SPLITS = ("test", "validation")
# config entries that choose which runs to do or where, not what a run computes: left out of the run key
PLAN_KEYS = ("methods", "shots", "activations", "seeds", "guarded_activations", "frozen_activations", "variants",
             "device", "torch_threads", "checkpoint_every", "checkpoint_dir", "results_dir", "timing_rounds",
             "executor", "workers", "cluster_options")
# what a fairly tuned second-order MAML reached on a prototype of this protocol (3 conv layers of width 25,
# alpha 0.4, K 1, Adam 1e-3, meta-batch 8, 4000 meta-steps, 300 test episodes): a MAML far below is under-tuned
REFERENCE_MAML = {5: 73.0, 1: 60.4}


def config(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    cfg = dict(
        methods=list(METHODS), shots=[1, 5], activations=["relu", "gelu"], seeds=[seed, seed + 1, seed + 2],
        guarded_activations=["relu"],  # also train fob_symmetric with the kink guard for these
        frozen_activations=["relu"],  # also train fob_forward and fob_symmetric with frozen patterns for these
        variants=list(VARIANTS),
        ways=5, queries=15, width=25, depth=3, alpha=0.4, inner_steps=1, delta=1e-3, kink_tol=0.1,
        meta_batch=8, meta_steps=4000, lr=1e-3, eval_episodes=600, eval_every=250, curve_episodes=100,
        eval_seed=10_000 + seed, num_samples=5000, validation_fraction=0.2, validation_seed=0, test_classes=None,
        early_stopping=True, dtype="float32", device=device, torch_threads=1, checkpoint_every=250,
        checkpoint_dir=None, results_dir="figures/mnist1d-runs", timing_rounds=20, executor="local", workers=1,
        cluster_options={},
    )
    if quick:
        cfg.update(shots=[5], activations=["gelu"], seeds=[seed], guarded_activations=[], frozen_activations=[],
                   meta_steps=30, eval_episodes=40, eval_every=15, curve_episodes=20, checkpoint_every=15,
                   timing_rounds=3, results_dir=None, executor="serial")
    return cfg


# ---------------------------------------------------------------------------------------------
# data, episodes and models


def load_data(cfg) -> dict:
    """The MNIST-1D arrays of ``cfg``: train split minus the validation hold-out (``x, y``),
    ``x_val, y_val`` and ``x_test, y_test`` (:func:`fobtheory.data.load_mnist1d`)."""
    return load_mnist1d(num_samples=cfg["num_samples"], validation_fraction=cfg["validation_fraction"],
                        validation_seed=cfg["validation_seed"])


def stack(episodes, dtype=None):
    """Stacked ``(supports, queries)`` of a list of episodes, optionally cast to ``dtype``:
    the batched ``(X, Y)`` pairs that :func:`fobtheory.nn.meta_gradient_batch` takes."""
    def cast(t):
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    supports = tuple(cast(torch.stack([e.support[i] for e in episodes])) for i in range(2))
    queries = tuple(cast(torch.stack([e.query[i] for e in episodes])) for i in range(2))
    return supports, queries


def _samplers(cfg, data, shots, split: str = "test"):
    """``(train, evaluation)``: ``train(seed)`` makes the seeded sampler of meta-training
    episodes (train split without the validation hold-out, training classes); ``evaluation``
    is the fixed sampler of ``split`` episodes (``"test"``: the test split, for final numbers
    only; ``"validation"``: the held-out part of the train split, for curves and selection),
    seeded by ``eval_seed``, ``shots`` and the split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    classes = set(range(10))
    test_classes = set(cfg["test_classes"]) if cfg["test_classes"] is not None else classes
    train_classes = classes - test_classes if cfg["test_classes"] is not None else classes
    common = dict(ways=cfg["ways"], shots=shots, queries=cfg["queries"], device=cfg["device"],
                  dtype=getattr(torch, cfg["dtype"]))
    train = lambda seed: EpisodeSampler(data["x"], data["y"], classes=train_classes, seed=seed, **common)  # noqa: E731
    if split == "test":
        evaluation = EpisodeSampler(data["x_test"], data["y_test"], classes=test_classes,
                                    seed=cfg["eval_seed"] + shots, **common)
    else:
        if len(data.get("y_val", ())) == 0:
            raise ValueError("split='validation' needs held-out data: load with validation_fraction > 0")
        evaluation = EpisodeSampler(data["x_val"], data["y_val"], classes=train_classes,
                                    seed=cfg["eval_seed"] + 50_000 + shots, **common)
    return train, evaluation


def kinked_cnn(width: int = 25, n_classes: int = 5, length: int = 40) -> nn.Module:
    """A test network whose kinks come from ``LeakyReLU``, ``ReLU6`` and ``MaxPool1d``:
    Conv1d(5) - LeakyReLU(0.1) - MaxPool1d(2) - Conv1d(3) - ReLU6 - MaxPool1d(2) - Linear."""
    return nn.Sequential(nn.Conv1d(1, width, 5, padding=2), nn.LeakyReLU(0.1), nn.MaxPool1d(2),
                         nn.Conv1d(width, width, 3, padding=1), nn.ReLU6(), nn.MaxPool1d(2),
                         nn.Flatten(), nn.Linear(width * (length // 4), n_classes))


def _model(cfg, activation, seed):
    """The seeded network of a run: ``CNN1D`` with ``activation``, or :func:`kinked_cnn` for
    ``activation="mixed"``; on ``cfg``'s device and dtype."""
    torch.manual_seed(seed)
    if activation == "mixed":
        model = kinked_cnn(width=cfg["width"], n_classes=cfg["ways"])
    else:
        model = CNN1D(width=cfg["width"], depth=cfg["depth"], activation=activation, n_classes=cfg["ways"])
    return model.to(device=cfg["device"], dtype=getattr(torch, cfg["dtype"]))


def evaluate(model, episodes, cfg, batch: int = 50) -> np.ndarray:
    """Accuracy (percent) on each episode after adaptation (``alpha``, ``inner_steps`` of ``cfg``)."""
    out = [adapted_accuracy(model, *stack(episodes[i:i + batch]), alpha=cfg["alpha"], inner_steps=cfg["inner_steps"])
           for i in range(0, len(episodes), batch)]
    return 100 * torch.cat(out).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# runs: names, folders, training


class Unit(NamedTuple):
    """One run of the plan."""

    activation: str
    shots: int
    method: str
    seed: int
    guard: bool = False
    frozen: bool = False

    @property
    def name(self) -> str:
        return run_name(self.activation, self.shots, self.method, self.seed, self.guard, self.frozen)


def run_name(activation, shots, method, seed, guard=False, frozen=False) -> str:
    """``<activation>-<shots>shot-<method>[-guard][-frozen]-seed<seed>``."""
    return f"{activation}-{shots}shot-{method}{'-guard' if guard else ''}{'-frozen' if frozen else ''}-seed{seed}"


def training_version(cfg) -> int:
    """:data:`TRAINING_VERSION`, or :data:`V2` for ``early_stopping=False``."""
    return TRAINING_VERSION if cfg.get("early_stopping") else V2


def _shared(cfg) -> dict:
    """The entries that shape a run; version 2 runs predate ``early_stopping``, so it is left out there."""
    return {k: v for k, v in cfg.items() if k not in PLAN_KEYS and not (k == "early_stopping" and not v)}


def run_key(cfg) -> str:
    """``v<version>-<12 hex>``: :func:`fobtheory.campaign.run_key` of the entries that shape a run."""
    return campaign.run_key(training_version(cfg), _shared(cfg))


def _run_dir(cfg) -> Path:
    """Cache folder of this training configuration's checkpoints and snapshots: ``<run key>``
    under ``checkpoint_dir`` or the cache. Without ``results_dir`` the finished results are
    kept there too, and the folder is ``<run key>-code-<code version>``
    (:func:`fobtheory.data.code_version`): a cached result is reused only by the code that
    computed it (committed results are versioned by :data:`TRAINING_VERSION` instead)."""
    root = Path(cfg["checkpoint_dir"]) if cfg["checkpoint_dir"] else cache_dir() / "mnist1d-runs"
    return root / (run_key(cfg) if cfg["results_dir"] else f"{run_key(cfg)}-code-{code_version()}")


def results_dir(cfg) -> Path:
    """Folder of the finished runs' results: ``<results_dir>/<run key>`` (committed), or the
    cache folder when ``results_dir`` is None."""
    return Path(cfg["results_dir"]) / run_key(cfg) if cfg["results_dir"] else _run_dir(cfg)


def result_path(cfg, name: str) -> Path:
    return results_dir(cfg) / f"{name}.json"


def finished(cfg, unit: Unit) -> bool:
    """Whether ``unit`` has a committed result (a broken file raises, naming it)."""
    return campaign.read(result_path(cfg, unit.name)) is not None


def load_snapshots(cfg, name: str, device=None) -> dict:
    """``{step: state_dict}`` that :func:`train` saved for run ``name`` (cache only)."""
    path = _run_dir(cfg) / f"{name}.snapshots.pt"
    return torch.load(path, map_location=device, weights_only=False) if path.exists() else {}


def _save(obj, path: Path):
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _timed(fn, device):
    """``(fn(), seconds)``; on CUDA the queued kernels are waited for at both ends."""
    out = []
    seconds = wall_time(lambda: out.append(fn()), device)
    return out[0], seconds


class _NoProgress:
    def update(self, n=1):
        pass


def train(cfg, data, *, activation, shots, method, seed, guard=False, frozen=False, progress=None,
          snapshot_steps=()) -> dict:
    """Meta-train one run (resuming from its checkpoint) and evaluate it; returns its result.

    ``cfg``: a :func:`config`; ``data``: :func:`load_data`; ``guard``: ``fob_symmetric`` with
    ``kink_tol``; ``frozen``: FO-B with ``freeze_pattern=True``; ``progress``: anything with
    ``update(n)`` (a tqdm bar). A run whose result exists is not trained again; it is only
    retrained (its result kept) when ``snapshot_steps`` asks for weight snapshots that are
    not in the cache. The result is a dict with ``name, run_key, activation, shots, method,
    kink_guard, freeze_pattern, seed``; ``accuracy`` and ``val_accuracy`` (percent, per test /
    validation episode, ``eval_episodes`` each); ``curve`` ([step, mean validation accuracy
    over ``curve_episodes``] every ``eval_every`` steps); ``kinks`` ([step, retries,
    unresolved, suspects] summed over each ``eval_every`` interval, FO-B methods only: the
    ``EstimateInfo`` counts ``kink_retries`` (the guard's step shrinks, up to 3 per task
    step), ``kink_unresolved`` and ``kink_suspects`` (task steps)) and their totals
    ``kink_retries``, ``kink_unresolved``, ``kink_suspects``;
    ``seconds_per_step`` (median), ``train_seconds``; ``environment`` (device, torch version,
    machine) of the process that finished it. With ``early_stopping``: ``best_step`` (the
    first curve point of highest validation accuracy) and ``accuracy_early``,
    ``val_accuracy_early`` (per episode, as above) of the weights at that step.
    """
    if guard and method != "fob_symmetric":
        raise ValueError(f"guard=True needs method='fob_symmetric', got {method!r}")
    if frozen and method not in FROZEN_METHODS:
        raise ValueError(f"frozen=True needs a method in {FROZEN_METHODS}, got {method!r}")
    progress = progress or _NoProgress()
    name = run_name(activation, shots, method, seed, guard, frozen)
    done, run_dir = result_path(cfg, name), _run_dir(cfg)
    wanted = set(snapshot_steps)
    committed = campaign.read(done)
    if committed is not None and (not wanted or wanted <= set(load_snapshots(cfg, name))):
        progress.update(cfg["meta_steps"])
        return committed
    run_dir.mkdir(parents=True, exist_ok=True)
    train_sampler, _ = _samplers(cfg, data, shots)
    sampler = train_sampler(seed)
    curve_episodes = _samplers(cfg, data, shots, "validation")[1].batch(cfg["curve_episodes"])
    model = _model(cfg, activation, seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    state = dict(step=0, curve=[], seconds=[], snapshots={}, kinks=[], interval=[0, 0, 0], best=None)
    ckpt = run_dir / f"{name}.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        if {s for s in wanted if s < saved["state"]["step"]} <= set(saved["state"]["snapshots"]):
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            sampler.rng.bit_generator.state = saved["rng"]
            state = saved["state"]
            progress.update(state["step"])
    kw = dict(method=method, alpha=cfg["alpha"], inner_steps=cfg["inner_steps"], delta=cfg["delta"],
              kink_tol=cfg["kink_tol"] if guard else None, return_info=True,
              **({"freeze_pattern": True} if frozen else PLAIN_DIFFERENCES))
    for step in range(state["step"], cfg["meta_steps"]):
        if step in wanted:
            state["snapshots"][step] = _copy(model)
        batch = stack(sampler.batch(cfg["meta_batch"]))

        def meta_step():
            grads, info = meta_gradient_batch(model, *batch, **kw)
            for n, p in model.named_parameters():
                p.grad = grads[n].mean(0)
            opt.step()
            return info

        info, seconds = _timed(meta_step, cfg["device"])
        state["seconds"].append(seconds)
        if info is not None:
            state["interval"][0] += info.kink_retries
            state["interval"][1] += info.kink_unresolved
            state["interval"][2] += getattr(info, "kink_suspects", 0)
        state["step"] = step + 1
        progress.update(1)
        if state["step"] % cfg["eval_every"] == 0 or state["step"] == cfg["meta_steps"]:
            score = float(evaluate(model, curve_episodes, cfg).mean())
            state["curve"].append((state["step"], score))
            if cfg.get("early_stopping") and (state.get("best") is None or score > state["best"]["accuracy"]):
                state["best"] = dict(step=state["step"], accuracy=score, model=_copy(model))
            state["kinks"].append((state["step"], *state["interval"]))
            state["interval"] = [0, 0, 0]
        if state["step"] % cfg["checkpoint_every"] == 0 and state["step"] < cfg["meta_steps"]:
            _save(dict(model=model.state_dict(), opt=opt.state_dict(), rng=sampler.rng.bit_generator.state,
                       state=state), ckpt)
    if cfg["meta_steps"] in wanted:
        state["snapshots"][cfg["meta_steps"]] = _copy(model)
    if state["snapshots"]:
        _save(state["snapshots"], run_dir / f"{name}.snapshots.pt")
    ckpt.unlink(missing_ok=True)
    if committed is not None:  # retrained for its snapshots only: the finished result stands
        return committed
    fob = method.startswith("fob_")

    def accuracies():
        return {split: np.round(evaluate(model, _samplers(cfg, data, shots, split)[1].batch(cfg["eval_episodes"]),
                                         cfg), 4).tolist() for split in SPLITS}

    accuracy = accuracies()
    result = dict(name=name, run_key=run_key(cfg), activation=activation, shots=shots, method=method,
                  kink_guard=guard, freeze_pattern=frozen, seed=seed,
                  accuracy=accuracy["test"], val_accuracy=accuracy["validation"], curve=state["curve"],
                  kinks=state["kinks"] if fob else None,
                  kink_retries=sum(k[1] for k in state["kinks"]) if fob else None,
                  kink_unresolved=sum(k[2] for k in state["kinks"]) if fob else None,
                  kink_suspects=sum(k[3] for k in state["kinks"]) if fob else None,
                  seconds_per_step=float(np.median(state["seconds"])) if state["seconds"] else None,
                  train_seconds=float(np.sum(state["seconds"])), environment=environment(cfg["device"]))
    if cfg.get("early_stopping"):
        best = state["best"]
        if best["step"] != state["step"]:
            model.load_state_dict(best["model"])
            accuracy = accuracies()
        result.update(best_step=best["step"], accuracy_early=accuracy["test"], val_accuracy_early=accuracy["validation"])
    return campaign.commit(done, result, dict(training_version=training_version(cfg), **_shared(cfg)))


def _copy(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


_DATA = {}  # per process: the data of each config's data entries


def _data(cfg) -> dict:
    key = (cfg["num_samples"], cfg["validation_fraction"], cfg["validation_seed"])
    if key not in _DATA:
        _DATA[key] = load_data(cfg)
    return _DATA[key]


def train_unit(cfg, unit: Unit, snapshot_steps=(), progress=None) -> dict:
    """:func:`train` of ``unit`` on this process's copy of the data: a campaign job's function."""
    return train(cfg, _data(cfg), activation=unit.activation, shots=unit.shots, method=unit.method, seed=unit.seed,
                 guard=unit.guard, frozen=unit.frozen, progress=progress, snapshot_steps=snapshot_steps)


def has_snapshots(cfg, unit: Unit, snapshot_steps=()) -> bool:
    return set(snapshot_steps) <= set(load_snapshots(cfg, unit.name))


def job(cfg, unit: Unit, stage: str = "", snapshot_steps=()) -> campaign.Job:
    """The campaign job of ``unit`` under ``cfg`` (with the weight snapshots it must leave in the cache)."""
    return campaign.Job(result_path(cfg, unit.name), train_unit, (cfg, unit, tuple(snapshot_steps)), stage,
                        cfg["meta_steps"], has_snapshots if snapshot_steps else None)


def run_options(cfg, desc: str) -> dict:
    """:func:`fobtheory.campaign.run_jobs`'s options from ``cfg``'s executor entries."""
    return dict(executor=cfg["executor"], workers=cfg["workers"], threads=cfg["torch_threads"] or 1,
                options=cfg["cluster_options"], desc=desc)


def job_seconds(seconds: dict):
    """Estimated process-seconds of a :func:`job` from :func:`measure_seconds`'s table."""
    return lambda j: unit_seconds(j.args[0], j.args[1], seconds)


def train_all(jobs_of, cfg, desc: str, echo=print, **options) -> None:
    """Train ``jobs_of()``'s pending units (:func:`fobtheory.campaign.complete`); a failed
    unit is a RuntimeError naming the failed units, after the others finished. Units whose
    results the cache already holds (no ``results_dir``) are reused, and one line says so."""
    if not cfg["results_dir"]:
        every = jobs_of()
        reused = [j for j in every if campaign.status(j) == "committed"]
        if reused:
            folders = sorted({str(j.path.parent) for j in reused})
            echo(f"{desc}: {len(reused)} of {len(every)} reused from the cache ({', '.join(folders)}; same "
                 "configuration and code), not retrained: delete the folder to retrain them")
    failed = campaign.complete(jobs_of, **run_options(cfg, desc), **options)
    if failed:
        raise RuntimeError(campaign.failure(failed))


# ---------------------------------------------------------------------------------------------
# the cost of runs


def _evaluations(train_cfg) -> int:
    """Episodes a run evaluates: the curve every ``eval_every`` steps and at the end, then the
    test and validation sets (twice with early stopping, an upper bound: not when the best step is the last)."""
    steps, every = train_cfg["meta_steps"], train_cfg["eval_every"]
    sets = 4 if train_cfg.get("early_stopping") else 2
    return (steps // every + (steps % every > 0)) * train_cfg["curve_episodes"] + sets * train_cfg["eval_episodes"]


def unit_seconds(train_cfg, unit, seconds: dict) -> float:
    """Estimated process-seconds of one run: meta-steps x seconds per step plus evaluated
    episodes x seconds per episode, from ``seconds[(activation, method, frozen, K, shots)] =
    (per step, per episode)``."""
    step, episode = seconds[(unit.activation, unit.method, unit.frozen, train_cfg["inner_steps"], unit.shots)]
    return train_cfg["meta_steps"] * step + _evaluations(train_cfg) * episode


def measure_seconds(cfg, data, keys, rounds: int) -> dict:
    """``{key: (seconds per meta-step, seconds per evaluated episode)}`` on this machine, this
    process's torch threads: medians of ``rounds`` interleaved calls (after one warm-up)
    at initial weights (alpha = the shared one: time does not depend on it)."""
    keys = sorted(keys)
    batches = {}
    for act, _, _, _, shots in keys:
        if (act, shots) not in batches:
            train, evaluation = _samplers(cfg, data, shots, "validation")  # the test split only for results
            batches[act, shots] = (stack(train(cfg["seeds"][0]).batch(cfg["meta_batch"])),
                                   evaluation.batch(25))
    models = {act: _model(cfg, act, cfg["seeds"][0]) for act in {k[0] for k in keys}}
    steps, episodes = {key: [] for key in keys}, {key: [] for key in keys}
    for _ in range(rounds + 1):
        for key in keys:
            act, method, frozen, k, shots = key
            batch, episodes_ = batches[act, shots]
            steps[key].append(wall_time(lambda: meta_gradient_batch(  # noqa: B023 (called at once)
                models[act], *batch, method=method, alpha=cfg["alpha"], inner_steps=k, delta=cfg["delta"],
                **({"freeze_pattern": True} if frozen else PLAIN_DIFFERENCES)), cfg["device"]))
            episodes[key].append(wall_time(lambda: evaluate(  # noqa: B023
                models[act], episodes_, dict(cfg, inner_steps=k)), cfg["device"]) / len(episodes_))
    return {key: (float(np.median(steps[key][1:])), float(np.median(episodes[key][1:]))) for key in keys}


# what a run's step time depends on besides its cost key: entries of its folder's config.json,
# and facts of the machine that trained it (its environment)
COST_KEYS = ("ways", "queries", "width", "depth", "meta_batch", "dtype")
MACHINE_KEYS = ("machine", "cpu_count", "torch", "device", "torch_threads")


def committed_step_seconds(root, cfg) -> dict[tuple, list[float]]:
    """``{(activation, method, frozen, K, shots): [seconds per meta-step]}`` of the runs committed
    under ``root`` (every run key; None: none) with ``cfg``'s network and episodes
    (:data:`COST_KEYS`), trained on a machine like this one with ``cfg``'s device and threads
    (:data:`MACHINE_KEYS`): the step times of a campaign as it ran, its workers sharing the
    cores. Kink-guarded runs and unreadable files are left out (plans list the latter)."""
    if root is None:
        return {}
    here = dict(environment(cfg["device"]), torch_threads=cfg["torch_threads"] or 1)
    out: dict[tuple, list[float]] = {}
    for info_path in sorted(Path(root).glob("*/config.json")):
        try:
            info = read_json(info_path)
        except DamagedResult:
            continue
        if "inner_steps" not in info or any(info.get(k) != cfg[k] for k in COST_KEYS):
            continue
        for path in sorted(info_path.parent.glob("*.json")):
            try:
                r = read_json(path)
            except DamagedResult:
                continue
            env = r.get("environment") or {}
            if path == info_path or r.get("seconds_per_step") is None or r.get("kink_guard") \
                    or any(env.get(k) != here[k] for k in MACHINE_KEYS):
                continue
            key = (r["activation"], r["method"], bool(r["freeze_pattern"]), info["inner_steps"], r["shots"])
            out.setdefault(key, []).append(r["seconds_per_step"])
    return out


def calibrate(seconds: dict, committed: dict) -> tuple[dict, str]:
    """``seconds`` (:func:`measure_seconds`, live) as a campaign on this machine meets them: a key
    with ``committed`` step times (:func:`committed_step_seconds`) takes their median, and its
    episode time the same ratio r to the live step time; every other key is scaled by the median
    r over those keys. A live measurement in a quiet process misses what a campaign's workers
    cost each other (r about 1.8 on 2 cores). Returns the table and a line saying what it used."""
    ratios = {k: float(np.median(committed[k])) / seconds[k][0] for k in seconds if committed.get(k)}
    if not ratios:
        return seconds, "step times: measured now in this process (no committed run of these settings from a " \
                        "machine like this one to calibrate them)"
    typical = float(np.median(list(ratios.values())))
    out = {k: (step * ratios.get(k, typical), episode * ratios.get(k, typical))
           for k, (step, episode) in seconds.items()}
    runs = sum(len(committed[k]) for k in ratios)
    return out, (f"step times: the median of {runs} committed runs for {len(ratios)} of {len(seconds)} settings "
                 f"({typical:.2f}x the live measurement, median over them); the other settings' live times "
                 f"scaled by {typical:.2f}")


class PlanSeconds(NamedTuple):
    """A plan's step and episode times: ``calibrated`` (:func:`calibrate`), ``live``
    (:func:`measure_seconds`) and the line that says where the first came from."""

    calibrated: dict
    live: dict
    source: str


LIVE = "at this process's live step times (this machine now)"


def plan_seconds(cfg, data, keys, rounds: int, root) -> PlanSeconds:
    """:func:`measure_seconds` of ``keys``, and calibrated by the runs committed under ``root``:
    the committed runs' times are steady across a campaign's machines and loads, the live
    ones say how fast this machine is now (hosts of one kind differ by up to 2x)."""
    if not keys:
        return PlanSeconds({}, {}, "")
    live = measure_seconds(cfg, data, keys, rounds)
    calibrated, source = calibrate(live, committed_step_seconds(root, cfg))
    return PlanSeconds(calibrated, live, source)


# ---------------------------------------------------------------------------------------------
# timing


def _timed_variants(cfg) -> list[tuple[str, dict]]:
    """(label, options) of each method timed: the plain ones, and frozen FO-B if planned."""
    variants = [(m, PLAIN_DIFFERENCES) for m in cfg["methods"]]
    if any(u.frozen for u in _plan(cfg)):
        variants += [(f"{m}+frozen", dict(freeze_pattern=True)) for m in FROZEN_METHODS if m in cfg["methods"]]
    return variants


def timing(cfg, data) -> list[dict]:
    """Median seconds per meta-step of each method, the methods interleaved round by round."""
    train_sampler, _ = _samplers(cfg, data, max(cfg["shots"]))
    sampler = train_sampler(cfg["seeds"][0])
    model = _model(cfg, cfg["activations"][0], cfg["seeds"][0])
    batch = stack(sampler.batch(cfg["meta_batch"]))
    variants = _timed_variants(cfg)
    times = {label: [] for label, _ in variants}
    for _ in range(cfg["timing_rounds"] + 1):  # the first round warms up
        for label, options in variants:
            times[label].append(wall_time(lambda: meta_gradient_batch(  # noqa: B023 (called at once)
                model, *batch, method=label.split("+")[0], alpha=cfg["alpha"], inner_steps=cfg["inner_steps"],
                delta=cfg["delta"], **options), cfg["device"]))
    median = {m: float(np.median(t[1:])) for m, t in times.items()}
    base = median.get("maml", np.nan)
    return [dict(kind="timing", method=m.split("+")[0], freeze_pattern=m.endswith("+frozen"),
                 activation=cfg["activations"][0], shots=max(cfg["shots"]), meta_batch=cfg["meta_batch"],
                 seconds_per_step=s, ratio_to_maml=s / base) for m, s in median.items()]


# ---------------------------------------------------------------------------------------------
# statistics and claims


def hierarchical_interval(per_seed: list[np.ndarray], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds of the mean over episodes, and a 95% bootstrap interval that resamples
    seeds and then episodes within each seed."""
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        picks = rng.integers(0, len(per_seed), len(per_seed))
        means.append(np.mean([rng.choice(per_seed[i], len(per_seed[i])).mean() for i in picks]))
    low, high = np.percentile(means, [2.5, 97.5])
    return float(np.mean([a.mean() for a in per_seed])), float(low), float(high)


def _interval(per_seed: list[np.ndarray]) -> dict:
    """:func:`hierarchical_interval` as ``{"mean", "ci_low", "ci_high"}``."""
    return dict(zip(("mean", "ci_low", "ci_high"), hierarchical_interval(per_seed)))


def _paired(a: list[np.ndarray], b: list[np.ndarray]) -> dict:
    """Interval of the accuracy difference a - b, paired by seed and episode."""
    return _interval([x - y for x, y in zip(a, b)])


def seed_interval(per_seed: list[np.ndarray], level: float = 0.95) -> dict:
    """Mean over seeds of the mean over episodes, and its two-sided t interval over the seed
    means (n - 1 degrees of freedom): honest at a handful of seeds, where a bootstrap over
    seeds spans little more than their range. With one seed there is no seed-level spread:
    the interval is :func:`hierarchical_interval`'s over episodes, and ``level`` says so."""
    if len(per_seed) < 2:
        return dict(_interval(per_seed), level="episodes of one seed (no seed-level interval)")
    t = t_interval([np.mean(a) for a in per_seed], level)
    return dict(mean=t["mean"], ci_low=t["low"], ci_high=t["high"], level=f"t over {t['n']} seeds")


def seed_paired(a: list[np.ndarray], b: list[np.ndarray]) -> dict:
    """:func:`seed_interval` of the accuracy difference a - b, paired by seed and episode."""
    return seed_interval([x - y for x, y in zip(a, b)])


def _points(d: dict) -> str:
    return f"{d['mean']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}] points"


def _suffix(guard, frozen) -> str:
    return ("+guard" if guard else "") + ("+frozen" if frozen else "")


def _variant(r) -> tuple:
    return r["activation"], r["shots"], r["method"], r["kink_guard"], r.get("freeze_pattern", False)


def _accuracies(results, activation, shots, method, guard=False, frozen=False, key="accuracy") -> list[np.ndarray]:
    """Per seed (sorted), the variant's per-episode ``key`` (``accuracy``: final step;
    ``accuracy_early``: at the best validation checkpoint)."""
    runs = sorted((r for r in results if _variant(r) == (activation, shots, method, guard, frozen)),
                  key=lambda r: r["seed"])
    return [np.asarray(r[key]) for r in runs]


# columns 1-3 of a run's ``kinks`` rows, per task step: the guard's step shrinks (0 to 3 each),
# the share it left unresolved, the share flagged by ``kink_check`` (0 unless training sets it)
KINK_COUNTS = ("retries_per_task_step", "unresolved_fraction", "suspect_fraction")


def _kink_summary(runs, cfg) -> dict:
    """The kink counts of FO-B runs per task step (meta-steps x meta-batch x inner steps):
    over the whole run and per ``eval_every`` interval, mean over seeds (:data:`KINK_COUNTS`)."""
    per_step = cfg["meta_batch"] * cfg["inner_steps"]
    steps = [k[0] for k in runs[0]["kinks"]]
    lengths = np.diff([0] + steps) * per_step
    mean = lambda i, col: float(np.mean([r["kinks"][i][col] for r in runs]))  # noqa: E731
    out = {c: sum(mean(i, j + 1) for i in range(len(steps))) / (steps[-1] * per_step)
           for j, c in enumerate(KINK_COUNTS)}
    out["per_interval"] = [dict(step=s, **{c: mean(i, j + 1) / n for j, c in enumerate(KINK_COUNTS)})
                           for i, (s, n) in enumerate(zip(steps, lengths))]
    return out


def note_flips(claims: list[dict], earlier: list[dict], seeds: int) -> list[dict]:
    """``claims`` (on seed-level t intervals), each whose verdict differs from the same claim in
    ``earlier`` (on the bootstrap over seeds, then episodes) saying so, with the earlier numbers."""
    for new, old in zip(claims, earlier):
        if new["verdict"] != old["verdict"]:
            new["measured"] += (f"; with a bootstrap over seeds and episodes instead (too narrow at {seeds} seeds): "
                                f"{old['measured']}, {old['verdict']}")
    return claims


def summarize(results: list[dict], timing_rows, cfg) -> tuple[dict, list[dict]]:
    """The summary and claims on seed-level t intervals (:func:`seed_interval`), the claims
    that the earlier bootstrap intervals would have decided otherwise noted (:func:`note_flips`)."""
    summary = _summary(results, timing_rows, cfg, seed_interval, seed_paired)
    earlier = _claims(_summary(results, timing_rows, cfg, _interval, _paired), results, cfg, _paired)
    return summary, note_flips(_claims(summary, results, cfg, seed_paired), earlier, len(cfg["seeds"]))


def _summary(results: list[dict], timing_rows, cfg, interval, paired) -> dict:
    """Accuracy cells (intervals by ``interval``), differences to MAML (by ``paired``), kink
    counts, timing and highlights."""
    summary = {"accuracy": {}, "accuracy_early": {}, "validation_accuracy": {}, "difference_to_maml": {}, "kinks": {},
               "timing": {r["method"] + ("+frozen" if r.get("freeze_pattern") else ""): r["ratio_to_maml"]
                          for r in timing_rows}}
    for act, shots, method, guard, frozen in sorted({_variant(r) for r in results}):
        key = f"{act}/{shots}shot/{method}{_suffix(guard, frozen)}"
        runs = sorted((r for r in results if _variant(r) == (act, shots, method, guard, frozen)),
                      key=lambda r: r["seed"])
        summary["accuracy"][key] = interval(_accuracies(results, act, shots, method, guard, frozen))
        if all(r.get("accuracy_early") for r in runs):  # test accuracy at the best validation step
            summary["accuracy_early"][key] = interval([np.asarray(r["accuracy_early"]) for r in runs])
        if all(r.get("val_accuracy") for r in runs):
            summary["validation_accuracy"][key] = interval([np.asarray(r["val_accuracy"]) for r in runs])
        maml = _accuracies(results, act, shots, "maml")
        if method != "maml" and maml:
            summary["difference_to_maml"][key] = paired(_accuracies(results, act, shots, method, guard, frozen), maml)
        if all(r.get("kinks") for r in runs):
            summary["kinks"][key] = _kink_summary(runs, cfg)
    summary["highlights"] = _highlights(summary, cfg)
    return summary


def _highlights(summary, cfg) -> list[str]:
    """Key numbers as sentences, for the README and the ledger."""
    lines = []
    for act in cfg["activations"]:
        for s in cfg["shots"]:
            cells = [(k.split("/")[2], a) for k, a in summary["accuracy"].items() if k.startswith(f"{act}/{s}shot/")]
            if cells:
                ref = f"; prototype MAML {REFERENCE_MAML[s]:.1f} (tuned reference)" if s in REFERENCE_MAML else ""
                lines.append(f"{act.upper()}, 5-way {s}-shot, accuracy % [95% interval], {len(cfg['seeds'])} seeds x "
                             f"{cfg['eval_episodes']} test episodes: " + ", ".join(
                                 f"{m} {a['mean']:.1f} [{a['ci_low']:.1f}, {a['ci_high']:.1f}]" for m, a in cells) + ref)
    guarded = {k: v for k, v in summary["kinks"].items() if k.endswith("+guard")}
    if guarded:
        lines.append("Kink guard in training, per task step: step shrinks (0-3) and share left unresolved, over the "
                     f"run (first -> last interval of {cfg['eval_every']} steps): " + ", ".join(
                         f"{k.rsplit('/', 1)[0]} {v['retries_per_task_step']:.2f} "
                         f"({v['per_interval'][0]['retries_per_task_step']:.2f} -> "
                         f"{v['per_interval'][-1]['retries_per_task_step']:.2f}), {v['unresolved_fraction']:.1%} "
                         f"({v['per_interval'][0]['unresolved_fraction']:.1%} -> "
                         f"{v['per_interval'][-1]['unresolved_fraction']:.1%})"
                         for k, v in guarded.items()))
    if summary["timing"]:
        lines.append("Time per meta-step / MAML's (interleaved, meta-batch "
                     f"{cfg['meta_batch']}, {max(cfg['shots'])}-shot, {cfg['activations'][0].upper()}, "
                     f"{cfg['device']}): " + ", ".join(f"{m} {r:.2f}" for m, r in summary["timing"].items()))
    return lines


def _tracking_claim(id, statement, cells) -> dict:
    """FO-B within +-1 point of MAML at every shot count (95% interval)."""
    inside = [d["ci_low"] >= -1 and d["ci_high"] <= 1 for _, d in cells]
    outside = [d["ci_low"] > 1 or d["ci_high"] < -1 for _, d in cells]
    return claim(id, statement, "accuracy difference to MAML within +-1 point (95% interval)",
                 "; ".join(f"{s}-shot: {_points(d)}" for s, d in cells), verdict(all(inside), any(outside)))


def _claims(summary, results, cfg, paired) -> list[dict]:
    """Tracking of MAML (from the summary's differences), FO-B against the better first-order
    method and the guard's effect (intervals by ``paired``)."""
    claims = []
    diff = summary["difference_to_maml"]
    setting = f"delta={cfg['delta']:g} normalized, {cfg['dtype']}"
    tracked = [(act, "", f"fob_tracks_maml_{act}", f"FO-B-MAML (symmetric, {setting})") for act in cfg["activations"]]
    tracked += [(act, "+frozen", f"fob_frozen_tracks_maml_{act}",
                 f"FO-B-MAML symmetric with frozen activation patterns ({setting})") for act in cfg["frozen_activations"]]
    for act, suffix, id_, who in tracked:
        key = f"{act}/{{}}shot/fob_symmetric{suffix}"
        cells = [(s, diff[key.format(s)]) for s in cfg["shots"] if key.format(s) in diff]
        if cells:
            claims.append(_tracking_claim(id_, f"{who} tracks second-order MAML on MNIST-1D with {act.upper()}", cells))
    acc = summary["accuracy"]
    for act in cfg["activations"]:
        for s in cfg["shots"]:
            fob = _accuracies(results, act, s, "fob_symmetric")
            rivals = [m for m in ("fo_maml", "reptile") if _accuracies(results, act, s, m)]
            if not fob or not rivals:
                continue
            best = max(rivals, key=lambda m: acc[f"{act}/{s}shot/{m}"]["mean"])
            d = paired(fob, _accuracies(results, act, s, best))
            claims.append(claim(
                f"fob_above_first_order_{act}_{s}shot",
                f"FO-B-MAML symmetric is at or above FO-MAML and Reptile ({act.upper()}, 5-way {s}-shot)",
                "difference to the better of FO-MAML/Reptile not below -1 point (95% interval)",
                f"{_points(d)} vs {best}",
                verdict(d["ci_low"] >= -1, d["ci_high"] < 0)))
    return claims + _guard_claims(results, cfg, paired)


def _guard_claims(results, cfg, paired) -> list[dict]:
    """Does the kink guard, switched on during meta-training, raise ReLU accuracy? Paired by seed."""
    cells = []
    for s in cfg["shots"]:
        on = _accuracies(results, "relu", s, "fob_symmetric", guard=True)
        off = _accuracies(results, "relu", s, "fob_symmetric")
        if on and len(on) == len(off):
            cells.append((s, paired(on, off)))
    if not cells:
        return []
    return [claim(
        "kink_guard_improves_relu_accuracy",
        "Meta-training FO-B-MAML symmetric with the kink guard on raises its ReLU accuracy",
        "accuracy with the guard minus without above 0 at every shot count (95% interval)",
        "; ".join(f"{s}-shot: {_points(d)}" for s, d in cells),
        verdict(all(d["ci_low"] > 0 for _, d in cells), any(d["ci_high"] < 0 for _, d in cells)))]


# ---------------------------------------------------------------------------------------------
# the experiment


@contextmanager
def threads(n):
    """Run the body with ``torch.set_num_threads(n)`` (``n`` falsy: unchanged)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _plan(cfg) -> list[Unit]:
    """The runs of ``cfg``: ``plain`` every method; ``guard`` fob_symmetric with the kink guard
    for ``guarded_activations``; ``frozen`` fob_forward and fob_symmetric with frozen patterns
    for ``frozen_activations``; each kept if its variant is in ``variants``."""
    bad = set(cfg["variants"]) - set(VARIANTS)
    if bad:
        raise ValueError(f"variants must be among {VARIANTS}, got {sorted(bad)}")
    units = []
    for a in cfg["activations"]:
        for s in cfg["shots"]:
            for seed in cfg["seeds"]:
                if "plain" in cfg["variants"]:
                    units += [Unit(a, s, m, seed) for m in cfg["methods"]]
                if "guard" in cfg["variants"] and a in cfg["guarded_activations"] and "fob_symmetric" in cfg["methods"]:
                    units.append(Unit(a, s, "fob_symmetric", seed, guard=True))
                if "frozen" in cfg["variants"] and a in cfg["frozen_activations"]:
                    units += [Unit(a, s, m, seed, frozen=True) for m in FROZEN_METHODS if m in cfg["methods"]]
    return units


def _check(cfg):
    unknown = set(cfg["methods"]) - set(METHODS)
    if unknown:
        raise ValueError(f"methods must be among {METHODS}, got {sorted(unknown)}")
    _plan(cfg)


def records(results: list[dict], cfg) -> list[dict]:
    """Flat rows of finished runs: ``final`` (test accuracy, mean and 95% half-width over
    episodes; validation accuracy; with early stopping ``accuracy_early`` and ``best_step``), ``curve`` (validation accuracy by step) and ``kinks``
    (guard counts per ``eval_every`` interval, FO-B runs)."""
    rows = []
    for r in results:
        per_episode = np.asarray(r["accuracy"])
        common = dict(ways=cfg["ways"], method=r["method"], activation=r["activation"], kink_guard=r["kink_guard"],
                      freeze_pattern=r.get("freeze_pattern", False), seed=r["seed"], shots=r["shots"])
        rows.append(dict(kind="final", **common, split="test", accuracy=float(per_episode.mean()),
                         ci95=float(1.96 * per_episode.std(ddof=1) / np.sqrt(len(per_episode))),
                         episodes=len(per_episode),
                         val_accuracy=float(np.mean(r["val_accuracy"])) if r.get("val_accuracy") else None,
                         accuracy_early=float(np.mean(r["accuracy_early"])) if r.get("accuracy_early") else None,
                         best_step=r.get("best_step"),
                         seconds_per_step=r["seconds_per_step"], kink_retries=r.get("kink_retries"),
                         kink_unresolved=r.get("kink_unresolved"), kink_suspects=r.get("kink_suspects"),
                         device=r.get("environment", {}).get("device")))
        rows += [dict(kind="curve", **common, split="validation", step=s, accuracy=a) for s, a in r["curve"]]
        rows += [dict(kind="kinks", **common, step=k[0], kink_retries=k[1], kink_unresolved=k[2], kink_suspects=k[3])
                 for k in r.get("kinks") or ()]
    return rows


def jobs(cfg) -> list[campaign.Job]:
    """The campaign: one job per unit of :func:`_plan`."""
    return [job(cfg, u) for u in _plan(cfg)]


def run(cfg: dict) -> dict:
    _check(cfg)
    data = _data(cfg)
    with threads(cfg["torch_threads"]):
        train_all(lambda: jobs(cfg), cfg, "mnist1d runs")
        results = [campaign.read(j.path) for j in jobs(cfg)]
        timing_rows = timing(cfg, data)
    summary, claims = summarize(results, timing_rows, cfg)
    return make_results(NAME, cfg, records(results, cfg) + timing_rows, summary, claims, device=cfg["device"])


def plan(cfg) -> str:
    """The campaign's units (committed, broken, pending) and the cost of the pending ones, as text."""
    todo = [j.args[1] for j in campaign.pending(jobs(cfg))]
    keys = {(u.activation, u.method, u.frozen, cfg["inner_steps"], u.shots) for u in todo}
    with threads(cfg["torch_threads"]):
        seconds = plan_seconds(cfg, _data(cfg), keys, 1, cfg["results_dir"])
    return "\n".join(filter(None, [seconds.source, campaign.describe(
        jobs(cfg), job_seconds(seconds.calibrated), cfg["results_dir"] or "the cache",
        (LIVE, job_seconds(seconds.live)))]))


# ---------------------------------------------------------------------------------------------
# command line of the campaign scripts (`python -m fobtheory.experiments.run_parallel`, ...)


def campaign_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the options every MNIST-1D campaign script takes: the executor's
    (:func:`fobtheory.campaign.add_options`), device, the configuration (quick, seed),
    methods, activations, the committed results root and the protocol; each error is one
    line (:class:`fobtheory.cli.Parser`)."""
    from fobtheory.cli import Parser

    p = Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    campaign.add_options(p)
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda[:N] (default cpu)")
    p.add_argument("--quick", action="store_true", help="the quick configuration")
    p.add_argument("--seed", type=int, default=0, help="base seed of the configuration (default 0)")
    p.add_argument("--methods", nargs="+", default=None, help="maml fo_maml reptile fob_forward fob_symmetric")
    p.add_argument("--activations", nargs="+", default=None, help="relu gelu (default both)")
    p.add_argument("--results-dir", default=None, help="committed results root (default figures/mnist1d-runs)")
    p.add_argument("--no-early-stopping", dest="early_stopping", action="store_false", default=None,
                   help="protocol version 2: the runs committed before early stopping")
    return p


def make_config(args) -> dict:
    """The config of a campaign command's ``args`` (device resolved, entries checked)."""
    from fobtheory.cli import resolve_device

    cfg = config(quick=args.quick, seed=args.seed, device=resolve_device(args.device))
    cfg.update(overrides(args, ("methods", "shots", "seeds", "activations", "variants", "results_dir")))
    _check(cfg)
    return cfg


def overrides(args, keys=()) -> dict:
    """The config entries that ``args`` sets: the executor's and the protocol's, and ``keys``."""
    out = {k: getattr(args, k) for k in ("executor", "workers", "early_stopping", *keys)
           if getattr(args, k, None) is not None}
    if getattr(args, "threads", None) is not None:
        out["torch_threads"] = args.threads
    if getattr(args, "cluster_option", None):
        out["cluster_options"] = campaign.cluster_options(args.cluster_option)
    return out


# ---------------------------------------------------------------------------------------------
# figure


def plot(results: dict, out_dir) -> list[Path]:
    return [_plot_accuracy(results, Path(out_dir) / "mnist1d.png")]


def _label(method, guard, frozen=False):
    return method + (" + kink guard" if guard else "") + (" + frozen pattern" if frozen else "")


def _linestyle(guard, frozen):
    return ":" if guard else "-." if frozen else "-"


def _plot_accuracy(results, path):
    cfg, recs = results["config"], results["records"]
    acts, shots = cfg["activations"], cfg["shots"]
    curves = [r for r in recs if r["kind"] == "curve"]
    with plotting.style():
        height = 3.6 * len(acts) + 0.7  # and a strip for the legend
        fig, axes = plotting.plt.subplots(len(acts), len(shots) + 1, figsize=(4.6 * (len(shots) + 1), height),
                                          squeeze=False)
        for i, act in enumerate(acts):
            for j, s in enumerate(shots):
                ax = axes[i][j]
                variants = sorted({(r["method"], r["kink_guard"], r.get("freeze_pattern", False)) for r in curves
                                   if r["activation"] == act and r["shots"] == s})
                for method, guard, frozen in variants:
                    rows = [r for r in curves if _variant(r) == (act, s, method, guard, frozen)]
                    steps = sorted({r["step"] for r in rows})
                    mean = [np.mean([r["accuracy"] for r in rows if r["step"] == t]) for t in steps]
                    ax.plot(steps, mean, color=plotting.METHOD_COLORS.get(method), linestyle=_linestyle(guard, frozen),
                            label=_label(method, guard, frozen))
                if s in REFERENCE_MAML:
                    ax.axhline(REFERENCE_MAML[s], color="grey", linewidth=0.8, linestyle="--",
                               label="prototype MAML, test (tuned reference)")
                ax.set(title=f"{act.upper()}, 5-way {s}-shot", xlabel="meta-step",
                       ylabel=f"validation accuracy, % ({cfg['curve_episodes']} episodes)")
            ax = axes[i][-1]
            keys = [k for k in results["summary"]["accuracy"] if k.startswith(f"{act}/")]
            for y, key in enumerate(keys):
                a = results["summary"]["accuracy"][key]
                method = key.split("/")[2].split("+")[0]
                ax.errorbar(a["mean"], y, xerr=[[a["mean"] - a["ci_low"]], [a["ci_high"] - a["mean"]]], fmt="o",
                            color=plotting.METHOD_COLORS.get(method), capsize=3)
            ax.set_yticks(range(len(keys)), [k.split("/", 1)[1] for k in keys], fontsize=7)
            ax.set(title=f"{act.upper()}: final test accuracy, 95% interval", xlabel=f"test accuracy, % "
                   f"({cfg['eval_episodes']} episodes x {len(cfg['seeds'])} seeds)")
        legend = {}  # one legend for every curve panel, below them: none covers a curve
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(label, handle)
        fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=4, fontsize=9)
        fig.tight_layout(rect=(0, 0.7 / height, 1, 1))
        plotting.mark_quick(fig, results)
        save_figure(fig, path)
    plotting.close(fig)
    return path
