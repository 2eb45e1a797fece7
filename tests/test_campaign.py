"""Campaigns: the cluster backend (submitit's local executor) commits runs under figures/-style
paths; damaged result files are named by every reader and listed apart by the plans."""
import json

import pytest

from fobtheory import campaign
from fobtheory.cli import main as cli
from fobtheory.experiments import mnist1d, runs_under
from fobtheory.experiments import mnist1d_paired as paired
from fobtheory.experiments import mnist1d_select as sel
from fobtheory.results import DamagedResult, load_results


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = mnist1d.config(quick=True)
    cfg.update(num_samples=600, queries=3, meta_steps=4, eval_every=2, checkpoint_every=2, eval_episodes=6,
               curve_episodes=3, meta_batch=2, methods=["maml", "fob_symmetric"],
               results_dir=str(tmp_path / "figures" / "mnist1d-runs"))
    return cfg


def test_a_campaign_through_the_cluster_backend_commits_its_runs_under_figures(tiny, tmp_path):
    jobs = mnist1d.jobs(tiny)
    mnist1d.train_all(lambda: mnist1d.jobs(tiny), dict(tiny, executor="submitit-local", workers=2), "tiny",
                      folder=tmp_path / "logs")
    for job in jobs:
        assert job.path.parent == tmp_path / "figures" / "mnist1d-runs" / mnist1d.run_key(tiny)
        result = campaign.read(job.path)
        assert result["name"] == job.path.stem and result["environment"]["device"] == "cpu"
    assert campaign.pending(jobs) == [] and json.loads((jobs[0].path.parent / "config.json").read_text())
    here = mnist1d.train(dict(tiny, results_dir=str(tmp_path / "serial")), mnist1d.load_data(tiny),
                         activation="gelu", shots=5, method="fob_symmetric", seed=0)
    there = campaign.read(mnist1d.result_path(tiny, here["name"]))
    assert there["accuracy"] == here["accuracy"] and there["accuracy_early"] == here["accuracy_early"]


def test_unknown_executors_and_worker_counts_are_refused_by_name(tiny):
    with pytest.raises(ValueError, match="executor must be one of"):
        campaign.run_jobs(mnist1d.jobs(tiny), executor="ray")
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        campaign.run_jobs(mnist1d.jobs(tiny), workers=0)
    for threads in (0, -2, 1.5):
        with pytest.raises(ValueError, match=f"threads must be an integer >= 1, got {threads}"):
            campaign.run_jobs(mnist1d.jobs(tiny), threads=threads)
    with pytest.raises(ValueError, match="--cluster-option must be KEY=VALUE"):
        campaign.cluster_options(["slurm_partition"])
    assert campaign.cluster_options(["timeout_min=90", "slurm_partition=gpu"]) == \
        {"timeout_min": 90, "slurm_partition": "gpu"}


DAMAGE = {"truncated": '{\n "name": "relu-5shot-maml-seed0",\n "accuracy": [61.3, ', "empty": ""}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_run_file_is_named_with_what_to_do(tiny, kind):
    job = mnist1d.jobs(tiny)[0]
    job.path.parent.mkdir(parents=True)
    job.path.write_text(DAMAGE[kind])
    for read in (campaign.read, load_results, lambda p: mnist1d.finished(tiny, job.args[1])):
        with pytest.raises(DamagedResult, match=rf"{job.path}: damaged result file, .*delete it, and it will be"):
            read(job.path)
    assert "empty" in str(pytest.raises(DamagedResult, campaign.read, job.path).value) or kind != "empty"
    assert campaign.status(job) == "broken"
    with pytest.raises(DamagedResult, match=f"cannot be read: {job.path}; delete them"):  # before any training
        mnist1d.run(tiny)


def test_select_plan_lists_damaged_files_as_broken_and_select_names_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = sel.config(quick=True)
    runs = [r for r in sel.jobs(cfg) if r.stage == "grid round 1"][:2]
    for run, text in zip(runs, DAMAGE.values()):
        run.job.path.parent.mkdir(parents=True, exist_ok=True)
        run.job.path.write_text(text)
    assert cli(["select", "--quick", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "0 committed, 2 broken, 4 pending" in out
    broken = out.split("broken (cannot be read; delete each, and it will be recomputed):")[1]
    assert all(f"  {r.job.path}\n" in broken for r in runs)
    assert cli(["select", "--quick", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert all(str(r.job.path) in err for r in runs) and "delete them, and they will be recomputed" in err


def test_out_moves_the_per_run_results_with_the_summary(tmp_path, capsys):
    """``--out`` moves a full campaign's run files too: none is read from, or written to, figures/."""
    for mod, runs in ((mnist1d, "mnist1d-runs"), (sel, "mnist1d-runs"), (paired, "mnist1d_paired-runs")):
        cfg = mod.config(quick=False)
        assert runs_under(cfg, "figures")["results_dir"] == f"figures/{runs}"
        assert runs_under(cfg, tmp_path)["results_dir"] == str(tmp_path / runs)
    assert runs_under({"results_dir": "/elsewhere"}, tmp_path) == {"results_dir": "/elsewhere"}
    assert cli(["paired", "--plan", "--out", str(tmp_path), "--activations", "gelu", "--shots", "1"]) == 0
    out = capsys.readouterr().out
    assert f"results under {tmp_path / 'mnist1d_paired-runs'}" in out and " 0 committed" in out


@pytest.mark.parametrize("error, status", [(None, 0), (ValueError("workers must be >= 1"), 2),
                                           (RuntimeError("1 unit(s) failed: a"), 1)])
def test_campaign_commands_end_with_one_line_and_the_status_of_what_stopped_them(error, status, capsys):
    def body():
        if error is not None:
            raise error
        return "all units committed"

    assert campaign.command("select", body) == status
    out, err = capsys.readouterr()
    assert (out, err) == (("all units committed\n", "") if error is None else
                          ("", f"select: {'error: ' if status == 2 else ''}{error}\n"))


def test_describe_prints_a_second_estimate_beside_the_first(tmp_path):
    jobs = [campaign.Job(tmp_path / "k" / f"u{i}.json", print) for i in range(3)]
    text = campaign.describe(jobs, lambda j: 3600.0, tmp_path, ("at half the time", lambda j: 1800.0))
    assert "pending units: 3.00 process-hours on this machine (one unit per process); 1.50 at half the time" in text
