"""The probe import: run in a child process so a file that crashes VTK kills only the child.

`python -m hmi.ui.scene_probe [--render]` reads the model's bytes on stdin (the exact bytes
the window will load), validates them again, imports them with vtkGLTFImporter and prints
one JSON line: {"version": 1, "vtk": ..., "actors": N, "expected": M, ...}. Exit 0 means
VTK survived; hmi/scene/probe.py turns anything else (a signal, an abort) into a verdict.
With --render it also draws one small offscreen frame (needs a display).
"""

from __future__ import annotations

import json
import os
import sys
import time

PROBE_FORMAT = 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    started = time.perf_counter()
    data = sys.stdin.buffer.read()

    from hmi.scene.validate import validate_bytes

    checked = validate_bytes(data, "<probe>")
    if checked.data is None or checked.report.summary is None:
        print(json.dumps({"version": PROBE_FORMAT, "refused": checked.report.headline()}))
        return 3

    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL classes)
    from vtkmodules.vtkCommonCore import vtkVersion
    from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow

    from hmi.ui.scene_loader import import_glb

    loaded = time.perf_counter()
    renderer = vtkRenderer()
    model = import_glb(checked.data, renderer, checked.report.summary)
    rendered = False
    if "--render" in args and os.environ.get("DISPLAY"):
        window = vtkRenderWindow()
        window.SetOffScreenRendering(True)
        window.SetSize(64, 64)
        window.AddRenderer(renderer)
        renderer.ResetCamera()
        window.Render()
        window.Finalize()
        rendered = True
    result = {
        "version": PROBE_FORMAT,
        "vtk": vtkVersion.GetVTKVersion(),
        "actors": model.actor_count,
        "expected": checked.report.summary.expected_actors,
        "mapped": sum(len(a) for a in model.node_actors.values()),
        "mapping_warnings": model.mapping_warnings[:20],
        "messages": model.vtk_messages[-4000:],
        "rendered": rendered,
        "startup_s": round(loaded - started, 4),
        "import_s": round(model.seconds, 4),
        "total_s": round(time.perf_counter() - started, 4),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
