"""A quick run's ledger: budget-bound claims are not decided, and no paper claim is confirmed
or refuted on them alone, whatever their verdicts at the small budget."""
import importlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest
from hypothesis import given, settings, strategies as st

from fobtheory import experiments, ledger, plotting
from fobtheory.experiments import claim_lines
from fobtheory.results import VERDICTS, load_results, make_results, write_json_atomic

FIGURES = Path(__file__).resolve().parents[1] / "figures"
# the committed claims, experiment by experiment: the ids and experiments a quick run writes too
COMMITTED = {}
for _path in sorted(FIGURES.glob("*.json")):
    _results = json.loads(_path.read_text())
    COMMITTED[_results["experiment"]] = _results["claims"]
IDS = [c["id"] for claims in COMMITTED.values() for c in claims]
TRAINED_OR_MEASURED_ON_NETWORKS = {"mnist1d", "mnist1d_select", "mnist1d_fidelity", "memory", "memory_scale",
                                   "conv4_fidelity", "mnist1d_paired"}


def write_run(folder, verdicts: dict, quick: bool = True):
    """The committed claims with the given verdicts, as results files of a (quick) run."""
    for name, claims in COMMITTED.items():
        results = make_results(name, {}, [], {"quick": quick}, [dict(c, verdict=verdicts[c["id"]]) for c in claims])
        write_json_atomic(folder / f"{name}.json", results)


@settings(max_examples=25, deadline=None)
@given(st.fixed_dictionaries({i: st.sampled_from(VERDICTS) for i in IDS}))
def test_a_quick_ledger_never_decides_a_paper_claim_on_budget_bound_claims_alone(tmp_path_factory, verdicts):
    folder = tmp_path_factory.mktemp("quick")
    write_run(folder, verdicts)
    rows = ledger.collect(folder)
    experiment = {r["id"]: r["experiment"] for r in rows}
    for paper in ledger.paper_verdicts(rows):
        if paper["verdict"] != ledger.UNDECIDED and paper["verdict"] != "inconclusive":
            grounds = [n for n in paper["numbers"]
                       if ledger.budget_bound(experiment[n["id"]], n["id"]) is None and n["verdict"] == verdicts[n["id"]]
                       and n["verdict"] in ("confirmed", "refuted")]
            assert grounds, (paper["claim"], paper["verdict"], paper["numbers"])
        if all(experiment[n["id"]] in TRAINED_OR_MEASURED_ON_NETWORKS for n in paper["numbers"]):
            assert paper["verdict"] == ledger.UNDECIDED, paper["claim"]  # 4a and 4b
    for r in rows:  # every claim of a network experiment reads undecided, but the meters' exact equality
        assert (r["verdict"] == ledger.UNDECIDED) == (r["experiment"] in TRAINED_OR_MEASURED_ON_NETWORKS
                                                       and r["id"] not in ledger.DECIDED_AT_ANY_BUDGET
                                                       or r["id"] in ledger.BUDGET_BOUND), r["id"]


def test_the_quick_ledger_opens_with_its_banner_and_ends_beside_the_committed_verdicts(tmp_path):
    quick = tmp_path / "quick"
    write_run(quick, {c["id"]: c["verdict"] for claims in COMMITTED.values() for c in claims})
    said = []
    ledger.write_ledger(quick, committed=FIGURES, echo=said.append)
    text = (quick / "CLAIMS.md").read_text()
    assert text.index(ledger.BANNER) < text.index("## The paper's claims") < text.index("## Against the committed")
    assert said[0].startswith(ledger.BANNER)
    against = text.split("## Against the committed results")[1].split("## Every claim")[0]
    assert "| 4a. Practice, accuracy | not decided at this budget | holds in part |" in against
    assert "| 1. Convergence | confirmed | confirmed | agree |" in against
    undecided = sum(r["verdict"] == ledger.UNDECIDED for r in ledger.collect(quick))
    assert f"{len(IDS) - undecided} agree, 0 differ, {undecided} not decided at this budget" in against
    # the same results from a full run: no banner, nothing undecided, no comparison
    write_run(quick, {c["id"]: c["verdict"] for claims in COMMITTED.values() for c in claims}, quick=False)
    ledger.write_ledger(quick, committed=FIGURES, echo=lambda *_: None)
    text = (quick / "CLAIMS.md").read_text()
    assert ledger.BANNER not in text and ledger.UNDECIDED not in text and "Against the committed" not in text


def test_a_decided_claim_that_differs_is_named_and_a_missing_committed_folder_is_said(tmp_path):
    verdicts = {c["id"]: c["verdict"] for claims in COMMITTED.values() for c in claims}
    write_run(tmp_path / "quick", dict(verdicts, forward_rate="refuted"))
    ledger.write_ledger(tmp_path / "quick", committed=FIGURES, echo=lambda *_: None)
    text = (tmp_path / "quick" / "CLAIMS.md").read_text()
    assert "- differs: `forward_rate`: this run refuted, committed confirmed" in text
    assert "| 2. Bias rates | refuted | confirmed | **differ** |" in text
    ledger.write_ledger(tmp_path / "quick", committed=tmp_path / "nowhere", echo=lambda *_: None)
    assert "No comparison with the committed results: no results files" in (tmp_path / "quick" / "CLAIMS.md").read_text()


def _console_verdicts(lines: list[str]) -> dict:
    """{claim id: verdict} from the console's claim lines (``  [verdict] id: measured``)."""
    found = [re.match(r"^  \[\s*([^\]]+)\] (\w+): ", line) for line in lines]
    return {m.group(2): m.group(1) for m in found if m}


@settings(max_examples=10, deadline=None)
@given(st.fixed_dictionaries({i: st.sampled_from(VERDICTS) for i in IDS}), st.booleans())
def test_the_console_says_what_the_ledger_says_claim_by_claim(tmp_path_factory, verdicts, quick):
    folder = tmp_path_factory.mktemp("run")
    write_run(folder, verdicts, quick=quick)
    rows = ledger.collect(folder)
    console = {}
    for path in sorted(folder.glob("*.json")):
        console.update(_console_verdicts(claim_lines(load_results(path))))
    assert console == {r["id"]: r["verdict"] for r in rows}
    assert (ledger.UNDECIDED in console.values()) == quick


def test_a_quick_execute_prints_the_verdicts_of_its_claims_md(tmp_path, monkeypatch):
    """Through execute: the committed memory claims (all budget-bound, some confirmed) as a quick run's."""
    committed = load_results(FIGURES / "memory.json")
    fake = SimpleNamespace(NAME="memory", config=lambda quick, seed, device: {},
                           run=lambda cfg: dict(committed, summary=dict(committed["summary"])), plot=lambda r, out: [])
    monkeypatch.setattr(experiments, "module", lambda command: fake)
    said = []
    experiments.execute("memory", quick=True, out=tmp_path, echo=said.append)
    ledger.write_ledger(tmp_path, committed=None, echo=lambda *_: None)
    claims_md = (tmp_path / "CLAIMS.md").read_text()
    console = _console_verdicts(said)
    assert len(console) == len(committed["claims"]) and "confirmed" in {c["verdict"] for c in committed["claims"]}
    for c in committed["claims"]:
        assert console[c["id"]] == ledger.UNDECIDED
        assert f"| {ledger.MARK[console[c['id']]]} | {c['statement']} (`{c['id']}`)" in claims_md


def test_a_quick_figure_carries_the_quick_mark_and_a_full_one_does_not():
    for quick in (True, False):
        with plotting.style():
            fig, _ = plotting.panels(1)
            plotting.mark_quick(fig, {"summary": {"quick": quick}})
            texts = [t.get_text() for t in fig.texts]
            plotting.close(fig)
        assert (plotting.QUICK_MARK in texts and "QUICK" in texts) == quick and (texts != []) == quick


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_every_experiment_stamps_its_quick_figures(name, tmp_path):
    """Each module's plot, from its committed results flagged quick, draws the mark: red where a full run has none."""
    module = importlib.import_module(f"fobtheory.experiments.{name}")
    results = load_results(FIGURES / f"{name}.json")
    for quick in (False, True):
        for path in module.plot(dict(results, summary=dict(results["summary"], quick=quick)), tmp_path / str(quick)):
            rgb = plt.imread(path)[..., :3]
            corner = rgb[: rgb.shape[0] // 40, : rgb.shape[1] // 6]  # where the mark's line sits
            reddish = (corner[..., 0] > 0.6) & (corner[..., 1] < 0.45) & (corner[..., 2] < 0.45)
            assert reddish.any() == quick, (path, quick)
