"""One plugin registry: lookups, listings, errors, clash checks, and a selector from a separately installed
distribution (Python entry points) reaching ``sevila selectors``, ``sevila localize --help`` and ``sevila ablate``."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from sevila_tools import plugins
from sevila_tools.errors import InputError
from sevila_tools.registry import Registry
from sevila_tools.selectors import Selector, options_for, register

PLUGIN = '''"""A selector shipped in its own distribution."""
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from sevila_tools.selectors import Selector
from sevila_tools.selectors.base import selection_from_positions


class LastFrames(Selector):
    name: ClassVar[str] = "last_frames"
    description: ClassVar[str] = "The k last candidate frames (an example plugin)."

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        tail_gap: int = Field(0, ge=0, description="Candidates skipped at the very end.")

    def __init__(self, tail_gap: int = 0) -> None:
        self.tail_gap = tail_gap

    def select(self, inp, k):
        n = len(inp.candidates.indices) - self.tail_gap
        return selection_from_positions(self.name, inp, list(range(n - k, n)), None)
'''

CHECK = r'''
import json, sys
from typer.testing import CliRunner
from sevila_tools.cli.app import app
from sevila_tools.eval.ablate import default_selectors
run = lambda *a: CliRunner().invoke(app, list(a), terminal_width=100)
listing = run("selectors", "--json")
print(json.dumps({
    "listing": json.loads(listing.stdout),
    "text": run("selectors").stdout,
    "localize": run("localize", "--help").stdout,
    "ablate": run("ablate", "--help").stdout,
    "ablate_default": default_selectors(True)[0],
}))
'''


def _wheel(folder: Path) -> Path:
    """A wheel of ``sevila-last-frames`` 0.1 whose entry point adds the selector (built by hand, no network)."""
    dist = "sevila_last_frames-0.1.dist-info"
    files = {
        "sevila_last_frames/__init__.py": PLUGIN,
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: sevila-last-frames\nVersion: 0.1\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": "[sevila_tools.selectors]\nlast_frames = sevila_last_frames:LastFrames\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{dist}/RECORD"])
    wheel = folder / "sevila_last_frames-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return wheel


def test_a_selector_from_another_distribution_reaches_the_commands(tmp_path):
    """``pip install`` the plugin into a separate folder; a fresh process with it on its path lists the
    selector, offers it in ``localize --help`` and ``ablate`` (help and default selection)."""
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(site)]
    subprocess.run([*pip, str(_wheel(tmp_path))], check=True, capture_output=True, timeout=300)
    env = {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    row = seen["listing"]["last_frames"]
    assert row["description"] == "The k last candidate frames (an example plugin)."
    assert row["source"] == "sevila-last-frames 0.1" and row["options"]["tail_gap"]["default"] == 0
    assert "last_frames" in seen["text"] and "from sevila-last-frames 0.1" in seen["text"]
    for help_text in (seen["localize"], seen["ablate"]):
        assert "last_frames" in " ".join(help_text.split()) and "tail_gap" in help_text
    assert "last_frames" in seen["ablate_default"]


def test_unknown_names_read_the_same_in_every_kind():
    for kind, name in (("selectors", "magic"), ("answerers", "best"), ("datasets", "kinetics"),
                       ("prompt_styles", "fancy"), ("training_tasks", "dance")):
        reg = plugins.registry(kind)
        with pytest.raises(InputError) as err:
            reg[name]
        assert str(err.value) == f"unknown {reg.kind} {name!r}; choose one of: {', '.join(reg.names())}"
        assert name not in reg and reg.get(name) is None


def test_listing_order_filters_and_metadata():
    assert plugins.selectors.names()[:2] == ["uniform", "random"]  # by rank
    assert plugins.selectors.names("clip*") == ["clip"]
    assert plugins.selectors.names(lambda c: c.needs_gold) == ["oracle"]
    assert plugins.datasets.names()[-1] == "qvhighlights"  # multiple choice first
    assert plugins.datasets["NextQA"].name == "nextqa"  # datasets are case-insensitive
    info = plugins.selectors.info("random")
    assert info.source == "sevila_tools.selectors.builtin" and info.metadata["options"]["seed"]["default"] == 0


def test_a_broken_entry_point_is_reported_not_raised(monkeypatch, caplog):
    from importlib import metadata

    ep = metadata.EntryPoint("broken", "no_such_module_xyz:Thing", "sevila_tools.answerers")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [ep] if group == ep.group else [])
    reg = Registry("answerer", "sevila_tools.answerers")
    with caplog.at_level(logging.WARNING, "sevila_tools.plugins"):
        assert reg.names() == []
    assert "ModuleNotFoundError" in reg.failed["broken"] and "could not be loaded" in caplog.text


def _selector(name: str, **fields: tuple[type, object]) -> type[Selector]:
    opts = type("Options", (BaseModel,), {"model_config": ConfigDict(extra="forbid"),
                                          "__annotations__": {k: t for k, (t, _) in fields.items()},
                                          **{k: Field(d, description=k) for k, (_, d) in fields.items()}})
    return type(name, (Selector,), {"name": name, "Options": opts, "select": lambda self, inp, k: None})


def test_selector_options_cannot_clash():
    with plugins.selectors.scoped():
        with pytest.raises(ValueError, match="option 'seed' .* clashes with the same option of selector 'random'"):
            register(_selector("seedy", seed=(str, "x")))
        register(_selector("seeded", seed=(int, 3)))  # same key, same kind: one flag feeds both
        assert "seeded" in plugins.selectors
    assert "seeded" not in plugins.selectors  # scoped() undid the registration


def test_selector_options_namespaced_by_selector():
    shared = {"seed": 1, "random.seed": 7, "clip.text_mode": "question_only"}
    assert options_for("random", shared) == {"seed": 7}
    assert options_for("clip", shared) == {"text_mode": "question_only"}
