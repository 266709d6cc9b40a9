"""The names vtkGLTFImporter (VTK 9.7) gives glTF nodes in its scene hierarchy.

An empty name becomes `node_<index>`; any other name goes through
vtkDataAssembly::MakeValidNodeName, which keeps only ASCII letters, digits, '_', '-' and
'.', and prefixes '_' when the result is empty or does not start with a letter or '_'.
So "Joint 1" is "Joint1", "über" is "ber", "日本" is "_", and two nodes named "Roller"
stay two "Roller"s: bindings therefore look parts up by their glTF name through the
validator's map, never by VTK's name. tests/ui/test_scene_loader.py checks this rule
against VTK itself.
"""

from __future__ import annotations

import re

_INVALID = re.compile(r"[^A-Za-z0-9_.\-]")
_VALID_FIRST = re.compile(r"[A-Za-z_]")


def make_valid_node_name(name: str) -> str:
    kept = _INVALID.sub("", name)
    if not kept or not _VALID_FIRST.match(kept[0]):
        kept = "_" + kept
    return kept


def vtk_node_name(name: str, index: int) -> str:
    if name == "":
        return f"node_{index}"
    # VTK passes the name on as a C string: it ends at the first NUL, and what is left may
    # be empty (VTK then logs an error and names the node "").
    c_string = name.split("\0", 1)[0]
    return make_valid_node_name(c_string) if c_string else ""
