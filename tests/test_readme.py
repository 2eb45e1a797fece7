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


def test_readme_generated_blocks_and_the_claims_pages_are_those_of_the_committed_results():
    """The verdicts, figures, commands and speed blocks of README.md, figures/CLAIMS.md and
    docs/claims.rst are what `fobtheory claims --readme README.md --docs docs/claims.rst`
    writes from figures/."""
    from fobtheory import frontpage

    rows = ledger.collect(ROOT / "figures")
    stale = "stale: run `fobtheory claims --readme README.md --docs docs/claims.rst`"
    assert ledger.readme_block(README, ledger.VERDICTS_START, ledger.VERDICTS_END) == \
        ledger.verdicts_markdown(rows, ledger.CLAIMS_PAGE), f"README's verdicts block is {stale}"
    for name, body in frontpage.blocks(ROOT / "figures", rows).items():
        assert ledger.readme_block(README, *frontpage.markers(name)) == body, f"README's {name} block is {stale}"
    assert (ROOT / "figures" / "CLAIMS.md").read_text() == ledger.claims_file(rows), f"CLAIMS.md is {stale}"
    assert (ROOT / "docs" / "claims.rst").read_text() == ledger.claims_rst(rows), f"docs/claims.rst is {stale}"


def test_readme_is_a_front_page():
    """Short, the commands before the verdicts, one line per paper claim, no cell of the verdict
    table over 300 characters, every command in the commands table, no file users lack cited."""
    text = README.read_text()
    assert len(text.splitlines()) < 300
    assert text.index("## Two commands") < text.index(ledger.VERDICTS_START) < text.index("<!-- figures:start -->")
    assert text.index("pip install torch==2.13.0") < text.index("fobtheory reproduce --quick")
    block = ledger.readme_block(README, ledger.VERDICTS_START, ledger.VERDICTS_END)
    lines = block.splitlines()[2:]
    assert len(lines) == len(ledger.PAPER_CLAIMS)
    cells = [c for line in lines for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    assert cells and max(len(c) for c in cells) <= 300, max(cells, key=len)
    commands = ledger.readme_block(README, "<!-- commands:start -->", "<!-- commands:end -->")
    from fobtheory.cli import build_parser

    for name in build_parser()._subparsers._group_actions[0].choices:
        assert f"`fobtheory {name}`" in commands, name
    assert "DESIGN" not in text and "Networks you bring" in text and "docs/related.rst" in text


def test_every_paper_claim_is_decided_by_measured_claims_whose_number_is_found():
    rows = ledger.collect(ROOT / "figures")
    by_id = {r["id"]: r for r in rows}
    for paper in ledger.PAPER_CLAIMS:
        present = [d for d in ledger._deciding(paper, rows) if d[0] in by_id]
        assert present, f"no deciding claim of {paper['claim']} in figures/"
        for claim_id, _, pattern, _ in present:  # a pattern that no longer matches would show a fallback
            assert re.search(pattern, by_id[claim_id]["measured"]), (claim_id, pattern)


def test_claim_4a_is_decided_by_accuracy_alone_and_each_readme_row_names_a_claim_of_its_verdict():
    """Read against the raw results files: 4a's deciding claims are accuracy claims (no
    distance), 4c's are the distances; the claim each README row quotes has, in the raw file,
    the verdict the row's word says."""
    raw = {c["id"]: c["verdict"] for path in (ROOT / "figures").glob("*.json")
           for c in json.loads(path.read_text())["claims"]}
    papers = {p["claim"][:2]: p for p in ledger.paper_verdicts(ledger.collect(ROOT / "figures"))}
    assert papers["4a"]["numbers"] and not any("distance" in n["id"] for n in papers["4a"]["numbers"])
    assert papers["4c"]["numbers"] and all("distance" in n["id"] for n in papers["4c"]["numbers"])
    word = {"holds": "confirmed", "fails": "refuted", "undecided": "inconclusive"}
    block = ledger.readme_block(README, ledger.VERDICTS_START, ledger.VERDICTS_END)
    for line in block.splitlines()[2:]:
        quoted = re.search(r"\(`(\w+)`\)", line).group(1)
        said = re.search(r"\| (holds|fails|undecided) for ", line)
        assert said is None or raw[quoted] == word[said.group(1)], line
    assert re.search(r"4a\. .*fails for ReLU, plain differences", block)


def test_every_figure_the_ledger_names_exists():
    for row in ledger.collect(ROOT / "figures"):
        for name in row["figures"]:
            assert (ROOT / "figures" / name).stat().st_size > 10_000


def test_ci_runs_the_readme_test_command():
    block = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```", README.read_text(), re.S)
    assert block and "pytest" in block.group(1)
    assert "test-command" in (ROOT / ".ci" / "run").read_text()
    assert re.search(r"```bash\n.*fobtheory reproduce --quick", README.read_text())
