"""environment.yml stays in sync with pyproject.toml."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_this_package_with_existing_extras():
    env = (ROOT / "environment.yml").read_text()
    pip_lines = re.findall(r"^\s*-\s*(-e\s+)?\.\[([^\]]+)\]\s*$", env, flags=re.M)
    assert len(pip_lines) == 1, "environment.yml must pip-install the local package exactly once"
    extras = {e.strip() for e in pip_lines[0][1].split(",")}
    declared = set(_pyproject()["project"]["optional-dependencies"])
    assert extras <= declared, f"environment.yml names extras {extras - declared} not in pyproject"
    assert {"course", "test"} <= extras


def test_environment_yml_python_matches_requires_python():
    env = (ROOT / "environment.yml").read_text()
    conda_python = re.search(r"^\s*-\s*python\s*([<>=!~].*)$", env, flags=re.M)
    assert conda_python, "environment.yml must pin a python lower bound"
    assert conda_python.group(1).strip() == _pyproject()["project"]["requires-python"]


def test_no_exact_pins():
    project = _pyproject()["project"]
    deps = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    pinned = [d for d in deps if "==" in d]
    assert not pinned, f"use lower bounds, not exact pins: {pinned}"


def test_declared_extras_are_the_ones_the_makefile_installs():
    makefile = (ROOT / "Makefile").read_text()
    declared = set(_pyproject()["project"]["optional-dependencies"])
    used = set(re.findall(r'-e "\.\[([^\]]+)\]"', makefile))
    used = {e.strip() for group in used for e in group.split(",")}
    assert used == declared
