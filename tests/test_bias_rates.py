"""The bias-rate experiment: schema, records, computed verdicts, batched oracles, determinism."""
import copy
from pathlib import Path

import numpy as np
import pytest

from fobtheory.experiments import bias_rates as br
from fobtheory.experiments import execute
from fobtheory.rates import fit_rate
from fobtheory.results import VERDICTS, load_results

FIELDS = ("family", "task", "estimator", "scheme", "J", "K", "delta", "eps", "error")
CLAIMS = {"forward_rate", "symmetric_rate", "order4_rate", "quadratic_exactness", "eps_rates", "float64_floor",
          "baselines_irreducible", "complex_step_beyond_floor", "symbolic_constants", "kinks_frozen_patterns",
          "centred_stencils_equal_delta", "centred_stencils_equal_cost"}
FIGURE = Path(__file__).resolve().parents[1] / "figures" / "bias_rates.json"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bias")
    execute("bias", quick=True, out=out, echo=lambda *_: None)
    return out, load_results(out / "bias_rates.json")


def _fit(summary, **key):
    return next(f for f in summary["fits"] if all(f[k] == v for k, v in key.items()))


def test_quick_run_writes_a_valid_results_file_and_a_figure(quick):
    out, results = quick
    assert (out / "bias_rates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["experiment"] == "bias_rates"
    assert {c["id"] for c in results["claims"]} == CLAIMS
    assert all(c["verdict"] in VERDICTS and c["measured"] for c in results["claims"])
    records = results["records"]
    assert all(set(FIELDS) <= r.keys() and r["error"] >= 0 for r in records)
    regime1 = [r for r in records if "point" not in r and r["delta"] is not None]
    regime2 = [r for r in records if r.get("point") in ("best", "prescribed")]
    assert regime1 and regime2
    assert all(r["eps"] == 0 for r in regime1) and all(r["eps"] > 0 for r in regime2)
    assert {r["estimator"] for r in records} >= {"fob_forward", "fob_symmetric", "fob_complex", "fo_maml", "reptile"}


def test_fits_can_be_redone_from_the_records(quick):
    _, results = quick
    key = dict(family="logistic", scheme="forward", J=1, K=1)
    rows = [r for r in results["records"] if "point" not in r and all(r[k] == v for k, v in key.items())]
    deltas = sorted({r["delta"] for r in rows})
    errors = {(r["task"], r["delta"]): r["error"] for r in rows}
    E = np.array([[errors[t, d] for d in deltas] for t in sorted({r["task"] for r in rows})])
    cfg = results["config"]
    refit = fit_rate(deltas, np.maximum(E, br.RESOLUTION), floor_factor=cfg["floor_factor"],
                     max_error=cfg["max_error"], n_boot=cfg["n_boot"], seed=cfg["seed"])
    assert refit.slope == pytest.approx(_fit(results["summary"], **key)["slope"], abs=1e-3)


def test_quick_run_shows_the_rates_on_logistic_tasks(quick):
    """Must show: slopes 1 and 2 (+-0.1) in delta, 1/2 and 2/3 (+-0.08) in eps; exact
    estimators (quadratic, J = 1) have no truncation window."""
    summary = quick[1]["summary"]
    for scheme, slope in (("forward", 1), ("symmetric", 2)):
        for J in (1, "solve"):
            assert abs(_fit(summary, family="logistic", scheme=scheme, J=J, K=1)["slope"] - slope) <= 0.1
        exact = _fit(summary, family="quadratic", scheme=scheme, J=1, K=1)
        assert exact["window"] is None and "no truncation window" in exact["reason"]
    for e in (e for e in summary["eps"] if e["family"] == "logistic"):
        assert abs(e["best"]["slope"] - e["expected_slope"]) <= 0.08


def test_verdicts_are_computed_from_the_numbers(quick):
    _, results = quick
    summary, cfg = results["summary"], results["config"]
    assert [c["verdict"] for c in br.make_claims(summary, cfg)] == [c["verdict"] for c in results["claims"]]
    changed = copy.deepcopy(summary)
    for f in changed["fits"]:
        if f["scheme"] == "forward" and f["window"]:
            f.update(slope=1.5, ci_low=1.45, ci_high=1.55)
    for e in changed["eps"]:
        e["best"].update(slope=0.3, ci_low=0.28, ci_high=0.32)
    for b in changed["baselines"]:
        b.update(error=1e-17, ci_low=1e-17, ci_high=1e-17)
    verdicts = {c["id"]: c["verdict"] for c in br.make_claims(changed, cfg)}
    assert verdicts["forward_rate"] == verdicts["eps_rates"] == verdicts["baselines_irreducible"] == "refuted"


def test_noise_has_the_prescribed_norm_on_every_row(rng):
    scale = np.array([1e-3, 2e-3])
    noisy = br._noisy(lambda P: np.ones_like(P), scale, np.random.default_rng(0))
    out = noisy(np.zeros((6, 5)))
    np.testing.assert_allclose(np.linalg.norm(out - 1, axis=1), np.tile(scale, 3), rtol=1e-12)
    assert not np.allclose(out, noisy(np.zeros((6, 5))))  # fresh directions per call


def test_optimal_step_minimises_the_error_model():
    deltas = np.geomspace(1e-8, 1, 200001)
    for C, gain, eps, p in ((0.3, 1.4, 1e-10, 1), (0.05, 0.7, 1e-6, 2), (2.0, 0.9, 1e-12, 4)):
        model = C * deltas**p + gain * eps / deltas
        star, best = br.optimal_step(C, gain, eps, p)
        assert star == pytest.approx(deltas[np.argmin(model)], rel=1e-3)
        assert best == pytest.approx(model.min(), rel=1e-6)


def _tiny(seed):
    cfg = br.config(quick=True, seed=seed)
    cfg.update(n_tasks=2, dim=3, deltas=br.log_grid(1e-7, 1e-1, 1), n_boot=20, eps=br.log_grid(1e-12, 1e-3, 1 / 3),
               sweeps=[{"families": ["logistic"], "schemes": ["forward"], "J": [1], "K": [1]}],
               eps_schemes=["forward"], constant_schemes=["forward"], constant_J=[1], baseline_K=[1])
    return cfg


def test_same_seed_same_numbers():
    first, again, other = (br.run(_tiny(seed))["records"] for seed in (3, 3, 4))
    assert first == again
    assert first != other


@pytest.mark.parametrize("key, value, message", [
    ("n_tasks", 1, "n_tasks must be an integer >= 2"),
    ("eps", [1e-4, 1e-3, 1e-2, 2.0], r"eps must lie in \(0, 1\)"),
    ("deltas", [1e-3, 1e-4, 1e-2, 1e-1], "deltas must be an increasing list of at least 4 numbers"),
    ("sweeps", [{"families": ["gaussian"], "schemes": ["forward"], "J": [1], "K": [1]}], "family must be one of"),
    ("sweeps", [{"families": ["logistic"], "schemes": ["forward"], "J": [0], "K": [1]}], r"J \(fixed_point_iters\)"),
    ("eps_schemes", ["complex"], "eps_schemes must be real stencils"),
])
def test_bad_config_values_name_the_parameter(key, value, message):
    cfg = br.config(quick=True)
    cfg[key] = value
    with pytest.raises(ValueError, match=message):
        br.run(cfg)


def test_committed_results_show_the_rates_on_logistic_tasks():
    """The default run behind figures/bias_rates.png (must show: +-0.1 of 1 and 2 in delta for
    every J and K, +-0.08 of 1/2 and 2/3 in eps), under 5 MB, every claim confirmed."""
    results = load_results(FIGURE)
    assert results["config"]["n_tasks"] == 20 and results["config"]["dim"] == 10
    logistic = [f for f in results["summary"]["fits"] if f["family"] == "logistic"]
    for scheme, slope in (("forward", 1), ("symmetric", 2)):
        fits = [f for f in logistic if f["scheme"] == scheme]
        assert fits and all(abs(f["slope"] - slope) <= 0.1 for f in fits)
    eps = [e for e in results["summary"]["eps"] if e["family"] == "logistic"]
    assert len(eps) == 2 and all(abs(e["best"]["slope"] - e["expected_slope"]) <= 0.08 for e in eps)
    assert FIGURE.stat().st_size < 5e6
    assert all(c["verdict"] == "confirmed" for c in results["claims"])


@pytest.mark.slow
def test_default_run_confirms_every_claim(tmp_path):
    results = execute("bias", out=tmp_path, echo=lambda *_: None)
    assert all(c["verdict"] == "confirmed" for c in results["claims"])
    assert (tmp_path / "bias_rates.json").stat().st_size < 5e6
