"""The claims ledger, `fobtheory claims`, and `fobtheory reproduce` resuming."""
import json

import pytest

from fobtheory import ledger
from fobtheory.cli import main
from fobtheory.results import claim, make_results, write_json_atomic


def write(folder, name, claims):
    write_json_atomic(folder / f"{name}.json", make_results(name, {}, [], {}, claims))
    (folder / f"{name}.png").write_bytes(b"png")


def test_collect_table_and_markdown(tmp_path):
    write(tmp_path, "alpha", [claim("a1", "x | y", "e", "m", "confirmed"), claim("a2", "s", "e", "m", "refuted")])
    write(tmp_path, "beta", [claim("b1", "s", "e", "m", "inconclusive")])
    rows = ledger.collect(tmp_path)
    assert [r["id"] for r in rows] == ["a1", "a2", "b1"] and rows[0]["figures"] == ["alpha.png"]
    text = ledger.table(rows)
    assert "3 claims: 1 confirmed, 1 refuted, 1 inconclusive" in text and "alpha/a1" in text
    md = ledger.markdown(rows, "figures/")
    assert "x \\| y" in md and "![alpha.png](figures/alpha.png)" in md and "**refuted**" in md
    assert md.index("#### alpha") < md.index("a2") < md.index("#### beta") < md.index("b1")


def test_a_results_file_with_a_wrong_schema_is_refused_by_name(tmp_path):
    write(tmp_path, "good", [claim("a", "s", "e", "m", "confirmed")])
    bad = json.loads((tmp_path / "good.json").read_text())
    bad["claims"][0]["verdict"] = "plausible"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"bad.json: claims\[0\].verdict is 'plausible'"):
        ledger.collect(tmp_path)
    assert main(["claims", "--out", str(tmp_path)]) == 2


def test_claims_command_writes_the_ledger_and_fills_a_readme(tmp_path, capsys):
    write(tmp_path, "alpha", [claim("a1", "s", "e", "m", "confirmed")])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ledger.START}\nold\n{ledger.END}\noutro\n")
    assert main(["claims", "--out", str(tmp_path), "--readme", str(readme)]) == 0
    assert "alpha/a1" in capsys.readouterr().out
    assert (tmp_path / "CLAIMS.md").read_text().startswith("# Claims ledger")
    block = ledger.readme_block(readme)
    assert block == ledger.markdown(ledger.collect(tmp_path), f"{tmp_path.as_posix()}/")
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("outro\n")
    assert not ledger.update_readme(readme, ledger.collect(tmp_path), f"{tmp_path.as_posix()}/")  # idempotent


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no results files"):
        ledger.collect(tmp_path)


class FakeExperiment:
    """An experiment module stand-in that counts its runs and can be made to crash."""

    def __init__(self, name, crash=False):
        self.NAME, self.crash, self.runs = name, crash, 0

    def config(self, quick, seed, device):
        return {"quick": quick, "seed": seed}

    def run(self, config):
        self.runs += 1
        if self.crash:
            raise KeyboardInterrupt
        return make_results(self.NAME, config, [], {}, [claim(f"{self.NAME}_ok", "s", "e", "m", "confirmed")])

    def plot(self, results, out):
        (out / f"{self.NAME}.png").write_bytes(b"png")
        return [out / f"{self.NAME}.png"]


def test_reproduce_resumes_without_redoing_finished_experiments(tmp_path, monkeypatch):
    from fobtheory import experiments

    fakes = {"one": FakeExperiment("one"), "two": FakeExperiment("two", crash=True)}
    monkeypatch.setattr(experiments, "COMMANDS", dict.fromkeys(fakes))
    monkeypatch.setattr(experiments, "module", fakes.__getitem__)
    quiet = dict(out=tmp_path, echo=lambda *_: None)
    with pytest.raises(KeyboardInterrupt):  # killed midway
        experiments.reproduce(quick=True, **quiet)
    fakes["two"].crash = False
    rows = experiments.reproduce(quick=True, **quiet)
    assert (fakes["one"].runs, fakes["two"].runs) == (1, 2)
    assert [r["id"] for r in rows] == ["one_ok", "two_ok"] and (tmp_path / "CLAIMS.md").exists()
    experiments.reproduce(quick=False, **quiet)  # another configuration: rerun
    assert fakes["one"].runs == 2
    experiments.reproduce(quick=False, force=True, **quiet)
    assert fakes["one"].runs == 3


PAPER = (
    {"claim": "A", "statement": "all confirmed", "deciding": (("a1", "x:", r"n=(\d+)"), ("a2", "y:", r"absent (\d)"))},
    {"claim": "B", "statement": "one refuted", "deciding": (("a1", "x:", r"n=(\d+)"), ("b1", "z:", r"(.*)"),
                                                            ("later", "w:", r"(.*)"))},
    {"claim": "C", "statement": "one inconclusive", "deciding": (("a1", "x:", r"n=(\d+)"), ("c1", "v:", r"(.*)"))},
    {"claim": "D", "statement": "absent ids do not count",
     "deciding": (("a2", "y:", r"(.*)"), ("later", "w:", r"(.*)"))},
    {"claim": "E", "statement": "nothing measured", "deciding": (("later", "w:", r"(.*)"),)},
)


def test_paper_verdicts_follow_their_deciding_claims(monkeypatch):
    monkeypatch.setattr(ledger, "PAPER_CLAIMS", PAPER)
    rows = [claim("a1", "s", "e", "n=42 points; more", "confirmed"),
            claim("a2", "s", "e", "first; second", "confirmed"),
            claim("b1", "s", "e", "1.5x", "refuted"), claim("c1", "s", "e", "0.3", "inconclusive")]
    got = {p["claim"]: p for p in ledger.paper_verdicts(rows)}
    assert {k: p["verdict"] for k, p in got.items()} == {
        "A": "confirmed", "B": "refuted", "C": "inconclusive", "D": "confirmed", "E": "inconclusive"}
    # the pattern's group is the deciding number; no match: the first clause of `measured`
    assert [n["text"] for n in got["A"]["numbers"]] == ["x: 42", "y: first"]
    assert got["B"]["missing"] == ["later"] and [n["id"] for n in got["B"]["numbers"]] == ["a1", "b1"]
    assert got["E"]["numbers"] == [] and got["E"]["missing"] == ["later"]
    md = ledger.verdicts_markdown(rows, "claims.rst")
    lines = md.splitlines()
    assert len(lines) == 2 + len(PAPER) and "| **B**: one refuted | **refuted** |" in md
    # one line per claim: the number that shows the verdict (the failing one), the tally, the link
    assert "z: 1.5x (`b1`); 2 deciding claims: 1 confirmed, 1 refuted ([all](claims.rst)); 1 not in these results" \
        in lines[3]
    assert "v: 0.3 (`c1`)" in lines[4] and "x: 42 (`a1`)" in lines[2]  # undecided: the open one; confirmed: the first
    detail = ledger.conditions_markdown(rows)
    assert "| - | **refuted** | z: 1.5x | `b1` |" in detail and "not counted: `later`" in detail


def test_claims_command_fills_the_verdicts_block_too(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger, "PAPER_CLAIMS", PAPER)
    write(tmp_path, "alpha", [claim("a1", "s", "e", "n=7", "confirmed"), claim("b1", "s", "e", "m", "refuted")])
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{ledger.VERDICTS_START}\nold\n{ledger.VERDICTS_END}\n"
                      f"mid\n{ledger.START}\nold\n{ledger.END}\n")
    assert main(["claims", "--out", str(tmp_path), "--readme", str(readme)]) == 0
    rows = ledger.collect(tmp_path)
    assert ledger.readme_block(readme, ledger.VERDICTS_START, ledger.VERDICTS_END) == \
        ledger.verdicts_markdown(rows, ledger.CLAIMS_PAGE)
    assert ledger.readme_block(readme) == ledger.markdown(rows, f"{tmp_path.as_posix()}/")
    assert ledger.conditions_markdown(rows) in (tmp_path / "CLAIMS.md").read_text()
    assert not ledger.update_readme(readme, rows, f"{tmp_path.as_posix()}/")  # idempotent


def test_a_figure_goes_to_the_results_file_whose_name_it_extends_most(tmp_path):
    write(tmp_path, "mnist1d", [claim("a", "s", "e", "m", "confirmed")])
    write(tmp_path, "mnist1d_fidelity", [claim("b", "s", "e", "m", "confirmed")])
    (tmp_path / "mnist1d_extra.png").write_bytes(b"png")
    figures = {r["id"]: r["figures"] for r in ledger.collect(tmp_path)}
    assert figures == {"a": ["mnist1d.png", "mnist1d_extra.png"], "b": ["mnist1d_fidelity.png"]}


SCOPED = (
    {"claim": "S", "statement": "scoped", "deciding": (
        ("s1", "gap:", r"gap (\S+)", ("GELU", "plain", "vs MAML")),
        ("s2", "gap:", r"gap (\S+)", ("ReLU", "plain", "vs MAML")),
        ("s3", "gap:", r"gap (\S+)", ("ReLU", "frozen", "vs MAML"))),
     "related": {"experiments": ("memory",), "id_pattern": "hvp", "scope": "vs HVP-MAML"}},
)


def test_scoped_verdicts_hold_in_part_and_group_their_conditions(monkeypatch):
    monkeypatch.setattr(ledger, "PAPER_CLAIMS", SCOPED)
    rows = [dict(claim("s1", "s", "e", "gap 0.1", "confirmed"), experiment="mnist1d"),
            dict(claim("s2", "s", "e", "gap -15", "refuted"), experiment="mnist1d"),
            dict(claim("s3", "s", "e", "gap 0.3", "inconclusive"), experiment="mnist1d")]
    (paper,) = ledger.paper_verdicts(rows)
    assert paper["verdict"] == ledger.IN_PART and paper["common"] == ["vs MAML"]
    assert ledger.scope_lines(paper) == ["holds for GELU, plain (gap: 0.1, `s1`)", "fails for ReLU, plain (gap: -15, `s2`)",
                                         "undecided for ReLU, frozen (gap: 0.3, `s3`)", "every number: vs MAML"]
    row = ledger.verdicts_markdown(rows).splitlines()[2]
    assert "| **holds in part** | fails for ReLU, plain: gap: -15 (`s2`); 3 conditions: 1 confirmed, 1 refuted, " \
        "1 inconclusive |" in row
    detail = ledger.conditions_markdown(rows)
    assert "Every row: vs MAML." in detail and "| ReLU, frozen | *inconclusive* | gap: 0.3 | `s3` |" in detail
    # without the refuted one the old rule: confirmed and inconclusive give inconclusive
    assert ledger.paper_verdicts([rows[0], rows[2]])[0]["verdict"] == "inconclusive"


def test_related_claims_join_a_scoped_verdict_when_present(monkeypatch):
    """Claims of HVP-MAML (ids with `hvp`) in the named experiments count, with their
    reference and their storage variant read from the id; elsewhere or absent, nothing."""
    monkeypatch.setattr(ledger, "PAPER_CLAIMS", SCOPED)
    base = [dict(claim("s1", "s", "e", "gap 0.1", "confirmed"), experiment="mnist1d")]
    assert [n["id"] for n in ledger.paper_verdicts(base)[0]["numbers"]] == ["s1"]
    hvp = [dict(claim("fob_lean_vs_hvp_peak", "Lean FO-B needs less memory than HVP-MAML", "e", "ratio 1.2; more",
                      "refuted"), experiment="memory"),
           dict(claim("hvp_elsewhere", "s", "e", "m", "confirmed"), experiment="mnist1d")]
    (paper,) = ledger.paper_verdicts(base + hvp)
    assert [n["id"] for n in paper["numbers"]] == ["s1", "fob_lean_vs_hvp_peak"] and paper["verdict"] == ledger.IN_PART
    assert paper["numbers"][1]["scope"] == ("FO-B lean (iterates recomputed)", "vs HVP-MAML")
    assert paper["numbers"][1]["text"] == "Lean FO-B needs less memory than HVP-MAML: ratio 1.2"
    both = dict(claim("fob_below_hvp_lean_or_checkpointed", "s", "e", "m", "confirmed"), experiment="memory")
    assert ledger.paper_verdicts(base + [both])[0]["numbers"][1]["scope"] == (
        "FO-B with checkpointed iterates", "FO-B lean (iterates recomputed)", "vs HVP-MAML")  # every word found


def test_paired_accuracy_claims_decide_4a_and_distances_only_4c():
    """Distance is not accuracy: the paired study's distance claims decide 4c alone, its
    accuracy claims join 4a, each scoped by activation, setting and accuracy, with every shot
    cell of its measured text and none of the context after it."""
    cells = "FO-B - MAML, points: 1-shot (alpha 0.4, K 1): +0.1 [-0.2, +0.3] (n 5); 5-shot: -0.5 [-3.0, +2.0] (n 5)"
    rows = [dict(claim(f"fob_{kind}_{act}_{setting}{tail}", "s", "e", f"{cells}; MAML perturbed - MAML: 1-shot +9",
                       "confirmed"), experiment="mnist1d_paired")
            for kind, tails in (("distance_within_noise_floor", ("",)), ("accuracy_within_noise_floor", ("",)),
                                ("tracks_maml_paired", ("_final", "_early")))
            for tail in tails for act in ("relu", "gelu") for setting in ("shared", "tuned")]
    rows[0]["verdict"] = "refuted"  # a distance claim fails: 4c holds only in part, 4a does not notice
    papers = {p["claim"][:2]: p for p in ledger.paper_verdicts(rows)}
    acc, dist = papers["4a"], papers["4c"]
    assert {n["id"] for n in dist["numbers"]} == {r["id"] for r in rows if "distance" in r["id"]}
    assert {n["id"] for n in acc["numbers"]} == {r["id"] for r in rows if "distance" not in r["id"]}
    assert dist["verdict"] == ledger.IN_PART and acc["verdict"] == "confirmed"
    scopes = {n["id"]: n["scope"] for n in acc["numbers"]}
    assert scopes["fob_tracks_maml_paired_gelu_shared_early"] == (
        "GELU", "plain differences", ledger.SHARED, "early-stopped test accuracy")
    assert scopes["fob_accuracy_within_noise_floor_relu_tuned"] == ("ReLU", "frozen patterns", ledger.TUNED)
    assert acc["common"] == [ledger.PAIRED] and all(n["text"] == cells for n in acc["numbers"])


def test_the_deciding_text_of_a_tracking_claim_quotes_every_shot_cell(monkeypatch):
    rows = [dict(claim("fob_tracks_maml_gelu", "s", "e", "1-shot: +0.3 [-2.7, +2.3] points; 5-shot: -0.1 [-0.4, +0.2] "
                       "points", "inconclusive"), experiment="mnist1d")]
    (number,) = next(p for p in ledger.paper_verdicts(rows) if p["claim"].startswith("4a"))["numbers"]
    assert number["text"] == "FO-B - MAML, 1-shot: +0.3 [-2.7, +2.3] points; 5-shot: -0.1 [-0.4, +0.2] points"


def test_a_quick_reproduction_says_what_it_is_and_sets_itself_beside_the_committed_results(tmp_path, monkeypatch):
    from fobtheory import experiments

    fakes = {"one": FakeExperiment("one")}
    monkeypatch.setattr(experiments, "COMMANDS", dict.fromkeys(fakes))
    monkeypatch.setattr(experiments, "module", fakes.__getitem__)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "figures").mkdir()
    write(tmp_path / "figures", "one", [claim("one_ok", "s", "e", "m", "refuted")])
    said = []
    experiments.reproduce(quick=True, echo=said.append)
    assert said[0] == ledger.BANNER
    text = (tmp_path / "runs" / "quick" / "CLAIMS.md").read_text()
    assert ledger.BANNER in text and "- differs: `one_ok`: this run confirmed, committed refuted" in text
    assert "Against the committed results" in said[-2]
    experiments.reproduce(quick=True, echo=said.append)  # up to date: the quick flag is part of the configuration
    assert fakes["one"].runs == 1
