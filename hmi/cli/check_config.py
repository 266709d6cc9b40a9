"""`hmi check-config`: validate a project file and the files it names."""

from __future__ import annotations

import argparse
import sys

from hmi.cli.common import EXIT_CONFIG, EXIT_OK, Subparsers
from hmi.config import ConfigError


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("check-config", help="validate a project file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)


def cmd_check_config(args: argparse.Namespace) -> int:
    from hmi.project_checks import load_checked_project

    try:
        project = load_checked_project(args.file)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"{args.file}: OK: project {project.project.name!r}, {len(project.connections)} connection(s), "
        f"{len(project.machines)} machine(s), {len(project.tags)} tag(s), {len(project.trends)} trend(s), "
        f"{len(project.alarms)} alarm(s), {len(project.bindings)} 3D binding(s), {len(project.twin)} twin model(s)"
    )
    for note in project.migration_notes:  # an older format, upgraded in memory
        print(note)
    return EXIT_OK
