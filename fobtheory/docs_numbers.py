"""Measured numbers in the documentation pages, generated from the results files.

A page holds blocks between the reST comments ``.. claims <file>: <id> <id> ...`` and
``.. end claims``; :func:`update_page` rewrites each block as a table of those claims
(verdict, statement, expected, measured) read from ``<folder>/<file>``, so that no measured
number in the docs is typed by hand. Regenerate after a default run::

    fobtheory claims --readme README.md --docs docs/claims.rst
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from .ledger import list_table, rst_text
from .results import load_results

BLOCK = re.compile(r"^(\.\. claims (\S+): ([^\n]+))\n.*?^(\.\. end claims)$", flags=re.S | re.M)


def claims_table(results: dict, ids: list[str]) -> str:
    """A reST list-table of the claims ``ids`` of one results dict, in that order."""
    claims = {c["id"]: c for c in results["claims"]}
    missing = [i for i in ids if i not in claims]
    if missing:
        raise ValueError(f"{results['experiment']} has no claims {missing}; it has {sorted(claims)}")
    rows = [[claims[i]["verdict"], f"{rst_text(claims[i]['statement'])} (``{i}``)", rst_text(claims[i]["expected"]),
             rst_text(claims[i]["measured"])] for i in ids]
    return "\n".join(list_table(["Verdict", "Claim", "Expected", "Measured"], rows, "12 40 24 40")).rstrip()


def render(text: str, folder) -> str:
    """``text`` with every claims block filled from the results files in ``folder``."""
    def fill(match):
        head, name, ids, end = match.group(1), match.group(2), match.group(3).split(), match.group(4)
        return f"{head}\n\n{claims_table(load_results(Path(folder) / name), ids)}\n\n{end}"

    return BLOCK.sub(fill, text)


def update_page(page, folder="figures") -> bool:
    """Rewrite the claims blocks of ``page`` from ``folder``; True if the file changed."""
    page = Path(page)
    text = page.read_text()
    if not BLOCK.search(text):
        raise ValueError(f"{page} has no '.. claims <file>: <ids>' ... '.. end claims' block")
    new = render(text, folder)
    if new != text:
        page.write_text(new)
    return new != text


if __name__ == "__main__":  # pragma: no cover
    changed = update_page(*sys.argv[1:3])
    print(f"{sys.argv[1]}: {'updated' if changed else 'up to date'}")
