"""The MNIST-1D selection experiment: selection and widening on synthetic scores, the cost
estimate, the claims on synthetic records, and tiny runs end to end."""
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fobtheory.cli import main as cli
from fobtheory.experiments import execute
from fobtheory.experiments import mnist1d
from fobtheory.experiments import mnist1d_select as sel
from fobtheory.results import load_results

ALPHAS, KS = [0.03, 0.1, 0.4, 0.8], [1, 5, 10]


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = sel.config(quick=True)
    cfg.update(num_samples=600, queries=3, grid_meta_steps=4, meta_steps=6, eval_every=4, checkpoint_every=3,
               eval_episodes=10, curve_episodes=5, checkpoint_dir=str(tmp_path / "runs"),
               results_dir=str(tmp_path / "committed"), timing_rounds=1, meta_batch=2)
    return cfg


def _never_trains(*args, **kwargs):
    raise AssertionError("trained")


# ---------------------------------------------------------------------------------------------
# selection and widening (no training)


@given(st.dictionaries(st.tuples(st.sampled_from(ALPHAS), st.sampled_from(KS)),
                       st.sampled_from([20.0, 35.5, 50.0, 61.25]), min_size=1))
def test_select_is_the_validation_argmax_with_ties_to_fewer_steps_then_smaller_alpha(scores):
    top = max(scores.values())
    tied = [p for p, s in scores.items() if s == top]
    k = min(p[1] for p in tied)
    assert sel.select(scores) == (min(p[0] for p in tied if p[1] == k), k)


def _scores(best, alphas=(0.1, 0.4), ks=(1, 5)):
    """Scores on alphas x ks that peak at ``best`` (farther points score lower)."""
    return {(a, k): 60 - abs(ALPHAS.index(a) - ALPHAS.index(best[0])) - abs(KS.index(k) - KS.index(best[1]))
            for a in alphas for k in ks}


@pytest.mark.parametrize("best, tried, expected", [
    ((0.4, 5), ((0.1, 0.4), (1, 5)), [(0.8, 5), (0.4, 10)]),
    ((0.1, 1), ((0.1, 0.4), (1, 5)), [(0.03, 1)]),  # no K below 1
    ((0.1, 5), ((0.1, 0.4), (1, 5)), [(0.03, 5), (0.1, 10)]),
    ((0.4, 1), ((0.1, 0.4), (1, 5)), [(0.8, 1)]),
    ((0.1, 5), ((0.03, 0.1, 0.4), (1, 5, 10)), []),  # inside on both axes
    ((0.8, 10), ((0.4, 0.8), (5, 10)), []),  # the ladders end there
    ((0.4, 5), ((0.4,), (5,)), [(0.8, 5), (0.1, 5), (0.4, 10), (0.4, 1)]),  # one value tried: both ways
])
def test_widen_adds_the_ladder_neighbour_beyond_each_edge_the_best_point_lies_on(best, tried, expected):
    scores = _scores(best, *tried)
    assert sel.select(scores) == best
    assert sel.widen(scores, ALPHAS, KS) == expected


def test_open_edges_name_the_directions_the_grid_did_not_look():
    scores = _scores((0.8, 10), (0.4, 0.8), (5, 10))
    assert sel.open_edges(scores, (0.8, 10), ALPHAS, KS) == ["alpha above 0.8", "K above 10"]  # the ladders end
    assert sel.open_edges(_scores((0.1, 1)), (0.1, 1), ALPHAS, KS) == ["alpha below 0.1"]  # no K below 1
    assert sel.open_edges(_scores((0.1, 5)), (0.1, 5), ALPHAS, KS) == ["alpha below 0.1", "K above 5"]


def _cfg(**kw):
    cfg = sel.config()
    cfg.update(kw)
    return cfg


@pytest.mark.parametrize("peak, rounds, chosen, points", [
    ((0.4, 5), 2, (0.4, 5), 6),  # widened to (0.8, 5) and (0.4, 10): both worse
    ((0.8, 10), 2, (0.8, 5), 6),  # two steps away: (0.8, 5) and (0.4, 10) tie, fewer steps win
    ((0.8, 10), 3, (0.8, 10), 8),  # a third round adds (0.8, 10) and (0.8, 1)
    ((0.8, 10), 1, (0.4, 5), 4),  # no widening
    ((0.1, 1), 2, (0.1, 1), 5),  # only (0.03, 1) is untried next to it
    ((0.03, 1), 2, (0.03, 1), 5),
])
def test_grid_widens_round_by_round_and_selects_on_the_scores(peak, rounds, chosen, points):
    cfg = _cfg(grid_rounds=rounds)
    surface = _scores(peak, ALPHAS, KS)
    done = sel.grid(cfg, surface.get)
    assert done.chosen == chosen and len(done.rounds) == points
    assert done.scores == {p: surface[p] for p in done.rounds}
    assert max(done.rounds.values()) <= rounds


def test_a_grid_waits_for_its_points_before_widening_or_choosing():
    cfg = _cfg()
    surface = _scores((0.4, 5), ALPHAS, KS)
    first = sel.grid(cfg, lambda p: None if p == (0.1, 1) else surface[p])
    assert first.chosen is None and set(first.rounds.values()) == {1} and len(first.scores) == 3
    second = sel.grid(cfg, lambda p: surface[p] if first.rounds.get(p) == 1 else None)
    assert second.chosen is None and sorted(p for p, r in second.rounds.items() if r == 2) == [(0.4, 10), (0.8, 5)]


def _commit(cfg, unit, val, test, seconds=0.01):
    """A synthetic result: ``val`` and ``test`` per episode, at the best checkpoint with early
    stopping, where the last step's validation accuracy is ``100 - val`` (a choice made on it
    would be the opposite one)."""
    path = mnist1d.result_path(cfg, unit.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    early = dict(val_accuracy_early=val, accuracy_early=test, val_accuracy=[100 - x for x in val]) \
        if cfg.get("early_stopping") else dict(val_accuracy=val)
    path.write_text(json.dumps(dict(name=unit.name, run_key=mnist1d.run_key(cfg), activation=unit.activation,
                                    shots=unit.shots, method=unit.method, kink_guard=False, freeze_pattern=unit.frozen,
                                    seed=unit.seed, accuracy=test, curve=[[cfg["meta_steps"], 50.0]], **early,
                                    seconds_per_step=seconds, train_seconds=seconds * cfg["meta_steps"],
                                    environment=dict(device="cpu"))))


@pytest.mark.parametrize("early_stopping", [True, False])
def test_the_grid_chooses_on_validation_episodes_never_on_test_episodes(tmp_path, early_stopping):
    """With early stopping on the best checkpoint's validation accuracy, else the last step's."""
    cfg = _cfg(methods=["reptile"], activations=["gelu"], frozen_activations=[], results_dir=str(tmp_path),
               early_stopping=early_stopping)
    v = sel.Variant("gelu", "reptile")
    for a in cfg["grid_alphas"]:
        for k in cfg["grid_inner_steps"]:
            val = [70.0, 80.0] if (a, k) == (0.1, 5) else [40.0, 50.0]
            test = [90.0, 90.0] if (a, k) == (0.4, 1) else [30.0, 30.0]  # the test split would pick (0.4, 1)
            _commit(sel.train_config(cfg, a, k, grid=True), v.unit(5, 0), val, test)
    state = sel.grids(cfg)
    assert state[v].chosen is None and sorted(p for p, r in state[v].rounds.items() if r == 2) == [(0.03, 5), (0.1, 10)]
    for p in ((0.03, 5), (0.1, 10)):
        _commit(sel.train_config(cfg, *p, grid=True), v.unit(5, 0), [60.0, 60.0], [99.0, 99.0])
    assert sel.grids(cfg)[v].chosen == (0.1, 5)


def _full_run(v, shots, seed, val):
    return dict(activation=v.activation, shots=shots, method=v.method, kink_guard=False, freeze_pattern=v.frozen,
                seed=seed, val_accuracy_early=val, val_accuracy=[100 - x for x in val])


def test_carry_over_compares_the_full_runs_at_the_chosen_and_the_shared_setting_on_validation():
    cfg = _cfg(early_stopping=True, shots=[1, 5], seeds=[0, 1, 2])
    kept, lost, same = sel.Variant("gelu", "maml"), sel.Variant("gelu", "reptile"), sel.Variant("gelu", "fo_maml")
    shared = (cfg["alpha"], cfg["inner_steps"])
    state = {v: sel.Grid({}, {shared: 50.0, (0.1, 5): 60.0}, chosen) for v, chosen in
             ((kept, (0.1, 5)), (lost, (0.1, 5)), (same, shared))}
    gap = {kept: 3.0, lost: -4.0}  # chosen minus shared, per episode, in the full runs
    rng = np.random.default_rng(0)
    tables = {"shared": [], "best": []}
    for v in (kept, lost):
        for s in cfg["shots"]:
            for seed in cfg["seeds"]:
                base = list(rng.uniform(30, 70, size=40))
                tables["shared"].append(_full_run(v, s, seed, base))
                tables["best"].append(_full_run(v, s, seed, [x + gap[v] for x in base]))
    carried = sel.carry_over(cfg, state, tables)
    assert set(carried) == {f"gelu/{s}shot/{m}" for s in (1, 5) for m in ("maml", "reptile")}  # not fo_maml's
    for key, c in carried.items():
        assert c["grid_difference"] == 10.0 and c["chosen"] == [0.1, 5]
        assert c["full_difference"]["mean"] == pytest.approx(gap[kept if "maml" in key else lost])
    assert sel._carry_over_claim(cfg, carried)["verdict"] == "refuted"
    assert sel._carry_over_claim(cfg, {k: c for k, c in carried.items() if "maml" in k})["verdict"] == "confirmed"
    final = sel.carry_over(dict(cfg, early_stopping=False), state, tables)  # v2 runs: the last step's accuracy
    assert final["gelu/5shot/maml"]["full_difference"]["mean"] == pytest.approx(-3.0)


def test_run_keys_differ_per_setting_and_the_shared_runs_are_mnist1ds():
    cfg = sel.config()
    assert mnist1d.run_key(sel.train_config(cfg, cfg["alpha"], cfg["inner_steps"])) == \
        mnist1d.run_key(mnist1d.config())
    keys = {mnist1d.run_key(sel.train_config(cfg, a, k, grid=g)) for a in ALPHAS for k in KS for g in (False, True)}
    assert len(keys) == len(ALPHAS) * len(KS) * 2


@pytest.mark.parametrize("bad, message", [
    (dict(grid_alphas=[0.2]), "grid_alphas must be a non-empty subset of alpha_ladder"),
    (dict(inner_steps_ladder=[5, 1]), "inner_steps_ladder must be positive and strictly increasing"),
    (dict(grid_rounds=0), "grid_rounds must be an integer >= 1"),
    (dict(methods=["sgd"]), "methods must be among"),
])
def test_bad_selection_settings_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        sel._check(_cfg(**bad))


# ---------------------------------------------------------------------------------------------
# cost


def test_campaign_cost_adds_steps_and_evaluated_episodes_of_each_pending_unit(tmp_path):
    cfg = _cfg(methods=["maml"], activations=["gelu"], frozen_activations=[], shots=[1, 5], seeds=[0, 1], grid_rounds=2,
               grid_meta_steps=100, meta_steps=200, eval_every=30, curve_episodes=5, eval_episodes=10,
               results_dir=str(tmp_path), early_stopping=False)
    seconds = {("gelu", "maml", False, k, s): (0.1 * k * s, 0.01) for k in KS for s in (1, 5)}
    # grid: 100 steps, curves at 30, 60, 90, 100 (20 episodes) + 2 x 10 = 40 episodes; full: 200 steps, 7 curves
    grid_unit = {1: 100 * 0.5 + 40 * 0.01, 5: 100 * 2.5 + 40 * 0.01, 10: 100 * 5.0 + 40 * 0.01}
    full_unit = {(k, s): 200 * 0.1 * k * s + (7 * 5 + 20) * 0.01 for k in KS for s in (1, 5)}
    cost = sel.campaign_cost(cfg, seconds)
    known = 2 * grid_unit[1] + 2 * grid_unit[5] + 2 * (full_unit[1, 1] + full_unit[1, 5])  # grid 2x2, shared 2x2
    assert cost["known_units"] == 8 and cost["known"] == pytest.approx(known / 3600)
    assert cost["widening"] == pytest.approx(2 * grid_unit[10] / 3600)  # one round left, at most 2 points at K=10
    assert cost["best_units_unknown"] == 4
    assert cost["best_low"] == pytest.approx(2 * (full_unit[1, 1] + full_unit[1, 5]) / 3600)
    assert cost["best_high"] == pytest.approx(2 * (full_unit[10, 1] + full_unit[10, 5]) / 3600)
    assert sel.cost_keys(cfg) <= set(seconds)
    assert "process-hours" in sel.describe_cost(cost)
    full = sel.train_config(cfg, 0.4, 1)  # early stopping evaluates the test and validation sets again (at most)
    assert mnist1d._evaluations(dict(full, early_stopping=True)) == mnist1d._evaluations(full) + 2 * 10


# ---------------------------------------------------------------------------------------------
# claims on synthetic records


def _results(accuracy: dict, seeds=(0, 1, 2), key="accuracy") -> list[dict]:
    """Run results of ``{(activation, shots, method, frozen): per-episode accuracies}`` (per seed, noise added)
    under ``key``; the other of ``accuracy`` and ``accuracy_early`` is 50% everywhere, a decoy."""
    rng = np.random.default_rng(0)
    other = "accuracy_early" if key == "accuracy" else "accuracy"
    return [{"activation": a, "shots": s, "method": m, "kink_guard": False, "freeze_pattern": f, "seed": seed,
             key: (np.asarray(acc) + rng.normal(0, 0.01, len(acc))).tolist(), other: [50.0] * len(acc)}
            for (a, s, m, f), acc in accuracy.items() for seed in seeds]


@pytest.mark.parametrize("early_stopping, key", [(True, "accuracy_early"), (False, "accuracy")])
def test_claims_compare_fob_with_maml_and_the_better_first_order_baseline_in_each_table(early_stopping, key):
    cfg = _cfg(activations=["relu"], shots=[1, 5], methods=list(sel.METHODS), early_stopping=early_stopping)
    base = np.linspace(40, 80, 200)
    state = {v: sel.Grid({(0.1, 5): 1}, {(0.1, 5): 50.0}, (0.1, 5)) for v in sel.variants(cfg)}
    shared, best = {}, {}
    for s in cfg["shots"]:
        for m, f in [("maml", False), ("fob_forward", False), ("fob_forward", True)]:
            shared[("relu", s, m, f)] = best[("relu", s, m, f)] = base
        shared[("relu", s, "fob_symmetric", False)] = base - 10  # plain FO-B far below MAML at the shared setting
        best[("relu", s, "fob_symmetric", False)] = base + 0.2  # and tracking it at its best
        shared[("relu", s, "fob_symmetric", True)] = best[("relu", s, "fob_symmetric", True)] = base
        shared[("relu", s, "fo_maml", False)], shared[("relu", s, "reptile", False)] = base - 30, base - 20
        best[("relu", s, "fo_maml", False)], best[("relu", s, "reptile", False)] = base + 5, base - 1
    tables = {"shared": _results(shared, key=key), "best": _results(best, key=key)}
    claims = {c["id"]: c for c in sel._claims(cfg, state, tables)}
    verdicts = {k: c["verdict"] for k, c in claims.items()}
    assert verdicts == {
        "shared_fob_tracks_maml_relu": "refuted", "shared_fob_above_first_order_relu": "confirmed",
        "shared_fob_frozen_tracks_maml_relu": "confirmed", "shared_fob_frozen_above_first_order_relu": "confirmed",
        "best_fob_tracks_maml_relu": "confirmed", "best_fob_above_first_order_relu": "refuted",
        "best_fob_frozen_tracks_maml_relu": "confirmed", "best_fob_frozen_above_first_order_relu": "refuted"}
    assert "vs reptile (0.4, K 1)" in claims["shared_fob_above_first_order_relu"]["measured"]
    assert "vs fo_maml (0.1, K 5)" in claims["best_fob_above_first_order_relu"]["measured"]
    assert f"({sel.stopping(cfg)} test accuracy)" in claims["best_fob_tracks_maml_relu"]["statement"]


# ---------------------------------------------------------------------------------------------
# runs end to end


def test_quick_run_end_to_end_then_again_without_training(tiny, tmp_path, monkeypatch):
    results = execute("select", out=tmp_path / "out", overrides=tiny, echo=lambda *_: None)
    back = load_results(tmp_path / "out" / "mnist1d_select.json")
    assert back["experiment"] == "mnist1d_select"
    assert all((tmp_path / "out" / f).stat().st_size > 0 for f in ("mnist1d_select.png", "mnist1d_select_grid.png"))
    grid = [r for r in back["records"] if r["kind"] == "grid"]
    assert grid and all(r["split"] == "validation" and r["meta_steps"] == tiny["grid_meta_steps"] for r in grid)
    for v in sel.variants(tiny):
        rows = [r for r in grid if r["method"] == v.method and r["activation"] == v.activation]
        assert {(r["alpha"], r["inner_steps"]) for r in rows if r["round"] == 1} == {(0.1, 1), (0.4, 1)}
        top = max(r["accuracy"] for r in rows)
        chosen = [r for r in rows if r["chosen"]]
        assert len(chosen) == 1 and chosen[0]["accuracy"] == top
        c = back["summary"]["chosen"][v.key]
        assert (c["alpha"], c["inner_steps"]) == (chosen[0]["alpha"], chosen[0]["inner_steps"])
        finals = [r for r in back["records"] if r["kind"] == "final" and r["method"] == v.method]
        assert {(r["table"], r["alpha"], r["inner_steps"]) for r in finals} == \
            {("shared", 0.4, 1), ("best", c["alpha"], c["inner_steps"])}
        assert all(r["split"] == "test" for r in finals)
    text = sel.describe_selection(tiny, sel.grids(tiny))
    for key, c in back["summary"]["chosen"].items():
        assert f"{key:<26} alpha {c['alpha']:g}, K {c['inner_steps']}: {c['validation_accuracy']:.1f}%" in text
    costs = [r for r in back["records"] if r["kind"] == "cost"]
    assert costs and all(r["seconds_per_step"] > 0 and r["peak_bytes"] > 0 for r in costs)
    setting = lambda rows: {(r["alpha"], r["inner_steps"], r["shots"], tuple(r["tables"])) for r in rows}  # noqa: E731
    hvp = [r for r in costs if r["method"] == "maml_hvp"]  # costed at MAML's settings, which it shares
    assert hvp and setting(hvp) == setting(r for r in costs if r["method"] == "maml")
    carry = {"selection_carries_over"} if back["summary"]["carry_over"] else set()  # when a choice is not the shared
    assert {c["id"] for c in back["claims"]} == {"shared_fob_tracks_maml_gelu", "best_fob_tracks_maml_gelu", *carry}
    assert back["summary"]["campaign"]["devices"] == ["cpu"]
    # the estimate's episode count is what a run evaluates
    result = sel.committed(sel.train_config(tiny, 0.4, 1), sel.Variant("gelu", "maml").unit(5, 0))
    assert mnist1d._evaluations(sel.train_config(tiny, 0.4, 1)) == len(result["curve"]) * tiny["curve_episodes"] + \
        sum(len(result[k]) for k in ("accuracy", "val_accuracy", "accuracy_early", "val_accuracy_early"))
    # everything is committed: a second run (fresh cache) trains nothing and gives the same numbers
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh-cache"))
    monkeypatch.setattr(mnist1d, "meta_gradient_batch", _never_trains)
    assert sel.pending(tiny) == []
    again = sel.run(dict(tiny, checkpoint_dir=None), echo=_never_trains)
    numbers = lambda res: [r for r in res["records"] if r["kind"] in ("grid", "final", "curve")]  # noqa: E731
    assert numbers(again) == numbers(results)
    # --committed: nothing trained or timed, the cost rows of the results file beside the runs reused
    monkeypatch.setattr(sel, "cost", _never_trains)
    with pytest.raises(ValueError, match="no cost rows|is none"):
        sel.run(dict(tiny, committed_only=True))
    (tmp_path / "mnist1d_select.json").write_text((tmp_path / "out" / "mnist1d_select.json").read_text())
    assembled = sel.run(dict(tiny, committed_only=True))
    assert [r for r in assembled["records"] if r["kind"] == "cost"] == costs and "committed_only" not in \
        assembled["config"] and assembled["claims"] == back["claims"]


def test_plan_lists_the_pending_units_and_the_cost(tiny, capsys):
    status = sel.main(["--plan", "--quick", "--results-dir", tiny["results_dir"]])
    out = capsys.readouterr().out
    assert status == 0 and "process-hours" in out
    assert "6 units: 0 committed, 0 broken, 6 pending" in out
    assert out.count("grid round 1") == 4 and out.count("shared ") == 2
    assert out.count("grid pending: 0 of 2 points trained") == 2  # gelu/maml, gelu/fob_symmetric
    assert cli(["select", "--quick", "--plan", "--methods", "maml"]) == 0
    assert "grid round 1" in capsys.readouterr().out


def test_the_grid_goes_first_within_the_lowest_seed(tiny):
    todo = [r.job for r in sel.jobs(tiny)]
    batch = sel._next_seed(todo)
    stages = [j.stage.startswith("grid") for j in batch]
    assert any(stages) and not all(stages) and stages == sorted(stages, reverse=True)
    assert {j.args[1].seed for j in batch} == {min(j.args[1].seed for j in todo)}


@pytest.mark.slow
def test_parallel_workers_commit_the_same_runs_as_one_process(tiny, tmp_path, monkeypatch):
    serial = sel.run(dict(tiny), echo=lambda *_: None)
    monkeypatch.setattr(sel, "config", lambda **kw: dict(tiny, results_dir=str(tmp_path / "parallel")))
    assert sel.main(["--workers", "2", "--results-dir", str(tmp_path / "parallel")]) == 0
    parallel = sel.run(dict(tiny, results_dir=str(tmp_path / "parallel")), echo=_never_trains)
    def numbers(res):  # everything but the wall-clock times
        return [{k: v for k, v in r.items() if k != "seconds_per_step"} for r in res["records"]
                if r["kind"] in ("grid", "final", "curve")]

    assert numbers(parallel) == numbers(serial)


@given(st.lists(st.floats(-20, 20), min_size=2, max_size=8), st.integers(5, 40))
def test_seed_interval_is_the_t_interval_over_seed_means(means, episodes):
    """Against scipy's t interval on the seed means (n - 1 degrees of freedom), whatever the
    episodes' spread inside each seed."""
    from scipy import stats

    rng = np.random.default_rng(len(means))
    per_seed = [m + rng.normal(0, 3, episodes) - 0 for m in means]
    seed_means = np.array([a.mean() for a in per_seed])
    got = mnist1d.seed_interval(per_seed)
    if seed_means.std(ddof=1) == 0:
        assert got["ci_low"] == pytest.approx(got["ci_high"])
        return
    low, high = stats.t.interval(0.95, len(means) - 1, loc=seed_means.mean(), scale=stats.sem(seed_means))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((low, high))
    assert got["level"] == f"t over {len(means)} seeds"


def test_one_seed_falls_back_to_the_episodes_and_says_so():
    got = mnist1d.seed_interval([np.linspace(0, 10, 50)])
    assert got["level"].startswith("episodes of one seed") and got["ci_low"] < 5 < got["ci_high"]


def test_a_claim_the_old_bootstrap_would_decide_otherwise_says_so_with_its_numbers():
    """Three seeds whose paired differences are +0.5, +3 and +1 points: the bootstrap over seeds
    and episodes stays above -1 (confirmed); the t interval over three seed means reaches
    below -1 (inconclusive), and the claim quotes both."""
    cfg = _cfg(activations=["relu"], shots=[5], methods=["maml", "fo_maml", "fob_symmetric"], early_stopping=True)
    cfg.update(frozen_activations=[])
    state = {v: sel.Grid({(0.4, 1): 1}, {(0.4, 1): 50.0}, (0.4, 1)) for v in sel.variants(cfg)}
    base = np.linspace(40, 80, 200)
    runs = []
    for seed, gap in enumerate((0.5, 3.0, 1.0)):
        for m, shift in (("maml", 0.0), ("fo_maml", 0.0), ("fob_symmetric", gap)):
            runs.append({"activation": "relu", "shots": 5, "method": m, "kink_guard": False, "freeze_pattern": False,
                         "seed": seed, "accuracy_early": (base + shift).tolist(), "accuracy": (base + shift).tolist()})
    tables = {"shared": runs, "best": runs}
    claim = {c["id"]: c for c in sel.claims(cfg, state, tables)}["shared_fob_above_first_order_relu"]
    assert claim["verdict"] == "inconclusive"
    assert "with a bootstrap over seeds and episodes instead" in claim["measured"] and claim["measured"].endswith(
        "confirmed")
    assert {c["verdict"] for c in sel._claims(cfg, state, tables, paired=mnist1d._paired)
            if c["id"] == "shared_fob_above_first_order_relu"} == {"confirmed"}


@pytest.mark.parametrize("mean, bound", [(3.9, -1.0), (0.8, 1.0), (-3.1, -1.0)])
def test_seeds_to_decide_is_the_first_count_whose_interval_clears_the_bound(mean, bound):
    """Against the t interval itself: at the returned count the interval at the same sd stays
    on one side of the bound, one seed fewer it does not."""
    from scipy import stats

    n, sd = 3, 2.5
    half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    need = sel.seeds_to_decide(mean, half, n, bound)
    clears = lambda m: stats.t.ppf(0.975, m - 1) * sd / np.sqrt(m) < abs(mean - bound)  # noqa: E731
    assert need > n and clears(need) and not clears(need - 1)
    assert sel.seeds_to_decide(bound, half, n, bound) is None


def test_the_committed_select_verdicts_that_hinge_on_seeds_are_listed_with_their_need():
    """Every inconclusive claim of the committed results whose interval crosses a bound has a
    line with the seeds that would decide it, at the measured sd and its upper confidence limit."""
    from pathlib import Path

    results = load_results(Path(__file__).resolve().parents[1] / "figures" / "mnist1d_select.json")
    lines = sel.seed_needs(sel.config(), results)
    assert "2 degrees of freedom" in lines[0]
    open_ = {c["id"] for c in results["claims"] if c["verdict"] == "inconclusive"}
    assert {line.split()[0] for line in lines[1:]} == open_ and all("at its upper limit" in x for x in lines[1:])
    assert lines[-1].strip() in results["summary"]["highlights"][-1]
