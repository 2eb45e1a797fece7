"""The documentation's measured numbers come from the results files, through the generator."""
from pathlib import Path

import pytest

from fobtheory.docs_numbers import claims_table, render, update_page

ROOT = Path(__file__).resolve().parents[1]
FAKE = {"experiment": "fake", "claims": [
    {"id": "a_b", "statement": "norm |x|_2 *is* `small`", "expected": "<= 1e-3", "measured": "2e-4",
     "verdict": "confirmed"},
    {"id": "c", "statement": "second", "expected": "e", "measured": "m", "verdict": "refuted"}]}


def test_the_related_methods_page_is_generated_from_the_committed_results():
    """Regenerate with ``fobtheory claims --readme README.md --docs docs/claims.rst``."""
    page = (ROOT / "docs" / "related.rst").read_text()
    assert render(page, ROOT / "figures") == page
    assert page.count(".. end claims") == 3 and "bilevel_f2sa_identity" in page


def test_a_table_lists_the_claims_in_order_with_markup_escaped():
    table = claims_table(FAKE, ["c", "a_b"])
    assert table.index("(``c``)") < table.index("(``a_b``)")
    assert r"norm \|x\|\_2 \*is\* \`small\`" in table and "   * - refuted" in table


def test_unknown_claims_and_pages_without_blocks_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"fake has no claims \['zzz'\]"):
        claims_table(FAKE, ["a_b", "zzz"])
    page = tmp_path / "page.rst"
    page.write_text("Title\n=====\n")
    with pytest.raises(ValueError, match="has no '.. claims <file>: <ids>'"):
        update_page(page, tmp_path)


def test_update_page_fills_a_block_once(tmp_path):
    import json

    (tmp_path / "fake.json").write_text(json.dumps(dict(FAKE, config={}, environment={}, records=[], summary={})))
    page = tmp_path / "page.rst"
    page.write_text("Text\n\n.. claims fake.json: c\n\nold\n\n.. end claims\n\nmore\n")
    assert update_page(page, tmp_path) and not update_page(page, tmp_path)
    text = page.read_text()
    assert "old" not in text and "   * - refuted" in text and text.endswith("more\n")
