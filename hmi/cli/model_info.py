"""`hmi model-info`: check a GLB model; also the probe import's child process in a bundle."""

from __future__ import annotations

import argparse
import sys

from hmi.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Subparsers


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("model-info", help="check a GLB model: node tree and triangle count, or the error")
    p.add_argument("file", nargs="?", help="a .glb (or embedded .gltf) file")
    p.add_argument("--probe", action="store_true", help="also import it with VTK in a child process")
    p.add_argument("--render", action="store_true", help="with --probe: also draw one offscreen frame")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--probe-child", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_model_info)


def cmd_model_info(args: argparse.Namespace) -> int:
    """Validate a GLB and print its node tree and triangle count, or why it is refused."""
    if args.probe_child:
        # The probe import's child process (see hmi.scene.probe); this is how a frozen
        # bundle, which has no `python -m`, runs it.
        from hmi.ui.scene_probe import main as probe_main

        return probe_main(["--render"] if args.render else [])
    if not args.file:
        print("hmi model-info: a GLB file is required", file=sys.stderr)
        return EXIT_CONFIG
    import json

    from hmi.scene.probe import check_model
    from hmi.scene.report import describe

    check = check_model(args.file, cache=None, probe=args.probe, render=args.render)
    report = check.checked.report
    if args.json:
        data = report.to_json()
        if check.probe is not None:
            data["probe"] = {"ok": check.probe.ok, "message": check.probe.message, "seconds": check.probe.seconds}
        print(json.dumps(data, indent=2))
    else:
        for line in describe(report):
            print(line)
        if check.probe is not None:
            verdict = "OK" if check.probe.ok else f"FAILED: {check.probe.message}"
            print(f"probe import in a child process: {verdict} ({check.probe.seconds:.2f} s)")
    return EXIT_OK if check.ok else EXIT_FAILURE
