"""Random structural mutations of real glTF documents, for fuzzing the validator against VTK.

Each mutant changes one to three values anywhere in the JSON (numbers nudged to the edges
that matter: -1, 0, counts + 1, 2**31...; anything replaced by null, text, [] or {}),
deletes keys, or drops an element of a top-level array (shifting every later index, the
shape that made VTK crash on files other checks passed).
"""

from __future__ import annotations

import copy
import json
import random
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hmi.scene.builder import pack_glb


def read_glb(path: Path) -> tuple[dict[str, Any], bytes]:
    data = path.read_bytes()
    length = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + length])
    return doc, data[20 + length + 8 :]


def _leaf_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaf_paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from _leaf_paths(value, (*prefix, index))
    else:
        yield prefix


def mutants(seeds: list[tuple[dict[str, Any], bytes]], count: int, seed: int) -> Iterator[tuple[bytes, list[Any]]]:
    """`count` mutated GLBs with the list of changes made to each."""
    rng = random.Random(seed)
    for _ in range(count):
        seed_index = rng.randrange(len(seeds))
        doc, binary = copy.deepcopy(seeds[seed_index][0]), seeds[seed_index][1]
        changes: list[Any] = [seed_index]
        paths = [p for p in _leaf_paths(doc) if p]
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(paths)
            target: Any = doc
            try:
                for key in path[:-1]:
                    target = target[key]
                old = target[path[-1]]
            except (KeyError, IndexError, TypeError):
                continue
            if isinstance(old, int | float) and not isinstance(old, bool):
                new: Any = rng.choice(
                    [0, 1, -1, 2, old + 1, old - 1, old * 2, 2**31, 2**32 + 1, 65535, 3, old + 4, 0.5]
                )
            else:
                new = rng.choice([0, 1, -1, None, "x", [], {}, 7])
            if rng.random() < 0.1 and isinstance(target, dict):
                del target[path[-1]]
                changes.append(["del", list(path)])
            else:
                target[path[-1]] = new
                changes.append(["set", list(path), new])
        if rng.random() < 0.25:
            arrays = [k for k, v in doc.items() if isinstance(v, list) and v]
            if arrays:
                key = rng.choice(arrays)
                index = rng.randrange(len(doc[key]))
                del doc[key][index]
                changes.append(["drop", key, index])
        yield pack_glb(doc, binary), changes
