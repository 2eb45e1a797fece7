"""The paired tracking study: lockstep arms, the noise floor's size, units on the campaign, seed counts."""
import numpy as np
import pytest
import torch
from scipy import stats

from fobtheory import campaign
from fobtheory.experiments import mnist1d_paired as paired


def tiny(tmp_path, **kw):
    cfg = paired.config(quick=True)
    cfg.update(width=8, meta_steps=3, eval_every=1, curve_episodes=5, eval_episodes=5, meta_batch=2,
               results_dir=str(tmp_path / "figures" / "mnist1d_paired-runs"), seeds=[0], **kw)
    return cfg


@pytest.fixture(scope="module")
def quick():
    return paired.run(paired.config(quick=True))


def test_arms_start_equal_and_see_the_same_episodes(tmp_path, monkeypatch):
    cfg = tiny(tmp_path)
    cell = paired.cells(cfg)[0]
    seen = []  # (parameters, batch) of every meta-gradient call
    real = paired._mean_gradient

    def spy(model, batch, **kw):
        seen.append((paired._theta(model), batch, kw["method"]))
        return real(model, batch, **kw)

    monkeypatch.setattr(paired, "_mean_gradient", spy)
    result = paired.train_unit(cfg, cell, 0)
    first = [theta for theta, _, _ in seen[:3]]
    assert all(torch.equal(first[0], t) for t in first[1:])
    batches = {id(b) for _, b, _ in seen}  # the batches stay alive in `seen`: distinct ids, distinct batches
    assert len(batches) == cfg["meta_steps"]  # one batch per step, shared by every arm (and the eps check)
    assert sorted(m for _, _, m in seen[:3]) == ["fob_symmetric", "maml", "maml"]
    assert [c["distance_maml"] for c in result["curve"]] == [0.0] * cfg["meta_steps"]
    assert set(result["accuracy"]) == set(paired.ARMS)


@pytest.mark.parametrize("kind", paired.PERTURBATIONS)
def test_perturbation_has_the_measured_relative_size(kind):
    g = torch.randn(500, dtype=torch.float32)
    g[:100] = 0
    eps = 3e-3
    out = paired.perturb(g, eps, kind, torch.Generator().manual_seed(0))
    assert float((out - g).double().norm() / g.double().norm()) == pytest.approx(eps, rel=1e-3)
    assert torch.all(out[:100] == 0)  # exact zeros (dead units) stay zero, as FO-B's error does there
    profile = paired.error_profile(out, g)
    assert profile["eps"] == pytest.approx(eps, rel=1e-3)
    assert profile["zero_share"] == 0 and profile["zero_fraction"] == pytest.approx(0.2)
    model_share = profile[f"low_share_{kind}"]
    other = profile[f"low_share_{'absolute' if kind == 'relative' else 'relative'}"]
    assert abs(profile["low_share"] - model_share) < abs(profile["low_share"] - other)


def test_unit_lands_under_figures_paths_and_is_skipped_on_rerun(tmp_path, monkeypatch):
    cfg = tiny(tmp_path)
    jobs = paired.jobs(cfg)
    assert len(jobs) == 1
    assert campaign.run_jobs(jobs, executor="serial") == []
    path = jobs[0].path
    assert path.exists() and path.parent.parent == tmp_path / "figures" / "mnist1d_paired-runs"
    assert path.parent.name.startswith(f"v{paired.VERSION}-") and path.name == "gelu-5shot-a0.4-K1-seed0.json"
    assert campaign.pending(paired.jobs(cfg)) == []
    monkeypatch.setattr(paired, "_mean_gradient", lambda *a, **k: pytest.fail("a committed unit was retrained"))
    assert paired.train_unit(cfg, paired.cells(cfg)[0], 0) == campaign.read(path)


@pytest.mark.parametrize("sd", [0.5, 1.5, 3.0])
def test_seeds_needed_against_the_closed_form(sd):
    alpha, power, margin = 0.025, 0.8, 1.0
    n = paired.seeds_needed(sd, margin, alpha=alpha, power=power)
    z = ((stats.norm.ppf(1 - alpha) + stats.norm.ppf(1 - (1 - power) / 2)) * sd / margin) ** 2
    assert max(2, np.ceil(z)) <= n <= np.ceil(z) + 3  # t quantiles cost a few seeds more than the normal ones
    if n > 2:  # the smallest such n
        t = (stats.t.ppf(1 - alpha, n - 2) + stats.t.ppf(1 - (1 - power) / 2, n - 2)) * sd / margin
        assert n - 1 < t ** 2
    # Monte Carlo: TOST (the 95% paired interval inside +-margin) with n seeds at a true difference 0
    rng = np.random.default_rng(0)
    d = rng.normal(0, sd, (20_000, n))
    half = stats.t.ppf(1 - alpha, n - 1) * d.std(1, ddof=1) / np.sqrt(n)
    assert np.mean(np.abs(d.mean(1)) + half <= margin) >= power - 0.03


def test_seeds_needed_rejects_an_impossible_margin():
    with pytest.raises(ValueError, match="margin"):
        paired.seeds_needed(1.0, 1.0, difference=1.0)


def test_seed_plan_reads_the_committed_spread():
    cfg = paired.config()
    seeds = paired.seed_plan(cfg)
    assert set(seeds) == {c.key for c in paired.cells(cfg)}
    for key, p in seeds.items():
        assert cfg["min_seeds"] <= len(p["seeds"]) <= cfg["max_seeds"]
        if len(p["differences"]) >= 2:
            assert p["sd"] == pytest.approx(np.std(p["differences"], ddof=1))


@pytest.mark.parametrize("sd, more", [(0.0, False), (0.8, True), (3.0, False)])
def test_a_cells_first_seeds_can_ask_for_more(tmp_path, sd, more):
    """Stage 2: the committed first seeds' own spread sets the seed count, within max_seeds."""
    cfg = dict(paired.config(), results_dir=str(tmp_path), activations=["gelu"], shots=[5], settings=["shared"])
    cell = paired.cells(cfg)[0]
    assert paired.seed_plan(cfg)[cell.key]["needed_here"] is None  # nothing committed yet
    n = cfg["min_seeds"]
    diffs = sd * np.sqrt(n - 1) * np.array([1.0, -1.0, 0, 0, 0]) / np.sqrt(2)  # sample sd exactly `sd`
    for seed, d in enumerate(diffs):
        campaign.commit(paired.result_path(cfg, cell, seed), {"accuracy": {"maml": [50.0, 52.0],
                                                                           "fob_symmetric": [51.0 + d, 51.0 + d]}})
    p = paired.seed_plan(cfg)[cell.key]
    assert p["sd_here"] == pytest.approx(sd, abs=1e-12)
    needed = paired.seeds_needed(sd, cfg["margin"], alpha=cfg["equivalence_alpha"], power=cfg["power"])
    assert p["needed_here"] == needed and (needed > cfg["max_seeds"]) == (sd == 3.0)
    assert len(p["seeds"]) == (needed if more else n)


def test_quick_config_runs_and_is_inconclusive(quick):
    assert quick["claims"] and all(c["verdict"] == "inconclusive" for c in quick["claims"])
    assert all("not decided at this budget" in c["measured"] for c in quick["claims"])
    kinds = {r["kind"] for r in quick["records"]}
    assert kinds == {"checkpoint", "final"}
    cell = next(iter(quick["summary"]["cells"].values()))
    assert 0 < cell["eps_median"] < 1


def test_plot(quick, tmp_path):
    assert all(p.exists() for p in paired.plot(quick, tmp_path))


def test_the_command_line_picks_cells_and_refuses_an_unknown_setting():
    from fobtheory.cli import build_parser

    args = build_parser().parse_args(["paired", "--settings", "shared", "--activations", "gelu", "--shots", "5"])
    assert [c.key for c in paired.cells(paired.make_config(args))] == ["gelu/5shot/shared"]
    with pytest.raises(ValueError, match="settings must be among"):
        paired.make_config(build_parser().parse_args(["paired", "--settings", "best"]))


def test_committed_only_summarizes_the_committed_units_and_lists_the_pending_cells(tmp_path, monkeypatch):
    cfg = dict(tiny(tmp_path, shots=[1, 5], committed_only=True), seeds=[0, 1])
    with pytest.raises(ValueError, match="no paired unit is committed"):
        paired.run(cfg)
    done = [j for j in paired.jobs(cfg) if j.stage == "gelu/5shot/shared" or j.args[2] == 0]
    assert len(done) == 3 and campaign.run_jobs(done, executor="serial") == []
    monkeypatch.setattr(paired, "_mean_gradient", lambda *a, **k: pytest.fail("committed_only trained a unit"))
    out = paired.run(cfg)
    cells = out["summary"]["cells"]
    assert cells["gelu/5shot/shared"]["seeds"] == [0, 1] and cells["gelu/1shot/shared"]["seeds"] == [0]
    assert out["summary"]["pending"] == {"gelu/1shot/shared": {"committed": 1, "planned": 2}}
    assert out["claims"] and all(c["verdict"] == "inconclusive" for c in out["claims"])
    assert all("1-shot pending (1 of 2 units committed)" in c["measured"] for c in out["claims"])


def test_each_accuracy_claim_quotes_its_own_spread_and_floor(tmp_path):
    """The early-stopped claim's seeds-needed and noise floor come from the early-stopped
    accuracies, the final claim's from the final ones (recomputed here from the unit files)."""
    cfg = dict(tiny(tmp_path, activations=["gelu"], shots=[5], settings=["shared"]), seeds=[0, 1, 2])
    paired.run(cfg)
    cell = paired.cells(cfg)[0]
    rng = np.random.default_rng(0)
    units = []
    for seed in cfg["seeds"]:  # distinct final and early-stopped accuracies in every arm
        u = campaign.read(paired.result_path(cfg, cell, seed))
        for x in ("accuracy", "accuracy_early"):
            u[x] = {a: list(70 + 10 * rng.random(len(v))) for a, v in u[x].items()}
        units.append(campaign.commit(paired.result_path(cfg, cell, seed), u))
    out = paired.run(dict(cfg, committed_only=True))
    s = out["summary"]["cells"][cell.key]
    for x, which in (("", "final"), ("_early", "early-stopped")):
        acc = {a: np.array([np.mean(u[f"accuracy{x}"][a]) for u in units]) for a in paired.ARMS}
        sd = np.std(acc["fob_symmetric"] - acc["maml"], ddof=1)
        assert sd > 0.1
        assert s[f"sd_here{x}"] == pytest.approx(sd, abs=1e-12)
        assert s[f"perturbed_minus_maml{x}"]["mean"] == pytest.approx(np.mean(acc["maml_perturbed"] - acc["maml"]))
        c = next(c for c in out["claims"] if c["id"].endswith("_" + which.split("-")[0]))
        assert f"at this campaign's ({which}): 5-shot {s[f'needed_here{x}']} (sd {sd:.2f})" in c["measured"]
        assert f"MAML perturbed - MAML ({which}, the same test on MAML itself)" in c["measured"]


@pytest.mark.parametrize("needed, needed_here, seeds, note", [
    (18, 10, 10, ""),  # the cell's own spread asked for 10, which ran: not short
    (18, None, 5, "more than max_seeds 16 needed"),  # before stage 2 the selection's need governs
    (5, 91, 5, "more than max_seeds 16 needed"),
    (12, None, 3, "fewer than the 12 needed: seeds given"),
])
def test_the_plan_line_flags_a_cell_by_the_need_that_governs_it(needed, needed_here, seeds, note):
    cfg = paired.config()
    p = dict(differences=[1.0, -1.0], sd=1.41, pooled=False, needed=needed, sd_here=None if needed_here is None else 1.0,
             needed_here=needed_here, seeds=list(range(seeds)))
    line = paired._seed_line("relu/5shot/shared", p, dict(cfg, max_seeds=16))
    assert (f"runs {seeds} ({note}" in line) if note else line.endswith(f"runs {seeds}")
    # two differences: one degree of freedom, said, with the need at the sd's upper confidence limit
    ucl = 1.41 / np.sqrt(stats.chi2.ppf(0.05, 1))
    assert f"sd 1.41 from 1 degree of freedom (its 95% upper confidence limit {ucl:.2f} needs " in line
