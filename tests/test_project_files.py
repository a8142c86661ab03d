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
    ci = [line for line in _text(".ci/run").splitlines() if line.startswith("make ")]
    assert ci == ["make lint", 'make test PYTEST_ARGS="--shuffle=random"']  # pytest's summary stays the last line


def test_mypy_checks_files_that_exist():
    block = re.search(r"(?ms)^\[tool\.mypy\]\n(?:#.*?\n)*files = \[\n(.*?)\]", _text("pyproject.toml"))
    assert block is not None
    files = re.findall(r'"([^"]+)"', block.group(1))
    assert files[:2] == ["sevila_tools/pipeline.py", "sevila_tools/runtime.py"]
    assert all((REPO / f).exists() for f in files)


def test_docs_index_lists_every_page_and_starts_with_an_order():
    index = _text("docs/README.md")
    linked = set(re.findall(r"\]\(([\w-]+\.md)\)", index))
    pages = {p.name for p in (REPO / "docs").glob("*.md")} - {"README.md"}
    assert linked == pages
    start = index[index.index("## Start here") : index.index("## All pages")]
    assert re.findall(r"(?m)^(\d+)\. ", start) == [str(i) for i in range(1, 8)]
    assert ".venv/bin/sevila" in start and "data.md" in start and "accuracy.md" in start


def test_data_and_accuracy_pages_cover_every_dataset():
    from sevila_tools.eval.datasets import available_datasets, get_dataset

    names = {"nextqa": "NExT-QA", "star": "STAR", "how2qa": "How2QA", "tvqa": "TVQA", "vlep": "VLEP",
             "qvhighlights": "QVHighlights", "needleqa": "NeedleQA"}
    assert set(available_datasets()) == set(names)
    data, accuracy = _text("docs/data.md"), _text("docs/accuracy.md")
    for name, title in names.items():
        assert re.search(rf"(?m)^\| {title} \| ", data), name
        if get_dataset(name).task == "multiple_choice" and name != "needleqa":  # synthetic: no paper numbers
            assert re.search(rf"(?m)^\| {title} \| \d+\.\d \| \d+\.\d \|", accuracy), name
    assert "| NExT-QA | 63.6 | 73.8 |" in accuracy and "Table 2" in accuracy


def test_the_memory_figure_is_marked_as_an_estimate():
    readme = " ".join(_text("README.md").split())
    assert "about 9 GB of GPU memory in the default precision at batch 1, an **estimate**" in readme
    assert "source .venv/bin/activate" in readme and ".venv/bin/sevila --help" in readme
    bench = next(line for line in _text("BENCHMARKS.md").splitlines() if "peak memory ≤ 9 GB" in line)
    assert "**estimate**" in bench and "not measured" in bench
