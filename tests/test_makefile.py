"""The Makefile's torch step: the marker records the spec, and a different TORCH_SPEC reinstalls torch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A stand-in venv whose python only logs its arguments (nothing is installed)."""
    (tmp_path / "bin").mkdir()
    python = tmp_path / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/pip.log\n')
    python.chmod(0o755)
    return tmp_path


def _make(venv: Path, *args: str) -> tuple[str, list[str]]:
    log = venv / "pip.log"
    log.unlink(missing_ok=True)
    proc = subprocess.run(["make", "-s", "-C", str(REPO), f"VENV={venv}", *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, log.read_text().splitlines() if log.exists() else []


def test_changing_torch_spec_reinstalls_torch(venv: Path):
    mark = str(venv / ".torch")
    out, calls = _make(venv, mark)
    assert calls == ["-m pip install -q torch==2.13.0"] and "reinstalling" not in out
    assert (venv / ".torch").read_text() == "torch==2.13.0\n"
    assert _make(venv, mark)[1] == []  # same spec: nothing to do
    gpu = "torch==2.13.0 --index-url https://example.invalid/cu128"
    out, calls = _make(venv, mark, f"TORCH_SPEC={gpu}")
    assert out.splitlines() == [f"TORCH_SPEC changed ('torch==2.13.0' -> '{gpu}'): reinstalling torch"]
    assert calls == ["-m pip uninstall -q -y torch", f"-m pip install -q {gpu}"]
    assert (venv / ".torch").read_text() == gpu + "\n"
    assert _make(venv, mark, f"TORCH_SPEC={gpu}")[1] == []
    assert _make(venv, mark)[1][0] == "-m pip uninstall -q -y torch"  # and back to the default


def test_the_package_is_reinstalled_over_a_new_torch(venv: Path):
    _make(venv, str(venv / ".torch"))
    (venv / ".installed").touch()
    assert _make(venv, str(venv / ".installed"))[1] == []
    _, calls = _make(venv, str(venv / ".installed"), "TORCH_SPEC=torch==2.12.0")
    assert calls == ["-m pip uninstall -q -y torch", "-m pip install -q torch==2.12.0", "-m pip install -q -e ."]
