"""The files that help the next engineer say true things: one version, the changelog, licence, lint set-up."""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

import yaml
from packaging.version import Version

import sevila_tools

REPO = Path(__file__).resolve().parents[1]


def _text(name: str) -> str:
    return (REPO / name).read_text()


def test_the_version_is_written_once_and_installed_as_written():
    pyproject = _text("pyproject.toml")
    project = pyproject[pyproject.index("[project]") : pyproject.index("\n[", pyproject.index("[project]"))]
    assert 'dynamic = ["version"]' in project and not re.search(r"(?m)^version\s*=", project)
    assert 'version = { attr = "sevila_tools.__version__" }' in pyproject
    assert md.version("sevila-tools") == sevila_tools.__version__  # the Makefile reinstalls when it changes


def test_the_changelog_lists_released_versions_below_the_current_one():
    headings = re.findall(r"(?m)^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", _text("CHANGELOG.md"))
    assert headings[0] == ("Unreleased", "")
    released = [Version(v) for v, _ in headings[1:]]
    assert [str(v) for v in released] == ["0.2.0", "0.1.0"] and all(date for _, date in headings[1:])
    current = Version(sevila_tools.__version__)
    assert current > released[0]
    assert current.is_devrelease or current in released  # a release version has its section


def test_the_licence_is_the_declared_bsd_3_clause():
    licence = _text("LICENSE")
    assert licence.startswith("BSD 3-Clause License\n\nCopyright (c) 2026, the sevila_tools authors\n")
    assert "Neither the name of the copyright holder" in licence
    assert 'license = { text = "BSD-3-Clause" }' in _text("pyproject.toml")


def test_contributing_points_at_files_and_targets_that_exist():
    text = _text("CONTRIBUTING.md")
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (REPO / link).exists(), link
    targets = set(re.findall(r"(?m)^([\w-]+):", _text("Makefile")))
    assert set(re.findall(r"make ([\w-]+)", text)) <= targets
    assert "docs/extending.md" in text


def test_lint_and_pre_commit_run_the_same_checks():
    lint = re.search(r"(?m)^lint:.*\n((?:\t.*\n)+)", _text("Makefile"))
    assert lint is not None
    make_cmds = [line.strip() for line in lint.group(1).splitlines()]
    assert make_cmds == ["$(BIN)/ruff check .", "$(BIN)/mypy"]
    hooks = yaml.safe_load(_text(".pre-commit-config.yaml"))["repos"][0]["hooks"]
    assert [h["entry"].split()[0] for h in hooks] == [".venv/bin/ruff", ".venv/bin/mypy"]
    assert all(h["language"] == "system" for h in hooks)  # local: nothing fetched at commit time
    ci = _text(".ci/run")
    assert ci.index('make test PYTEST_ARGS="--shuffle=random"') < ci.index("make lint")


def test_mypy_checks_files_that_exist():
    block = re.search(r"(?ms)^\[tool\.mypy\]\n(?:#.*?\n)*files = \[\n(.*?)\]", _text("pyproject.toml"))
    assert block is not None
    files = re.findall(r'"([^"]+)"', block.group(1))
    assert files[:2] == ["sevila_tools/pipeline.py", "sevila_tools/runtime.py"]
    assert all((REPO / f).exists() for f in files)
