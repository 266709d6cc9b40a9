"""The checks of a project that read more than its file: every machine's model exists and is a
GLB the window can show, every bound node is in its model, every demo machine exists.

`hmi check-config` and `hmi run` both load a project through `load_checked_project`, so `run`
never starts a project that `check-config` refuses. It lives here, not in hmi.config, because
it reads GLB files (hmi.scene) and knows the demo plant (hmi.sim), which hmi.config may not
import (docs/architecture.md). Each model file is validated once, bound or not: about a
millisecond per demo model, so nothing is cached.
"""

from __future__ import annotations

from pathlib import Path

from hmi.config.loader import ConfigError, ConfigIssue, format_key_path, load_project
from hmi.config.models import Project
from hmi.scene.bindings_check import check_binding_nodes
from hmi.scene.report import ModelReport
from hmi.scene.validate import validate_file
from hmi.sim.plant import unknown_machines


def load_checked_project(path: str | Path) -> Project:
    """load_project, then check_project_files; raises ConfigError listing every problem."""
    project = load_project(path)
    issues = check_project_files(project, str(path))
    if issues:
        raise ConfigError(issues)
    return project


def check_project_files(project: Project, name: str | None = None) -> list[ConfigIssue]:
    """Every problem with the files a project names, each once, at its key in the project file."""
    name = name if name is not None else str(project.source_path or "")
    unknown = set(unknown_machines(project.simulator.machines))
    problems: list[tuple[list[str | int], str]] = [
        (["simulator", "machines", i], f"unknown demo machine {machine!r}")
        for i, machine in enumerate(project.simulator.machines)
        if machine in unknown
    ]
    reports: dict[Path, ModelReport] = {}
    usable: dict[str, Path | None] = {}  # machine -> its model, None: none configured
    for machine, config in project.machines.items():
        if not config.model:
            usable[machine] = None
            continue
        path = project.resolve_path(config.model)
        where: list[str | int] = ["machines", machine, "model"]
        if not path.is_file():
            problems.append((where, f"no such file: {path}"))
            continue
        if path not in reports:
            reports[path] = validate_file(path).report
        report = reports[path]
        if not report.ok:
            problems.append((where, f"the model {path.name} cannot be used: {report.headline()}"))
            continue
        usable[machine] = path
    # A binding to a machine whose model is missing or refused is left out (not in `usable`):
    # that model's message above says it once, not once per binding.
    problems += check_binding_nodes(project.bindings, usable, reports)
    return [ConfigIssue(name, format_key_path(loc), message) for loc, message in problems]
