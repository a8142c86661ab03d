"""The package's structure as claims: layers only import downwards, no import cycles, size limits, and no
plugin name is compared as a string outside the plugin's own module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: source folder -> import name (cli/, eval/, agents/, benchmarks/ install into the sevila_tools namespace)
ROOTS = {"sevila_tools": "sevila_tools", "cli": "sevila_tools.cli", "eval": "sevila_tools.eval",
         "agents": "sevila_tools.agents", "benchmarks": "sevila_tools.benchmarks"}
#: lower layers first; a module may import its own layer and the layers below it, never above
LAYERS: list[tuple[str, ...]] = [
    ("errors", "registry", "prompts", "schemas", "timing", "provenance", "progress", "synthetic", "frames",
     "files"),
    ("video", "synth"),
    ("modeling", "tiny", "runtime", "checkpoint", "loading"),
    ("encoding",),
    ("selectors", "answering"),
    ("pipeline",),
    ("results", "tools", "chain", "plotting", "demo"),
    ("eval", "training", "recipes", "plugins"),
    ("agents", "web", "benchmarks", "lmms_eval"),
    ("cli",),
]


def _modules() -> dict[str, Path]:
    out = {}
    for folder, name in ROOTS.items():
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([name, *parts])] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int | None:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if module == "sevila_tools":
        return 0  # the facade holds the version and resolves its exports lazily (no import statements)
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    return None


def _imports(module: str, path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in MODULES}


def test_every_module_has_a_layer():
    assert [m for m in MODULES if _layer(m) is None] == []


def test_layers_only_import_downwards():
    """Also lazy imports inside functions: video, model and encoding never reach tools, eval, training..."""
    bad = []
    for module, path in MODULES.items():
        mine = _layer(module)
        for target in _imports(module, path):
            theirs = _layer(target)
            if theirs is not None and mine is not None and theirs > mine:
                bad.append(f"{module} -> {target}")
    assert bad == []


def test_no_import_cycles():
    graph = {m: _imports(m, p, top_level_only=True) - {m} for m, p in MODULES.items()}
    # a package's __init__ re-exporting its submodules is not a cycle of the submodules
    for m in graph:
        graph[m] = {t for t in graph[m] if not (m.startswith(t + ".") and MODULES[t].name == "__init__.py")}
    seen: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in seen:
                visit(nxt, [*stack, nxt])
        seen[node] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_size_limits(module):
    """No module over 600 lines, no function over 80."""
    path = MODULES[module]
    text = path.read_text()
    assert text.count("\n") <= 600, f"{path} has {text.count(chr(10))} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= 80, f"{path}:{node.lineno} {node.name} has {length} lines"


def test_cli_stays_thin():
    """cli/ only parses and calls: at most 1,000 lines in all, no function over 40 lines (issue 19)."""
    files = sorted((REPO / "cli").rglob("*.py"))
    assert sum(p.read_text().count("\n") for p in files) <= 1000
    long = [f"{p.name}:{n.lineno} {n.name}" for p in files for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno - n.lineno + 1 > 40]
    assert long == []


def _plugin_names() -> dict[str, set[str]]:
    from sevila_tools.answering import ANSWER_STRATEGIES
    from sevila_tools.eval.datasets import available_datasets
    from sevila_tools.prompts import PROMPT_STYLES
    from sevila_tools.selectors import REGISTRY
    from sevila_tools.training.tasks import task_names

    return {"selector": set(REGISTRY), "dataset": set(available_datasets()), "answerer": set(ANSWER_STRATEGIES),
            "prompt style": set(PROMPT_STYLES), "training task": set(task_names())}


def test_no_plugin_name_is_compared_as_a_string_outside_its_module():
    names = {n for group in _plugin_names().values() for n in group}
    alternatives = "|".join(map(re.escape, names))
    pattern = re.compile(r"""(==|!=|\bin)\s*[\(\[\{]?\s*["'](""" + alternatives + r""")["']""")
    hits = []
    for module, path in MODULES.items():
        for i, line in enumerate(path.read_text().splitlines(), 1):
            for match in pattern.finditer(line):
                owner = match.group(2)
                if re.search(r"\bmode\s*(==|!=)\s*$", line[: match.start() + 2]):
                    continue  # frame-sampling modes ("uniform", "random") are not selector names
                if re.search(r"\bfor\s+\w+\s+$", line[: match.start()]):
                    continue  # iterating over a tuple of keys ("file", "records"...) compares no plugin name
                if owner not in path.stem and owner not in module:
                    hits.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert hits == []


def test_the_random_weights_notice_is_worded_once():
    """Every result, log line, table and page gets the notice from ``schemas.weights_notice``; no module words it
    again."""
    from sevila_tools.schemas import RANDOM_WEIGHTS_NOTICE, weights_notice

    assert weights_notice(True) == RANDOM_WEIGHTS_NOTICE and weights_notice(False) is None
    worded = [str(p.relative_to(REPO)) for p in MODULES.values() if re.search(r"RANDOM WEIGHTS|meaningless",
                                                                             p.read_text())]
    assert worded == ["sevila_tools/schemas.py"]
