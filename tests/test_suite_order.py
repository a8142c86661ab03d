"""The suite runs in any order: no test module lends its fixtures to others, and ``--shuffle`` prints its seed."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import suite_order

TESTS = Path(__file__).resolve().parent
IDS = [
    "tests/a.py::test_1",
    "tests/a.py::test_2",
    "tests/a.py::K::test_3",
    "tests/a.py::K::test_4[x]",
    "tests/b.py::test_5",
    "tests/c.py::test_6",
    "tests/c.py::test_7",
]


def test_only_conftest_registers_plugins():
    """A ``pytest_plugins`` line in a test module registers the named module for the whole session: its autouse
    fixtures then run in every test collected after it (one torch thread leaked from the training tests into the
    eval tests and changed their bytes). Helpers are imported by name instead."""
    offenders = []
    for path in sorted(TESTS.glob("*.py")):
        if path.name == "conftest.py":
            continue
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if any(isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in targets):
                offenders.append(path.name)
    assert offenders == []


def test_shuffle_keeps_files_and_classes_together_and_repeats_with_its_seed():
    order = suite_order.shuffle_ids(IDS, 3)
    assert sorted(order) == list(range(len(IDS)))
    files = [IDS[i].split("::")[0] for i in order]
    assert [f for i, f in enumerate(files) if i == 0 or files[i - 1] != f] == sorted(set(files), key=files.index)
    in_class = [j for j, i in enumerate(order) if "::K::" in IDS[i]]
    assert in_class[1] - in_class[0] == 1
    assert suite_order.shuffle_ids(IDS, 3) == order
    assert len({tuple(suite_order.shuffle_ids(IDS, s)) for s in range(20)}) > 5


def test_seed_parsing():
    assert suite_order.parse_seed("42") == 42
    assert 0 <= suite_order.parse_seed("random") < 10**6
    with pytest.raises(ValueError, match="--shuffle takes an integer seed or 'random', not '-3'"):
        suite_order.parse_seed("-3")


def _run(folder: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "no:randomly", *args]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_shuffled_run_prints_a_seed_that_repeats_the_order(tmp_path):
    for name in ("conftest.py", "suite_order.py"):
        shutil.copy(TESTS / name, tmp_path / name)
    for f in "abc":
        body = "".join(f"def test_{f}{i}():\n    pass\n\n\n" for i in range(3))
        (tmp_path / f"test_{f}.py").write_text(body)
    out = _run(tmp_path, "--shuffle=random")
    seed = re.findall(r"shuffled order: repeat it with --shuffle=(\d+)", out)
    assert len(seed) == 2 and seed[0] == seed[1]  # in the header and at the end
    ran = re.findall(r"::(test_\w+) PASSED", out)
    ids = [f"test_{f}.py::test_{f}{i}" for f in "abc" for i in range(3)]
    assert ran == [ids[i].split("::")[1] for i in suite_order.shuffle_ids(ids, int(seed[0]))]  # = that seed's order
