"""The documentation cannot rot: every gallery example runs and draws its figure, the guide's
code runs, and the site builds with warnings as errors (sphinx-gallery executes the examples
there too, so the published figures are the ones this code draws)."""
import re
import runpy
import shutil
from pathlib import Path

import matplotlib
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("plot_*.py"))
GUIDE = re.findall(r"\.\. code-block:: python\n\n(.*?)(?=\n\S|\Z)", (DOCS / "guide.rst").read_text(), flags=re.S)


def test_the_gallery_has_the_examples_the_docs_promise():
    assert len(EXAMPLES) >= 7 and len(GUIDE) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_gallery_example_runs_and_draws_a_figure(path, monkeypatch):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.chdir(path.parent)
    runpy.run_path(str(path), run_name="__main__")
    assert plt.get_fignums(), f"{path.name} drew no figure"
    plt.close("all")


def test_guide_code_runs():
    namespace = {}
    for i, block in enumerate(GUIDE):  # the blocks build on each other, like a session
        exec(compile(re.sub(r"^   ", "", block, flags=re.M), f"docs/guide.rst block {i}", "exec"), namespace)


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
    claims = (tmp_path / "html" / "claims.html").read_text()  # the generated claims page, with its figures
    assert "4a. Practice, accuracy" in claims and "fob_tracks_maml_relu" in claims
    assert re.search(r'src="_images/mnist1d_paired\.png"', claims)


def test_the_api_reference_lists_every_module_of_the_package():
    import pkgutil

    import fobtheory

    modules = {f"fobtheory.{m.name}" for m in pkgutil.iter_modules(fobtheory.__path__) if not m.name.startswith("_")}
    listed = set(re.findall(r"^\.\. automodule:: (\S+)", (DOCS / "api.rst").read_text(), flags=re.M))
    assert modules - {"fobtheory.cli"} <= listed, f"add to docs/api.rst: {sorted(modules - listed)}"
