"""The MNIST-1D experiment on tiny configurations: schema, determinism, resume."""
import json

import numpy as np
import pytest
import torch

from fobtheory.experiments import execute
from fobtheory.experiments import mnist1d as exp
from fobtheory.results import load_results


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = exp.config(quick=True)
    cfg.update(num_samples=600, queries=3, meta_steps=6, eval_every=3, checkpoint_every=3, eval_episodes=10, curve_episodes=5,
               checkpoint_dir=str(tmp_path / "runs"), timing_rounds=1, meta_batch=2,
               fidelity=dict(steps=[0, 6], episodes=2, deltas=[1e-5, 1e-2], dtypes=["float32", "float64"], shots=5))
    return cfg


def test_quick_run_writes_valid_results_and_both_figures(tiny, tmp_path):
    tiny.update(activations=["relu", "gelu"], guarded_activations=["relu"])
    results = execute("mnist1d", out=tmp_path / "out", overrides=tiny, echo=lambda *_: None)
    back = load_results(tmp_path / "out" / "mnist1d.json")
    assert back["experiment"] == "mnist1d"
    assert (tmp_path / "out" / "mnist1d.png").stat().st_size > 0
    assert (tmp_path / "out" / "mnist1d_fidelity.png").stat().st_size > 0
    finals = [r for r in back["records"] if r["kind"] == "final"]
    assert {r["method"] for r in finals} == set(exp.METHODS)
    for r in finals:
        assert {"method", "ways", "shots", "seed", "accuracy", "ci95"} <= set(r) and 0 <= r["accuracy"] <= 100
    assert any(r["kink_guard"] for r in finals)
    fid = [r for r in back["records"] if r["kind"] == "fidelity"]
    assert {r["dtype"] for r in fid} == {"float32", "float64"} and {r["step"] for r in fid} == {0, 6}
    assert {r["method"] for r in back["records"] if r["kind"] == "timing"} == set(exp.METHODS)
    ids = {c["id"] for c in back["claims"]}
    assert {"fob_tracks_maml_relu", "fob_tracks_maml_gelu", "relu_kinks_degrade_finite_differences"} <= ids
    assert results["summary"]["timing"]["maml"] == pytest.approx(1.0)


def test_fidelity_float64_error_is_small_at_a_small_delta(tiny):
    fid = [r for r in exp.run(tiny)["records"] if r.get("kind") == "fidelity"]
    best = min(r["error"] for r in fid if r["dtype"] == "float64" and r["method"] == "fob_symmetric")
    assert best < 1e-6


def test_an_interrupted_run_resumes_to_the_same_numbers(tiny, monkeypatch):
    whole = exp.run(dict(tiny, checkpoint_dir=tiny["checkpoint_dir"] + "-whole", methods=["fob_symmetric"]))
    calls = {"n": 0}
    real = exp.meta_gradient_batch

    def crash_at_step_five(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    cfg = dict(tiny, methods=["fob_symmetric"])
    monkeypatch.setattr(exp, "meta_gradient_batch", crash_at_step_five)
    with pytest.raises(KeyboardInterrupt):
        exp.run(cfg)
    assert list((exp._run_dir(cfg)).glob("*.pt"))  # the checkpoint of step 3
    monkeypatch.setattr(exp, "meta_gradient_batch", real)
    resumed = exp.run(cfg)
    def numbers(res):  # everything but the wall-clock times
        return [{k: v for k, v in r.items() if k != "seconds_per_step"} for r in res["records"]
                if r.get("kind") in ("final", "curve")]

    assert numbers(resumed) == numbers(whole)
    assert not list(exp._run_dir(cfg).glob("*-seed0.pt"))  # finished runs drop their checkpoint


def test_finished_runs_are_not_trained_again(tiny, monkeypatch):
    cfg = dict(tiny, methods=["fo_maml"])
    first = exp.run(cfg)
    monkeypatch.setattr(exp, "meta_gradient_batch", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    monkeypatch.setattr(exp, "timing", lambda cfg, data: [])
    again = exp.run(cfg)
    assert [r for r in again["records"] if r.get("kind") == "final"] == \
        [r for r in first["records"] if r.get("kind") == "final"]


def test_hierarchical_interval_covers_the_mean():
    rng = np.random.default_rng(0)
    per_seed = [rng.normal(60, 10, 200) for _ in range(3)]
    mean, low, high = exp.hierarchical_interval(per_seed)
    assert low < mean < high and high - low < 10
    with pytest.raises(ValueError, match="methods must be among"):
        exp.run(dict(exp.config(quick=True), methods=["sgd"]))


def _runs(accuracy: dict) -> list[dict]:
    """Fabricated finished runs: {(activation, shots, method, guard): per-episode accuracy of each seed}."""
    return [dict(activation=a, shots=s, method=m, kink_guard=g, seed=i, accuracy=list(acc))
            for (a, s, m, g), per_seed in accuracy.items() for i, acc in enumerate(per_seed)]


@pytest.mark.parametrize("shift, expected", [(0.0, "confirmed"), (-35.0, "refuted")])
def test_accuracy_verdicts_follow_the_data(shift, expected):
    rng = np.random.default_rng(1)
    episodes = lambda mean: [np.clip(rng.normal(mean, 5, 600), 0, 100) for _ in range(3)]
    maml = episodes(70)
    acc = {("gelu", 5, "maml", False): maml,
           ("gelu", 5, "fob_symmetric", False): [a + shift for a in maml],
           ("gelu", 5, "fo_maml", False): episodes(40),
           ("relu", 5, "maml", False): maml,
           ("relu", 5, "fob_symmetric", False): maml,
           ("relu", 5, "fob_symmetric", True): [a - shift for a in maml]}
    cfg = dict(exp.config(), activations=["gelu"], shots=[5])
    _, claims = exp.summarize(_runs(acc), [], [], cfg)
    verdicts = {c["id"]: c["verdict"] for c in claims}
    assert verdicts["fob_tracks_maml_gelu"] == expected
    assert verdicts["fob_above_first_order_gelu_5shot"] == ("confirmed" if shift == 0 else "refuted")
    assert verdicts["kink_guard_improves_relu_accuracy"] == ("inconclusive" if shift == 0 else "confirmed")
