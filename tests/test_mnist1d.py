"""The MNIST-1D experiment on tiny configurations: schema, determinism, resume, committed runs."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fobtheory import campaign
from fobtheory.experiments import execute
from fobtheory.experiments import mnist1d as exp
from fobtheory.results import environment, load_results


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = exp.config(quick=True)
    cfg.update(num_samples=600, queries=3, meta_steps=6, eval_every=3, checkpoint_every=3, eval_episodes=10,
               curve_episodes=5, checkpoint_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "committed"),
               timing_rounds=1, meta_batch=2)
    return cfg


def _never_trains(*args, **kwargs):
    raise AssertionError("trained")


def test_quick_run_writes_valid_results_and_the_figure(tiny, tmp_path):
    tiny.update(activations=["relu", "gelu"], guarded_activations=["relu"], frozen_activations=["relu"])
    results = execute("mnist1d", out=tmp_path / "out", overrides=tiny, echo=lambda *_: None)
    back = load_results(tmp_path / "out" / "mnist1d.json")
    assert back["experiment"] == "mnist1d"
    assert (tmp_path / "out" / "mnist1d.png").stat().st_size > 0
    finals = [r for r in back["records"] if r["kind"] == "final"]
    assert {r["method"] for r in finals} == set(exp.METHODS)
    for r in finals:
        assert {"method", "ways", "shots", "seed", "accuracy", "ci95"} <= set(r) and 0 <= r["accuracy"] <= 100
        assert 0 <= r["val_accuracy"] <= 100 and r["device"] == "cpu"
    assert [r["activation"] for r in finals if r["kink_guard"]] == ["relu"]
    frozen = sorted((r["activation"], r["method"]) for r in finals if r["freeze_pattern"])
    assert frozen == [("relu", "fob_forward"), ("relu", "fob_symmetric")]
    assert all(r["split"] == "validation" for r in back["records"] if r["kind"] == "curve")
    assert not [r for r in back["records"] if r["kind"] == "fidelity"]  # fidelity is its own experiment
    timed = {(r["method"], r["freeze_pattern"]) for r in back["records"] if r["kind"] == "timing"}
    assert timed == {(m, False) for m in exp.METHODS} | {("fob_forward", True), ("fob_symmetric", True)}
    ids = {c["id"] for c in back["claims"]}
    assert {"fob_tracks_maml_relu", "fob_tracks_maml_gelu", "fob_frozen_tracks_maml_relu",
            "kink_guard_improves_relu_accuracy"} <= ids
    assert results["summary"]["timing"]["maml"] == pytest.approx(1.0)
    assert {"relu/5shot/fob_symmetric+guard", "relu/5shot/fob_symmetric+frozen"} <= set(results["summary"]["kinks"])


def test_a_finished_run_is_committed_as_a_small_json_with_its_device(tiny):
    cfg = dict(tiny, methods=["fob_symmetric"], activations=["relu"], guarded_activations=["relu"])
    exp.run(cfg)
    folder = exp.results_dir(cfg)
    assert folder.parent == exp.Path(tiny["results_dir"]) and folder.name == exp.run_key(cfg)
    assert sorted(p.name for p in folder.iterdir()) == \
        ["config.json", "relu-5shot-fob_symmetric-guard-seed0.json", "relu-5shot-fob_symmetric-seed0.json"]
    assert json.loads((folder / "config.json").read_text())["training_version"] == exp.TRAINING_VERSION
    result = json.loads((folder / "relu-5shot-fob_symmetric-guard-seed0.json").read_text())
    assert result["environment"]["device"] == "cpu" and result["environment"]["torch"] == torch.__version__
    assert len(result["accuracy"]) == len(result["val_accuracy"]) == tiny["eval_episodes"]
    assert [k[0] for k in result["kinks"]] == [s for s, _ in result["curve"]] == [3, 6]
    assert not list(exp._run_dir(cfg).glob("*.pt"))  # no checkpoint left, none committed


def test_a_fresh_clone_with_committed_runs_does_not_train_them(tiny, tmp_path, monkeypatch):
    cfg = dict(tiny, methods=["maml", "fo_maml"])
    first = exp.run(cfg)
    clone = tmp_path / "clone" / "mnist1d-runs"  # the committed folder, on a machine with an empty cache
    shutil.copytree(tiny["results_dir"], clone)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh-cache"))
    monkeypatch.setattr(exp, "meta_gradient_batch", _never_trains)
    monkeypatch.setattr(exp, "timing", lambda cfg, data: [])
    again = exp.run(dict(cfg, results_dir=str(clone), checkpoint_dir=None))
    finals = lambda res: [r for r in res["records"] if r.get("kind") in ("final", "curve")]  # noqa: E731
    assert finals(again) == finals(first)
    with pytest.raises(AssertionError, match="trained"):  # a run not committed does train
        exp.run(dict(cfg, methods=["reptile"], results_dir=str(clone), checkpoint_dir=None))


def test_missing_snapshots_retrain_only_that_run_and_keep_its_result(tiny, monkeypatch):
    data = exp.load_data(tiny)
    unit = dict(activation="gelu", shots=5, method="maml", seed=0)
    first = exp.train(tiny, data, **unit)
    assert exp.load_snapshots(tiny, exp.run_name(**unit)) == {}
    calls = {"n": 0}
    real = exp.meta_gradient_batch

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(exp, "meta_gradient_batch", counting)
    again = exp.train(tiny, data, **unit, snapshot_steps=(0, 3, 6))
    assert again == first and calls["n"] == tiny["meta_steps"]
    snaps = exp.load_snapshots(tiny, exp.run_name(**unit))
    assert sorted(snaps) == [0, 3, 6]
    model = exp._model(tiny, "gelu", 0)
    assert all(torch.equal(v, snaps[0][k]) for k, v in model.state_dict().items())  # step 0 = the initial weights
    exp.train(tiny, data, **unit, snapshot_steps=(0, 6))  # all there now: no step
    assert calls["n"] == tiny["meta_steps"]


def test_kink_counts_per_interval_sum_the_estimators_counts(tiny, monkeypatch):
    seen = []
    real = exp.meta_gradient_batch

    def recording(*args, **kwargs):
        grads, info = real(*args, **kwargs)
        seen.append((info.kink_retries, info.kink_unresolved))
        return grads, info

    monkeypatch.setattr(exp, "meta_gradient_batch", recording)
    data = exp.load_data(tiny)
    result = exp.train(dict(tiny, kink_tol=1e-3), data, activation="relu", shots=5, method="fob_symmetric", seed=0,
                       guard=True)
    seen = np.asarray(seen)
    assert [k[1:3] for k in result["kinks"]] == [seen[:3].sum(0).tolist(), seen[3:].sum(0).tolist()]
    assert result["kink_retries"] == seen[:, 0].sum() > 0  # a tight tolerance retries on ReLU


def test_an_interrupted_run_resumes_to_the_same_numbers(tiny, monkeypatch):
    whole = exp.run(dict(tiny, checkpoint_dir=tiny["checkpoint_dir"] + "-whole",
                         results_dir=tiny["results_dir"] + "-whole", methods=["fob_symmetric"]))
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


def test_meta_training_never_sees_validation_rows_and_splits_are_seeded(tiny):
    data = exp.load_data(tiny)
    held = set(map(bytes, data["x_val"]))
    train, val = exp._samplers(tiny, data, 5, split="validation")
    for ep in train(0).batch(20):
        assert not {bytes(r) for r in ep.support[0].squeeze(1).numpy()} & held
    rows = {bytes(r) for ep in val.batch(5) for r in torch.cat([ep.query[0], ep.support[0]]).squeeze(1).numpy()}
    assert rows <= held
    again = exp._samplers(tiny, exp.load_data(tiny), 5, split="validation")[1].sample()
    assert torch.equal(again.support[0], exp._samplers(tiny, data, 5, split="validation")[1].sample().support[0])
    with pytest.raises(ValueError, match="split must be one of"):
        exp._samplers(tiny, data, 5, split="train")
    with pytest.raises(ValueError, match="validation_fraction > 0"):
        exp._samplers(dict(tiny, validation_fraction=0.0), exp.load_data(dict(tiny, validation_fraction=0.0)), 5,
                      split="validation")


def test_the_plan_selects_variants_and_the_run_key_ignores_plan_entries():
    cfg = dict(exp.config(), seeds=[0], shots=[5])
    plan = exp._plan(cfg)
    assert len(plan) == 2 * len(exp.METHODS) + 1 + 2  # plain x 2 activations, relu guard, relu frozen x 2
    assert {u.name for u in exp._plan(dict(cfg, variants=["frozen"]))} == \
        {"relu-5shot-fob_symmetric-frozen-seed0", "relu-5shot-fob_forward-frozen-seed0"}
    assert exp.run_key(cfg) == exp.run_key(dict(cfg, seeds=[4], device="cuda", results_dir="x", variants=["guard"]))
    assert exp.run_key(cfg) != exp.run_key(dict(cfg, alpha=0.1))
    with pytest.raises(ValueError, match="variants must be among"):
        exp._plan(dict(cfg, variants=["tuned"]))
    with pytest.raises(ValueError, match="frozen=True needs a method in"):
        exp.train(cfg, {}, activation="relu", shots=5, method="maml", seed=0, frozen=True)


def test_hierarchical_interval_covers_the_mean():
    rng = np.random.default_rng(0)
    per_seed = [rng.normal(60, 10, 200) for _ in range(3)]
    mean, low, high = exp.hierarchical_interval(per_seed)
    assert low < mean < high and high - low < 10
    with pytest.raises(ValueError, match="methods must be among"):
        exp.run(dict(exp.config(quick=True), methods=["sgd"]))


def _runs(accuracy: dict) -> list[dict]:
    """Fabricated finished runs: {(activation, shots, method, guard, frozen): per-episode accuracy of each seed}."""
    return [dict(activation=a, shots=s, method=m, kink_guard=g, freeze_pattern=f, seed=i, accuracy=list(acc))
            for (a, s, m, g, f), per_seed in accuracy.items() for i, acc in enumerate(per_seed)]


@pytest.mark.parametrize("shift, expected", [(0.0, "confirmed"), (-35.0, "refuted")])
def test_accuracy_verdicts_follow_the_data(shift, expected):
    rng = np.random.default_rng(1)
    episodes = lambda mean: [np.clip(rng.normal(mean, 5, 600), 0, 100) for _ in range(3)]  # noqa: E731
    maml = episodes(70)
    acc = {("gelu", 5, "maml", False, False): maml,
           ("gelu", 5, "fob_symmetric", False, False): [a + shift for a in maml],
           ("gelu", 5, "fo_maml", False, False): episodes(40),
           ("relu", 5, "maml", False, False): maml,
           ("relu", 5, "fob_symmetric", False, False): maml,
           ("relu", 5, "fob_symmetric", True, False): [a - shift for a in maml],
           ("relu", 5, "fob_symmetric", False, True): [a + shift for a in maml]}
    cfg = dict(exp.config(), activations=["gelu"], shots=[5])
    _, claims = exp.summarize(_runs(acc), [], cfg)
    verdicts = {c["id"]: c["verdict"] for c in claims}
    assert verdicts["fob_tracks_maml_gelu"] == expected
    assert verdicts["fob_frozen_tracks_maml_relu"] == expected
    assert verdicts["fob_above_first_order_gelu_5shot"] == ("confirmed" if shift == 0 else "refuted")
    assert verdicts["kink_guard_improves_relu_accuracy"] == ("inconclusive" if shift == 0 else "confirmed")


def test_parallel_workers_commit_the_units_that_a_later_run_reuses(tiny, monkeypatch, capsys):
    from fobtheory import campaign
    from fobtheory.experiments import run_parallel

    cfg = dict(tiny, methods=["maml", "fob_symmetric"], activations=["relu"], frozen_activations=["relu"])
    jobs = exp.jobs(cfg)
    assert campaign.run_jobs(jobs, executor="local", workers=2, echo=lambda *_: None) == []
    assert campaign.pending(jobs) == []
    serial = exp.train(dict(cfg, results_dir=tiny["results_dir"] + "-serial"), exp.load_data(cfg),
                       activation="relu", shots=5, method="fob_symmetric", seed=0, frozen=True)
    parallel = json.loads(exp.result_path(cfg, serial["name"]).read_text())
    assert parallel["accuracy"] == serial["accuracy"] and parallel["curve"] == serial["curve"]  # same numbers
    monkeypatch.setattr(exp, "meta_gradient_batch", _never_trains)
    monkeypatch.setattr(exp, "timing", lambda cfg, data: [])
    assert len([r for r in exp.run(dict(cfg, executor="local"))["records"] if r["kind"] == "final"]) == len(jobs)
    monkeypatch.undo()
    assert run_parallel.main(["--quick", "--dry-run", "--variants", "plain", "--methods", "maml",
                              "--results-dir", tiny["results_dir"]]) == 0
    out = capsys.readouterr().out
    assert "1 units: 0 committed, 0 broken, 1 pending" in out and "process-hours" in out


def test_early_stopping_reports_test_accuracy_at_the_best_validation_step(tiny):
    cfg = dict(tiny, meta_steps=9, early_stopping=True)
    data = exp.load_data(cfg)
    result = exp.train(cfg, data, activation="relu", shots=5, method="fob_symmetric", seed=0, frozen=True,
                       snapshot_steps=(3, 6, 9))
    curve = dict(map(tuple, result["curve"]))
    assert result["best_step"] == max(curve, key=lambda s: (curve[s], -s))  # the first step of the best accuracy
    model = exp._model(cfg, "relu", 0)
    model.load_state_dict(exp.load_snapshots(cfg, result["name"])[result["best_step"]])
    test = exp._samplers(cfg, data, 5, "test")[1].batch(cfg["eval_episodes"])
    assert np.allclose(result["accuracy_early"], exp.evaluate(model, test, cfg), atol=1e-4)
    assert len(result["accuracy"]) == len(result["val_accuracy_early"]) == cfg["eval_episodes"]
    row = [r for r in exp.records([result], cfg) if r["kind"] == "final"][0]
    assert row["best_step"] == result["best_step"] and row["accuracy_early"] == pytest.approx(
        np.mean(result["accuracy_early"]))
    v2 = exp.train(dict(cfg, early_stopping=False), data, activation="relu", shots=5, method="fob_symmetric", seed=0,
                   frozen=True)
    assert "best_step" not in v2 and v2["accuracy"] == result["accuracy"] and v2["curve"] == result["curve"]


def test_the_protocol_versions_its_run_keys_and_the_committed_v2_runs_are_found():
    root = Path(__file__).resolve().parents[1] / "figures" / "mnist1d-runs"
    cfg = dict(exp.config(), results_dir=str(root))
    assert exp.run_key(cfg).startswith("v3-") and exp.run_key(dict(cfg, early_stopping=False)).startswith("v2-")
    v2 = dict(cfg, early_stopping=False)
    assert exp.results_dir(v2).is_dir()  # the committed runs keep their key
    assert all(exp.finished(v2, u) for u in exp._plan(v2))


# ---------------------------------------------------------------------------------------------
# the plan's step times, calibrated by the committed runs


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]),
                       st.tuples(st.floats(0.01, 10), st.floats(0.001, 1)), min_size=1),
       st.dictionaries(st.sampled_from(["a", "b", "e"]), st.lists(st.floats(0.01, 10), min_size=1, max_size=5)))
def test_calibrate_takes_the_committed_median_and_scales_the_rest_by_the_median_ratio(live, committed):
    out, source = exp.calibrate(live, committed)
    assert set(out) == set(live)
    ratios = {k: float(np.median(v)) / live[k][0] for k, v in committed.items() if k in live}
    if not ratios:
        assert out == live and "measured now" in source
        return
    typical = float(np.median(list(ratios.values())))
    for k, (step, episode) in out.items():
        r = ratios.get(k, typical)
        assert step == pytest.approx(live[k][0] * r) and episode == pytest.approx(live[k][1] * r)
        if k in ratios:
            assert step == pytest.approx(float(np.median(committed[k])))
    assert f"{typical:.2f}x" in source


def test_committed_step_seconds_reads_runs_of_this_network_from_machines_like_this_one(tmp_path):
    cfg = exp.config()
    here = environment(cfg["device"]) | {"torch_threads": 1}

    def commit(folder, name, seconds, env=here, guard=False, **info):
        result = dict(activation="relu", method="maml", freeze_pattern=False, kink_guard=guard, shots=5,
                      seconds_per_step=seconds, environment=env)
        campaign.commit(tmp_path / folder / f"{name}.json", result,
                        {k: cfg[k] for k in exp.COST_KEYS} | dict(inner_steps=5) | info)

    commit("k5", "a", 0.2)
    commit("k5", "b", 0.4)
    commit("k5", "guarded", 9.0, guard=True)
    commit("k5", "other-machine", 5.0, env=here | {"cpu_count": 999})
    commit("wide", "a", 7.0, width=cfg["width"] + 1)
    commit("k1", "a", 0.1, inner_steps=1)
    (tmp_path / "k1" / "broken.json").write_text("{")
    assert exp.committed_step_seconds(tmp_path, cfg) == {("relu", "maml", False, 5, 5): [0.2, 0.4],
                                                         ("relu", "maml", False, 1, 5): [0.1]}
    assert exp.committed_step_seconds(None, cfg) == {}


def test_a_cached_result_is_reused_only_by_the_code_that_computed_it(tiny, monkeypatch, capsys):
    """Without results_dir the runs live in the cache, keyed by configuration and code version."""
    cfg = dict(tiny, methods=["maml"], results_dir=None, checkpoint_dir=None)
    monkeypatch.setattr(exp, "timing", lambda cfg, data: [])
    first = exp.run(cfg)
    assert exp.results_dir(cfg).parent == exp.cache_dir() / "mnist1d-runs"
    assert "reused" not in capsys.readouterr().out
    monkeypatch.setattr(exp, "meta_gradient_batch", _never_trains)
    again = exp.run(cfg)  # the same code: reused, and said in one line
    said = [line for line in capsys.readouterr().out.splitlines() if "reused" in line]
    assert len(said) == 1 and "1 of 1 reused from the cache" in said[0] and str(exp.results_dir(cfg)) in said[0]
    finals = lambda res: [r for r in res["records"] if r["kind"] == "final"]  # noqa: E731
    assert finals(again) == finals(first)
    monkeypatch.setattr(exp, "code_version", lambda: "0123456789abcdef")  # the same configuration, other code
    with pytest.raises(AssertionError, match="trained"):
        exp.run(cfg)


def test_the_code_version_changes_with_any_source_file_and_the_versions(tmp_path):
    from fobtheory.data import code_version, source_hash

    package = tmp_path / "package"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    versions = {"torch": "2.0"}
    first = source_hash([package], versions)
    assert source_hash([package], dict(versions)) == first
    (package / "sub" / "b.py").write_text("y = 3\n")
    second = source_hash([package], versions)
    assert second != first and source_hash([package], {"torch": "2.1"}) != second
    (package / "sub" / "b.py").rename(package / "b.py")  # same bytes, another module
    assert source_hash([package], versions) != second
    assert len(code_version()) == 16 and code_version() == code_version()
