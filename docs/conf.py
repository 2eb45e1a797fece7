"""Sphinx configuration: the API reference from the docstrings (autodoc, napoleon for the
numpy-style sections) and a gallery of short examples executed at build time
(sphinx-gallery). Build: ``python -m sphinx -W -b html docs docs/_build/html``."""
import json
import os
import re
from pathlib import Path

from docutils import nodes

os.environ.setdefault("MPLBACKEND", "Agg")

project = "fobtheory"
author = "fobtheory contributors"
copyright = "2026, fobtheory contributors"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "sphinx_gallery.gen_gallery"]
exclude_patterns = ["_build", "examples"]  # the gallery sources; sphinx-gallery writes auto_examples/
html_theme = "alabaster"
html_theme_options = {"page_width": "1180px"}  # room for the code's 100-character lines
html_static_path = ["_static"]  # custom.css (alabaster includes it): long code lines wrap, never clipped
autodoc_member_order = "bysource"
autodoc_typehints = "description"

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # every example runs
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
}


def plain_text(app, what, name, obj, options, lines):
    """The docstrings are plain text: ``|x|`` is a norm, not a reST substitution (escaped
    outside literals), and an indented block after a line ending in a colon and a blank
    line is a formula, shown as a literal block."""
    literal = None  # the indentation of the line that opened the current literal block
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if literal is not None and line.strip() and indent <= literal:
            literal = None
        if literal is None:
            parts = re.split(r"(``.*?``|`[^`]*`)", line)
            lines[i] = "".join(p if k % 2 else p.replace("|", "\\|") for k, p in enumerate(parts))
            if (line.endswith(":") and not line.endswith("::") and i + 2 < len(lines) and not lines[i + 1].strip()
                    and len(lines[i + 2]) - len(lines[i + 2].lstrip()) > indent):
                lines[i] += ":"
            if lines[i].endswith("::"):
                literal = indent


def claim_ids() -> set[str] | None:
    """The ids of the claims in the committed results (``figures/*.json`` of the checkout that
    the package is imported from), or None where there are none to check against."""
    import fobtheory

    figures = Path(fobtheory.__file__).resolve().parents[1] / "figures"
    files = sorted(figures.glob("*.json"))
    return {c["id"] for f in files for c in json.loads(f.read_text())["claims"]} if files else None


CLAIMS = claim_ids()


def claim_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``:claim:`id``` shows a claim id as code, and warns (an error under -W) when no
    committed results file has that claim: the pages cannot cite a claim that is gone."""
    if CLAIMS is not None and text not in CLAIMS:
        return [nodes.literal(rawtext, text)], [inliner.reporter.warning(
            f"unknown claim id {text!r}: no claim of that id in figures/*.json", line=lineno)]
    return [nodes.literal(rawtext, text)], []


def setup(app):
    app.connect("autodoc-process-docstring", plain_text)
    app.add_role("claim", claim_role)
