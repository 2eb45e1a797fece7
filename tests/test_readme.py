"""README.md stays true: its Python snippets run, its claims block is the ledger of figures/,
and CI runs its test command."""
import json
import re
from pathlib import Path

import pytest

from fobtheory import ledger

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_there_are_snippets_to_check():
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippets_run(index, capsys):
    namespace = {}
    for code in SNIPPETS[: index + 1]:  # the snippets build on each other, like a session
        exec(compile(code, f"README.md snippet {index}", "exec"), namespace)
    if "delta must be" in SNIPPETS[index]:
        assert "delta must be a finite number > 0" in capsys.readouterr().out


def test_readme_claims_block_is_the_ledger_of_the_committed_results():
    rows = ledger.collect(ROOT / "figures")
    assert ledger.readme_block(README) == ledger.markdown(rows, "figures/"), \
        "README's claims block is stale: run `fobtheory claims --readme README.md`"
    assert (ROOT / "figures" / "CLAIMS.md").read_text() == ledger.claims_file(rows)


def test_readme_opens_with_the_verdicts_of_the_committed_results():
    rows = ledger.collect(ROOT / "figures")
    assert ledger.readme_block(README, ledger.VERDICTS_START, ledger.VERDICTS_END) == ledger.verdicts_markdown(rows), \
        "README's verdicts block is stale: run `fobtheory claims --readme README.md`"
    text = README.read_text()
    assert text.index("## Two commands") < text.index(ledger.VERDICTS_START) < text.index(ledger.START)


def test_every_paper_claim_is_decided_by_measured_claims_whose_number_is_found():
    by_id = {r["id"]: r for r in ledger.collect(ROOT / "figures")}
    for paper in ledger.PAPER_CLAIMS:
        present = [d for d in paper["deciding"] if d[0] in by_id]
        assert present, f"no deciding claim of {paper['claim']} in figures/"
        for claim_id, _, pattern, *_ in present:  # a pattern that no longer matches would show a fallback
            assert re.search(pattern, by_id[claim_id]["measured"]), (claim_id, pattern)


def test_readme_claim_4_is_split_and_each_condition_sits_under_its_own_verdict():
    """Read against the raw results files: every claim id named in the rows of 4a and 4b
    stands in the group (holds, fails, undecided) of its verdict there."""
    raw = {c["id"]: c["verdict"] for path in (ROOT / "figures").glob("*.json")
           for c in json.loads(path.read_text())["claims"]}
    block = ledger.readme_block(README, ledger.VERDICTS_START, ledger.VERDICTS_END)
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| \*\*(4[ab])\. .*? \| .*? \| (.*) \|$", block, re.M)}
    assert set(rows) == {"4a", "4b"} and not re.search(r"\*\*4\. ", block)
    word = {"confirmed": "holds", "refuted": "fails", "inconclusive": "undecided"}
    for row in rows.values():
        groups = dict(re.match(r"\*\*(\w+)\*\* for (.*)", g).groups() for g in row.split("<br>") if " for " in g)
        named = {i: w for w, text in groups.items() for i in re.findall(r"`(\w+)`\)", text)}
        assert named and all(word[raw[i]] == w for i, w in named.items()), named
    assert re.search(r"\*\*fails\*\* for ReLU, plain differences", rows["4a"])
    assert "vs unrolled MAML" in rows["4a"] and "GELU" in rows["4a"] and "frozen patterns" in rows["4a"]


def test_every_figure_the_ledger_names_exists():
    for row in ledger.collect(ROOT / "figures"):
        for name in row["figures"]:
            assert (ROOT / "figures" / name).stat().st_size > 10_000


def test_ci_runs_the_readme_test_command():
    block = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```", README.read_text(), re.S)
    assert block and "pytest" in block.group(1)
    assert "test-command" in (ROOT / ".ci" / "run").read_text()
    assert re.search(r"```bash\n.*fobtheory reproduce --quick", README.read_text())
