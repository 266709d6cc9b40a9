"""tools/mypy_ratchet.py on canned mypy output; mypy itself runs in `make test`, not here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "tools" / "mypy_ratchet.py"
_spec = importlib.util.spec_from_file_location("mypy_ratchet", _PATH)
assert _spec is not None and _spec.loader is not None
ratchet = importlib.util.module_from_spec(_spec)
sys.modules["mypy_ratchet"] = ratchet  # dataclasses look their module up
_spec.loader.exec_module(ratchet)

OUTPUT = """\
hmi/core/bus.py:12: error: Incompatible types in assignment  [assignment]
hmi/core/bus.py:12: note: See https://mypy.readthedocs.io
hmi/cli/__init__.py:3:5: error: Name "x" is not defined  [name-defined]
hmi/ui/trend.py:7: note: Revealed type is "int"
"""

PYPROJECT = """\
[tool.mypy]
files = ["hmi"]

{block}

[tool.other]
x = 1
"""


def test_modules_with_errors_ignores_notes_and_maps_packages() -> None:
    """Only error lines count, and a package's __init__ is the package's module."""
    assert ratchet.modules_with_errors(OUTPUT) == {"hmi.core.bus", "hmi.cli"}


def test_judge_fails_on_new_modules_and_on_clean_listed_ones() -> None:
    """A module with errors off the list, and a listed module without any, both fail the check."""
    verdict = ratchet.judge(["hmi.cli", "hmi.runtime"], {"hmi.cli", "hmi.core.bus"})
    assert verdict.new == ["hmi.core.bus"]
    assert verdict.clean == ["hmi.runtime"]
    assert not verdict.ok
    assert ratchet.judge(["hmi.cli"], {"hmi.cli"}).ok


def test_block_round_trips_and_leaves_the_rest_alone() -> None:
    """The rendered block parses back to the same sorted list; an empty list is only the markers."""
    text = PYPROJECT.format(block=ratchet.render_block(["hmi.runtime", "hmi.cli"]))
    before, listed, after = ratchet.split_block(text)
    assert listed == ["hmi.cli", "hmi.runtime"]
    assert before.startswith("[tool.mypy]") and after.endswith("x = 1\n")
    assert "[[tool.mypy.overrides]]" not in before + after
    empty = PYPROJECT.format(block=ratchet.render_block([]))
    assert ratchet.split_block(empty)[1] == []
    assert "[[tool.mypy.overrides]]" not in empty


def test_the_projects_block_is_found() -> None:
    """pyproject.toml carries the markers the script rewrites between."""
    ratchet.split_block(ratchet.PYPROJECT.read_text())
