"""The convergence experiment: stacked oracles against the tasks' own, training runs, and
the quick run's schema."""
import numpy as np
import pytest

from fobtheory.estimators import fo_maml, fob_maml, reptile
from fobtheory.experiments import execute
from fobtheory.experiments import optimize as experiment
from fobtheory.problems import logistic_tasks
from fobtheory.results import VERDICTS, load_results


@pytest.fixture(scope="module")
def logistic():
    return logistic_tasks(6, 5, seed=4)


def _per_task(estimator, task, x):
    run = dict(alpha=task.alpha)
    if estimator == "exact":
        return task.meta_grad(x)
    if estimator.startswith("fob_"):
        return fob_maml(x, task.inner_grad, task.outer_grad, delta=1e-3, scheme=estimator[4:], **run)
    return {"fo_maml": fo_maml, "reptile": reptile}[estimator](x, task.inner_grad, task.outer_grad, **run)


@pytest.mark.parametrize("estimator", experiment.ESTIMATORS)
@pytest.mark.parametrize("family", ["logistic", "cosine"])
def test_batch_estimate_is_the_mean_of_per_task_estimates(estimator, family, logistic):
    problem = logistic if family == "logistic" else experiment.cosine_problem({"n_tasks": 5, "alpha": 0.5}, 1)
    x = np.linspace(-1, 1, problem.dim)
    idx = [3, 1, 4]
    expected = np.mean([_per_task(estimator, problem[i], x) for i in idx], axis=0)
    got = experiment.batch_estimate(estimator, problem, x, idx, delta=1e-3)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def _train(problem, **kw):
    args = dict(lr=0.5, x0=np.zeros(problem.dim), steps=20, meta_batch=2, seed=3, n_records=5, delta=1e-3)
    args.update(kw)
    return experiment.train(problem, args.pop("estimator", "fob_symmetric"), args.pop("optimizer", "sngdm"),
                            args.pop("spec", {"beta": 0.9, "decay": 0.1}), **args)


def test_training_is_deterministic_and_records_the_exact_gradient(logistic):
    a, b = _train(logistic), _train(logistic)
    assert a == b
    assert [r["step"] for r in a] == [0, 5, 10, 15, 20]
    x0 = np.zeros(logistic.dim)
    assert a[0]["grad_norm"] == pytest.approx(np.linalg.norm(logistic.meta_grad(x0)), rel=1e-14)
    assert a[0]["loss"] == pytest.approx(logistic.meta_loss(x0), rel=1e-14)
    assert a[-1]["grad_norm"] < a[0]["grad_norm"] and "estimator_error" in a[-1]
    assert _train(logistic, seed=4) != a  # other meta-batches


def test_divergence_is_detected_and_stops_the_run():
    cosine = experiment.cosine_problem({"n_tasks": 4, "alpha": 0.5}, 0)
    rows = _train(cosine, x0=[10.0], optimizer="sgd", spec={"decay": 1.0}, lr=100.0, steps=200, blowup=1e6)
    assert rows[-1]["diverged"] and rows[-1]["grad_norm"] is None and rows[-1]["step"] < 200


@pytest.mark.parametrize("level, outcome", [
    ({"diverged": 2, "runs": 3, "grad_norm": 1.0, "initial": 10.0}, "diverged"),
    ({"diverged": 1, "runs": 3, "grad_norm": 0.05, "initial": 10.0}, "converged"),
    ({"diverged": 0, "runs": 3, "grad_norm": 0.5, "initial": 10.0}, "stalled"),
])
def test_cosine_outcome(level, outcome):
    assert experiment.cosine_outcome(level, 1e-2) == outcome


def test_quick_experiment_writes_valid_results(tmp_path):
    execute("optimize", quick=True, out=tmp_path, echo=lambda *_: None)
    results = load_results(tmp_path / "optimize.json")
    rows = results["records"]
    assert {"family", "estimator", "optimizer", "seed", "step", "grad_norm", "loss"} <= set(rows[0])
    assert {r["estimator"] for r in rows if r["family"] == "logistic"} == set(experiment.ESTIMATORS)
    assert {r["optimizer"] for r in rows} == set(experiment.OPTIMIZERS)
    assert {r["family"] for r in rows} == {"logistic", "cosine"}
    claims = {c["id"]: c["verdict"] for c in results["claims"]}
    assert set(claims.values()) <= set(VERDICTS)
    assert claims["biased_plateau"] == claims["fob_below_plateau_full"] == "confirmed"
    assert [p.name for p in experiment.plot(results, tmp_path / "again")] == ["optimize.png"]
