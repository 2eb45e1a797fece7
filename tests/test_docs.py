"""The documentation cannot rot: every gallery example runs and draws its figure, the code of
every page runs, the claims the pages cite exist, and the site builds with warnings as errors
(sphinx-gallery executes the examples there too, so the published figures are the ones this
code draws)."""
import io
import json
import re
import runpy
import shutil
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("plot_*.py"))
PAGES = ("guide", "theory", "problems", "property_testing")  # pages whose code blocks form one session each


def code_blocks(page: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of ``docs/<page>.rst``, dedented."""
    blocks = re.findall(r"\.\. code-block:: python\n\n(.*?)(?=\n\S|\Z)", (DOCS / f"{page}.rst").read_text(), flags=re.S)
    return [re.sub(r"^   ", "", block, flags=re.M) for block in blocks]


GUIDE = code_blocks("guide")


def test_the_gallery_has_the_examples_the_docs_promise():
    assert len(EXAMPLES) >= 7 and len(GUIDE) >= 2
    assert all(code_blocks(page) for page in PAGES)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_gallery_example_runs_and_draws_a_figure(path, monkeypatch):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.chdir(path.parent)
    runpy.run_path(str(path), run_name="__main__")
    assert plt.get_fignums(), f"{path.name} drew no figure"
    plt.close("all")


@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs(page):
    namespace = {}
    for i, block in enumerate(code_blocks(page)):  # the blocks build on each other, like a session
        exec(compile(block, f"docs/{page}.rst block {i}", "exec"), namespace)


def test_the_claim_role_knows_the_committed_claims_and_warns_on_others():
    """``:claim:`id``` in the pages: ids read from the committed results, an unknown one a
    warning (an error in the -W build below)."""
    from docutils.utils import Reporter

    conf = runpy.run_path(str(DOCS / "conf.py"))
    ids = {c["id"] for f in (ROOT / "figures").glob("*.json") for c in json.loads(f.read_text())["claims"]}
    assert ids and conf["CLAIMS"] == ids
    inliner = SimpleNamespace(reporter=Reporter("page", 2, 4, stream=io.StringIO()))
    nodes, messages = conf["claim_role"]("claim", ":claim:`eps_rates`", "eps_rates", 1, inliner)
    assert nodes[0].astext() == "eps_rates" and messages == []
    nodes, messages = conf["claim_role"]("claim", ":claim:`no_such`", "no_such", 1, inliner)
    assert nodes[0].astext() == "no_such" and "unknown claim id 'no_such'" in messages[0].astext()


def test_no_file_users_get_cites_the_design_notes():
    """The design notes are not shipped: code, docs and results point to the docs pages."""
    design = re.compile(r"DESIGN(\.md| \d)")  # the file, or a section of it
    files = [p for folder in ("fobtheory", "experiments", "docs", "tests") for p in (ROOT / folder).rglob("*")
             if p.suffix in (".py", ".rst", ".css") and "auto_examples" not in p.parts and "_build" not in p.parts]
    files += sorted((ROOT / "figures").glob("*.json")) + [ROOT / "figures" / "CLAIMS.md"]
    citing = [str(p.relative_to(ROOT)) for p in files if design.search(p.read_text())]
    assert len(files) > 50 and citing == []


@pytest.mark.filterwarnings("ignore:The mapping interface for autodoc options:PendingDeprecationWarning")  # napoleon's
def test_docs_build_without_warnings(tmp_path):
    """The site, built as CI and the README say (``-W``), from a copy (the gallery writes
    its generated pages into the source folder)."""
    from sphinx.cmd import build as sphinx  # the docs extra: pip install -e ".[test,docs]"
    source = tmp_path / "docs"
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns("_build", "auto_examples", "sg_execution_times.rst"))
    shutil.copytree(DOCS.parent / "figures", tmp_path / "figures", ignore=shutil.ignore_patterns("*-runs", "cuda"))
    status = sphinx.build_main(["-W", "--keep-going", "-q", "-b", "html", str(source), str(tmp_path / "html")])
    assert status == 0, "the docs build failed or warned: see the output above"
    for example in EXAMPLES:
        html = (tmp_path / "html" / "auto_examples" / f"{example.stem}.html").read_text()
        assert re.search(r'src="../_images/sphx_glr_' + example.stem + r'_\d+\.png"', html), example.name
    assert (tmp_path / "html" / "api.html").read_text().count('class="sig-name descname"') > 50
    for page in PAGES:  # long code lines wrap instead of being clipped
        assert '_static/custom.css' in (tmp_path / "html" / f"{page}.html").read_text(), page
    assert "white-space: pre-wrap" in (tmp_path / "html" / "_static" / "custom.css").read_text()
    claims = (tmp_path / "html" / "claims.html").read_text()  # the generated claims page, with its figures
    assert "4a. Practice, accuracy" in claims and "fob_tracks_maml_relu" in claims
    assert re.search(r'src="_images/mnist1d_paired\.png"', claims)


def test_the_api_reference_lists_every_module_of_the_package():
    import pkgutil

    import fobtheory

    modules = {f"fobtheory.{m.name}" for m in pkgutil.iter_modules(fobtheory.__path__) if not m.name.startswith("_")}
    listed = set(re.findall(r"^\.\. automodule:: (\S+)", (DOCS / "api.rst").read_text(), flags=re.M))
    assert modules - {"fobtheory.cli"} <= listed, f"add to docs/api.rst: {sorted(modules - listed)}"
