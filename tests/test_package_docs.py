"""Each package's docstring names every module in it, so a newcomer can find where things go."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "perceptlab"
PACKAGES = sorted(p.parent for p in ROOT.rglob("__init__.py") if p.parent != ROOT)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_package_docstring_names_every_module(package):
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    named = set(re.findall(r":mod:`\.(\w+)`", doc))
    modules = {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    assert modules - named == set(), f"{package.name}/__init__.py does not say what these hold"
    assert named - modules == set(), f"{package.name}/__init__.py names modules that are not there"
