"""`hmi check-config` for 3D bindings: does each bound node exist in its machine's model?

The loader checks machines and tags (hmi.config.bindings.check_bindings); this reads the
GLB files themselves, so it lives here, beside the validator. Runs on any thread.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

from hmi.config.bindings import BindingConfig
from hmi.scene.report import ModelReport, ModelSummary
from hmi.scene.validate import validate_file


def check_binding_nodes(
    bindings: Sequence[BindingConfig],
    models: Mapping[str, Path | None],
    reports: Mapping[Path, ModelReport] | None = None,
) -> list[tuple[list[str | int], str]]:
    """(key path, message) for every binding whose machine has no usable model or whose
    node is not in it, with the closest names as a hint. `models` maps machine id to its
    GLB path (resolved against the project file), or None when none is configured;
    `reports` holds verdicts already made (hmi.project_checks), so no file is read twice."""
    problems: list[tuple[list[str | int], str]] = []
    summaries: dict[str, ModelSummary | str] = {}
    for i, binding in enumerate(bindings):
        if binding.machine not in models:
            continue  # an unknown machine is the loader's message
        path = models[binding.machine]
        if path is None:
            problems.append((["bindings", i, "machine"], f"machine {binding.machine!r} has no model to bind to"))
            continue
        if binding.machine not in summaries:
            report = reports[path] if reports is not None and path in reports else validate_file(path).report
            summaries[binding.machine] = report.summary if report.ok and report.summary else report.headline()
        summary = summaries[binding.machine]
        if isinstance(summary, str):
            problems.append((["bindings", i, "node"], f"the model {path.name} cannot be used: {summary}"))
            continue
        node = summary.node_named(binding.node)
        if node is None or not node.in_scene:
            names = sorted({n.name for n in summary.walk() if n.name})
            close = difflib.get_close_matches(binding.node, names, n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            problems.append((["bindings", i, "node"], f"no node {binding.node!r} in {path.name}{hint}"))
    return problems
