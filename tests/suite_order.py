"""The ``--shuffle`` option of the test suite: run test files, and the tests inside each file, in a seeded order.

``pytest --shuffle=random`` draws a seed and prints it in the header and at the end; ``pytest --shuffle=SEED``
repeats that order. Tests of one file (and of one class) stay together, so module fixtures are built once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def parse_seed(value: str) -> int:
    """``random`` draws a fresh seed; anything else must be a non-negative integer."""
    if value == "random":
        return random.SystemRandom().randrange(10**6)
    if not value.isdigit():
        raise ValueError(f"--shuffle takes an integer seed or 'random', not {value!r}")
    return int(value)


def _group_key(nodeid: str) -> tuple[str, str]:
    """(file, class) of a test id: ``tests/a.py::Cls::test[x]`` -> (``tests/a.py``, ``Cls``)."""
    parts = nodeid.split("::")
    return parts[0], "::".join(parts[1:-1])


def shuffle_ids(nodeids: Sequence[str], seed: int) -> list[int]:
    """Positions of ``nodeids`` in shuffled order: files shuffled, then classes in a file, then tests in a class."""
    rng = random.Random(seed)
    files: dict[str, dict[str, list[int]]] = {}
    for i, nodeid in enumerate(nodeids):
        path, cls = _group_key(nodeid)
        files.setdefault(path, {}).setdefault(cls, []).append(i)
    order: list[int] = []
    names = list(files)
    rng.shuffle(names)
    for name in names:
        classes = list(files[name].values())
        rng.shuffle(classes)
        for positions in classes:
            rng.shuffle(positions)
            order.extend(positions)
    return order


def reorder(items: list[T], nodeids: Sequence[str], seed: int) -> None:
    """Shuffle ``items`` (pytest's collected items, whose ids are ``nodeids``) in place."""
    items[:] = [items[i] for i in shuffle_ids(nodeids, seed)]
