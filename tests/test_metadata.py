"""LICENSE and CITATION.cff agree with pyproject.toml and README.md."""
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_license_file_is_the_declared_license():
    text = (ROOT / "LICENSE").read_text()
    assert PROJECT["license"]["text"] == "MIT" and text.startswith("MIT License")
    assert "Copyright (c) 2026 The fobtheory developers" in text


def test_citation_file_has_the_required_keys_and_the_project_version():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= set(cff)
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    assert cff["version"] == PROJECT["version"] and cff["license"] == PROJECT["license"]["text"]
    (paper,) = cff["references"]  # the software is cited as itself; the paper it checks
    assert {"type", "title", "authors"} <= set(paper)
    bibtex_title = re.search(r"title\s*=\s*\{(.+?)\}", (ROOT / "README.md").read_text()).group(1)
    assert paper["title"] == bibtex_title and paper["year"] == 2026
