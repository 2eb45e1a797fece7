"""No hand-typed measured number in README.md or the docs: every number in their prose is one
that a results file holds (the rule is the docs guide's *Numbers in prose*).

Prose is what remains outside code blocks, inline literals, URLs, reST directives and the
generated blocks (``<!-- name:start -->`` ... ``<!-- name:end -->``; a page whose first line
says it is generated, such as ``docs/claims.rst``, is all generated). Its numbers are checked:

- on the front page and every docs page (**strict**): a number must be written as the results
  files write it for readers (a token of the claims' statements, expectations and measured
  texts, or of the summaries' highlights) or be a configuration's value, or be in
  :data:`ALLOWED`;
- on the hand-written results narrative (:data:`NARRATIVE`), which reads numbers the generated
  texts do not show: against every number of a results file but the per-step records (with
  them almost any number would match by chance), at the precision written, bytes read as GB,
  GiB, MB or MiB and seconds as ms where the prose says so. This tier is weaker: a number can pass by
  coincidence; a number no results file holds cannot.
"""
import bisect
import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]
NARRATIVE = {"results.rst"}
NUMBER = re.compile(r"(?<![\w.^/\\(-])([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)(?![\w]|\.\d)(\s?(?:%|GB|GiB|MB|MiB|ms))?")
# numbers that are not measured: counts and indices up to 10 (claim numbers, "5-way 1-shot",
# K and seeds), the paper's year and submission number, the years of cited papers, the torch version
# of the CPU hint
ALLOWED = {*map(str, range(11)), "2026", "7738", "2019", "2020", "2.13.0"}
UNITS = {"%": 1e-2, "GB": 1e9, "GiB": 2.0 ** 30, "MB": 1e6, "MiB": 2.0 ** 20, "ms": 1e-3}


def prose(text: str, rst: bool) -> str:
    """``text`` without code blocks, generated blocks, directives, field lists, literals and URLs."""
    text = re.sub(r"<!-- (\w+):start -->.*?<!-- \1:end -->", " ", text, flags=re.S)
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    kept, skip = [], None
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if skip is not None and (not line.strip() or indent > skip):
            continue
        skip = None
        if rst and (line.lstrip().startswith(".. ") or line.rstrip().endswith("::")):
            skip = indent  # a directive or literal block: its indented body goes too
            if line.lstrip().startswith(".. "):
                continue
        if rst and re.match(r"\s*:\w+:", line):
            continue
        kept.append(line)
    text = re.sub(r"``.*?``|`[^`]*`", " ", "\n".join(kept), flags=re.S)
    return re.sub(r"https?://\S+|\]\([^)]*\)", " ", text)


def numbers(text: str) -> list[tuple[str, str]]:
    """(number as written, unit) of every number in ``text`` but version strings."""
    text = re.sub(r"\d+\.\d+\.\d+", lambda m: " " if m.group(0) not in ALLOWED else m.group(0), text)
    return [(m.group(1).lstrip("+-"), (m.group(2) or "").strip()) for m in NUMBER.finditer(text)
            if m.group(1).lstrip("+-") not in ALLOWED]


def _results():
    for path in sorted(FIGURES.rglob("*.json")):
        if "-runs" in path.parent.as_posix() and "cuda" not in path.as_posix():
            continue  # a campaign's per-run files: the summaries hold what prose may quote
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "claims" in data:
            yield data
        elif isinstance(data, list):  # a bare list of records (a device's timing rows): its numbers, no texts
            yield {"config": {}, "summary": {"rows": data}, "claims": []}


def _values(x, out: list):
    if isinstance(x, dict):
        for v in x.values():
            _values(v, out)
    elif isinstance(x, list):
        for v in x:
            _values(v, out)
    elif isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        out.append(abs(float(x)))
    elif isinstance(x, str):
        out += [abs(float(n)) for n, _ in numbers(x)]


def written_numbers() -> set[str]:
    """The numbers as the texts the results files write for readers write them, and their
    configurations' values (as Python and ``%g`` write them)."""
    out = set()
    for data in _results():
        texts = [t for c in data["claims"] for t in (c["statement"], c["expected"], c["measured"])]
        out |= {w for text in texts + data["summary"].get("highlights", []) for w, _ in numbers(text)}
        config = []
        _values(data["config"], config)
        out |= {f(v) for v in config for f in (str, "{:g}".format, lambda v: str(int(v)) if v == int(v) else str(v))}
    return out


def held_numbers() -> list[float]:
    """Every number of the results files but their records."""
    out = []
    for data in _results():
        _values({k: v for k, v in data.items() if k != "records"}, out)
    return sorted(out)


def matches(written: str, unit: str, values: list[float], scaled: bool) -> bool:
    """Whether a value rounds to ``written`` at the precision written (significant digits in
    e-notation, decimals otherwise); ``scaled``: also a fraction for %, bytes for GB and kin."""
    x = float(written)
    if "e" in written.lower():
        digits = len(written.lower().split("e")[0].replace(".", "").lstrip("0")) or 1
        tol = 0.5 * 10.0 ** (1 - digits) * x
    else:
        tol = 0.5 * 10.0 ** -(len(written.split(".")[1]) if "." in written else 0)
    scales = [1.0] + ([UNITS[unit]] if scaled and unit in UNITS else [])
    for s in scales:
        low, high = (x - tol * 1.0001) * s, (x + tol * 1.0001) * s
        i = bisect.bisect_left(values, low)
        if i < len(values) and values[i] <= high:
            return True
    return False


def unsourced(page: Path) -> list[str]:
    text = page.read_text()
    if text.startswith(".. Generated by"):
        return []
    found = numbers(prose(text, page.suffix == ".rst"))
    if page.name in NARRATIVE:
        values = held_numbers()
        return [w + u for w, u in found if not matches(w, u, values, scaled=True)]
    written = written_numbers()
    return [w + u for w, u in found if w not in written]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_number_in_prose_is_one_a_results_file_holds(page):
    assert unsourced(page) == [], f"{page.name}: numbers no results file holds (generate them, or see the guide)"


def test_the_check_finds_a_hand_typed_number_and_passes_a_generated_one(tmp_path, monkeypatch):
    """The issue's drift, replayed: a seed need the results no longer hold fails; the need the
    paired claims now write passes; code, literals and generated blocks are not prose."""
    measured = next(c["measured"] for d in _results() for c in d["claims"]
                    if c["id"] == "fob_tracks_maml_paired_relu_shared_final")
    need = re.search(r"1-shot (\d+), 5-shot (\d+); at this", measured)
    page = tmp_path / "README.md"
    page.write_text(f"ReLU 1-shot needs {need.group(1)} seeds.\n\n`x = 83.17`\n\n```\n77.7\n```\n"
                    "<!-- bench:start -->\n91.3\n<!-- bench:end -->\n")
    assert unsourced(page) == []
    page.write_text("ReLU 1-shot needs 82 seeds; the others need 2-3.\n")
    assert unsourced(page) == ["82"]
    rst = tmp_path / "notes.rst"
    rst.write_text("Took 4000 meta-steps.\n\n.. code-block:: python\n\n   x = 12345.6\n\nThen 12345.6 points.\n")
    assert unsourced(rst) == ["12345.6"]


def test_numbers_read_at_the_precision_written():
    values = sorted([0.6252, 79050925096.0, 0.184])
    assert matches("0.63", "", values, False) and matches("0.625", "", values, False)
    assert matches("0.6", "", values, False)  # 0.6252 read at one decimal
    assert not matches("0.62", "", values, False) and not matches("0.7", "", values, False)
    assert matches("79.05", "GB", values, True) and not matches("79.05", "GB", values, False)
    assert matches("18", "%", values, True) and matches("6.3e-1", "", values, False)
