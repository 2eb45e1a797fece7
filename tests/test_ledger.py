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
    md = ledger.verdicts_markdown(rows)
    lines = md.splitlines()
    assert len(lines) == 2 + len(PAPER) and "| **B**: one refuted | **refuted** |" in md
    assert "z: 1.5x (`b1`, refuted)" in lines[3] and "not counted: `later`" in lines[3]


def test_claims_command_fills_the_verdicts_block_too(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger, "PAPER_CLAIMS", PAPER)
    write(tmp_path, "alpha", [claim("a1", "s", "e", "n=7", "confirmed"), claim("b1", "s", "e", "m", "refuted")])
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{ledger.VERDICTS_START}\nold\n{ledger.VERDICTS_END}\n"
                      f"mid\n{ledger.START}\nold\n{ledger.END}\n")
    assert main(["claims", "--out", str(tmp_path), "--readme", str(readme)]) == 0
    rows = ledger.collect(tmp_path)
    assert ledger.readme_block(readme, ledger.VERDICTS_START, ledger.VERDICTS_END) == ledger.verdicts_markdown(rows)
    assert ledger.readme_block(readme) == ledger.markdown(rows, f"{tmp_path.as_posix()}/")
    assert ledger.verdicts_markdown(rows) in (tmp_path / "CLAIMS.md").read_text()
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
     "related": {"experiments": ("memory",), "id_contains": "hvp", "scope": "vs HVP-MAML"}},
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
    assert "| **holds in part** | **holds** for GELU, plain (gap: 0.1, `s1`)<br>**fails** for ReLU" in row
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


def test_the_paired_studys_claims_join_claim_4a_scoped_by_activation_and_setting():
    rows = [dict(claim(f"fob_{kind}_{act}_{setting}", "s", "e", "ratio 0.5; more", "confirmed"),
                 experiment="mnist1d_paired")
            for kind in ("distance_within_noise_floor", "tracks_maml_paired") for act in ("relu", "gelu")
            for setting in ("shared", "tuned")]
    paper = next(p for p in ledger.paper_verdicts(rows) if p["claim"].startswith("4a"))
    scopes = {n["id"]: n["scope"] for n in paper["numbers"]}
    assert len(scopes) == 8 and paper["verdict"] == "confirmed"
    assert scopes["fob_distance_within_noise_floor_relu_tuned"] == ("ReLU", "frozen patterns", ledger.TUNED)
    assert scopes["fob_tracks_maml_paired_gelu_shared"] == ("GELU", "plain differences", ledger.SHARED)
    assert paper["common"] == [ledger.PAIRED]


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
