"""Sphinx configuration: the API reference from the docstrings (autodoc, napoleon for the
numpy-style sections) and a gallery of short examples executed at build time
(sphinx-gallery). Build: ``python -m sphinx -W -b html docs docs/_build/html``."""
import os
import re

os.environ.setdefault("MPLBACKEND", "Agg")

project = "fobtheory"
author = "fobtheory contributors"
copyright = "2026, fobtheory contributors"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "sphinx_gallery.gen_gallery"]
exclude_patterns = ["_build", "examples"]  # the gallery sources; sphinx-gallery writes auto_examples/
html_theme = "alabaster"
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


def setup(app):
    app.connect("autodoc-process-docstring", plain_text)
