"""The MNIST-1D fidelity experiment on tiny configurations: records, tails, verdicts, reuse of runs."""
import numpy as np
import pytest

from fobtheory.experiments import execute
from fobtheory.experiments import mnist1d
from fobtheory.experiments import mnist1d_fidelity as fid
from fobtheory.results import load_results


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("fidelity")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(path / "cache"))
        yield path


@pytest.fixture(scope="module")
def tiny(folder):
    cfg = fid.config(quick=True)
    cfg["training"].update(num_samples=600, queries=3, meta_steps=6, eval_every=3, checkpoint_every=3,
                           eval_episodes=6, curve_episodes=3, meta_batch=2, results_dir=str(folder / "committed"))
    cfg.update(steps=[0, 6], episodes=3, deltas=[1e-4, 1e-2])
    return cfg


@pytest.fixture(scope="module")
def done(tiny, folder):
    return execute("fidelity", out=folder / "out", overrides=tiny, echo=lambda *_: None), folder / "out"


def _errors(rows, **match):
    return [r["error"] for r in rows if r["kind"] == "fidelity" and all(r[k] == v for k, v in match.items())]


def test_records_tails_and_figure(done, tiny):
    results, out = done
    back = load_results(out / "mnist1d_fidelity.json")
    assert (out / "mnist1d_fidelity.png").stat().st_size > 0
    rows = back["records"]
    fields = {"method", "kink_guard", "freeze_pattern", "dtype", "delta", "step", "activation", "episode", "error"}
    assert all(fields <= set(r) for r in rows if r["kind"] == "fidelity")
    estimators = {(r["method"], r["kink_guard"], r["freeze_pattern"]) for r in rows if r["delta"] is not None}
    assert estimators == set(fid.ESTIMATORS)
    assert {r["delta"] for r in rows if r["delta"] is not None} == {1e-5, 1e-4, 1e-3, 1e-2}  # claims' deltas added
    assert {(r["activation"], r["step"], r["dtype"]) for r in rows} == \
        {(a, s, d) for a in ("relu", "gelu", "mixed") for s in (0, 6) for d in ("float32", "float64")}
    for t in back["summary"]["tails"]:  # the tails are the statistics of the per-task records
        errs = _errors(rows, **{k: t[k] for k in ("activation", "dtype", "step", "method", "kink_guard",
                                                   "freeze_pattern", "delta")})
        assert len(errs) == t["tasks"] == tiny["episodes"]
        assert (t["median"], t["p90"], t["max"]) == pytest.approx((np.median(errs), np.percentile(errs, 90), max(errs)))
    ids = {c["id"] for c in back["claims"]}
    assert {"frozen_pattern_max_error_float32", "frozen_pattern_max_error_float64", "plain_relu_tail_at_every_delta",
            "relu_kinks_degrade_finite_differences", "kink_guard_restores_fidelity"} <= ids
    info = [r for r in rows if r["kind"] == "kink_info"]
    assert all(r["kink_retries"] == 0 for r in info if not r["kink_guard"])


def test_frozen_differences_converge_to_maml_at_rate_two_on_kinked_nets(done):
    rows = done[0]["records"]
    for act in ("relu", "mixed"):  # autograd's double backward is the independent truth
        frozen = dict(activation=act, dtype="float64", step=6, method="fob_symmetric", freeze_pattern=True)
        coarse, fine = max(_errors(rows, delta=1e-3, **frozen)), max(_errors(rows, delta=1e-4, **frozen))
        assert fine < 1e-7 and 30 < coarse / fine < 300  # O(delta^2): a decade in delta, two in error
    gelu = dict(activation="gelu", dtype="float64", step=6, method="fob_symmetric", kink_guard=False, delta=1e-4)
    np.testing.assert_allclose(_errors(rows, freeze_pattern=True, **gelu), _errors(rows, freeze_pattern=False, **gelu),
                               rtol=1e-3, atol=1e-12)  # smooth activation: frozen = plain up to roundoff


def test_a_second_run_reuses_the_maml_runs_and_their_snapshots(done, tiny, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(mnist1d, "meta_gradient_batch", never)
    again = fid.run(tiny)
    first = [r for r in done[0]["records"] if r["kind"] == "fidelity"]
    assert [r for r in again["records"] if r["kind"] == "fidelity"] == first
    committed = mnist1d.results_dir(dict(tiny["training"], device="cpu"))
    assert {p.name for p in committed.glob("*-maml-seed0.json")} == \
        {f"{a}-5shot-maml-seed0.json" for a in ("relu", "gelu", "mixed")}


def test_bad_configurations_are_refused(tiny):
    with pytest.raises(ValueError, match="steps must lie in 0..meta_steps=6"):
        fid.run(dict(tiny, steps=[0, 7]))
    with pytest.raises(ValueError, match="activations must be among"):
        fid.run(dict(tiny, activations=["swish"]))


def _tails(frozen_max: float, plain_max: float, guard: float) -> list[dict]:
    """Fabricated tails (median = p90 = max) of every network, dtype, checkpoint, estimator and delta."""
    rows = []
    for act in ("relu", "gelu", "mixed"):
        for dtype in ("float32", "float64"):
            for step in (0, 100):
                for delta in fid._deltas(dict(deltas=[1e-4], training=dict(delta=1e-3))):
                    for est in fid.ESTIMATORS:
                        value = {fid.PLAIN: plain_max if act != "gelu" else 1e-6, fid.FROZEN: frozen_max,
                                 fid.GUARD: guard if act != "gelu" else 1e-6}.get(est, 1.0)
                        rows.append(dict(activation=act, dtype=dtype, step=step, method=est[0], kink_guard=est[1],
                                         freeze_pattern=est[2], delta=delta, median=value, p90=value, max=value))
    return rows


@pytest.mark.parametrize("frozen_max, plain_max, guard, expected",
                         [(1e-12, 5.0, 1.0, "confirmed"), (1e-2, 1e-3, 1e-3, "refuted")])
def test_verdicts_follow_the_tails(frozen_max, plain_max, guard, expected):
    cfg = dict(activations=["relu", "gelu", "mixed"], dtypes=["float32", "float64"], steps=[0, 100], episodes=32,
               deltas=[1e-4], training=dict(delta=1e-3, dtype="float32"))
    verdicts = {c["id"]: c["verdict"] for c in fid._claims(fid._Tails(_tails(frozen_max, plain_max, guard)), cfg)}
    assert verdicts["frozen_pattern_max_error_float32"] == expected
    assert verdicts["frozen_pattern_max_error_float64"] == expected
    assert verdicts["plain_relu_tail_at_every_delta"] == expected
    assert verdicts["frozen_tail_below_guard_tail"] == expected
    assert verdicts["kink_guard_restores_fidelity"] == expected
