"""The self-test's checks that need Qt or VTK (hmi/selftest.py runs them, in order).

Both run without a display: the main window on Qt's offscreen platform (without its 3D
view, whose VTK widget needs a real window system), the 3D models in a VTK render window
of their own, through EGL when there is no X server. They load the classes the
application loads (MainWindow, TrendView, qasync, SceneView's module, vtkGLTFImporter
through hmi.ui.scene_loader), so a module or plugin missing from a bundle fails here.

Threads: everything here runs on the calling (main) thread.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np
import qasync
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the OpenGL back end)
from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QLibraryInfo, QMessageLogContext, QtMsgType, qInstallMessageHandler
from PySide6.QtWidgets import QApplication
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkVersion
from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow, vtkWindowToImageFilter

from hmi.config.models import Project
from hmi.core.quality import Quality
from hmi.historian.reader import HistoryLookup
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.scene.probe import ModelCheck
from hmi.ui.main_window import MainWindow
from hmi.ui.scene_loader import import_glb
from hmi.ui.tag_table import COL_QUALITY, COL_TAG
from hmi.ui.theme import QUALITY_LABEL

RENDER_SIZE = (160, 120)
# The platform plugin a desktop session needs, per OS (the offscreen one is used here).
DESKTOP_PLATFORM = {"linux": "qxcb", "win32": "qwindows", "darwin": "qcocoa"}


class CheckFailed(Exception):
    """A check found the installation broken; the message says what is wrong."""


def versions() -> str:
    return f"Qt {pyside_version}, VTK {vtkVersion.GetVTKVersion()}"


def _application() -> QApplication:
    app = QApplication.instance()
    if app is None:
        _drop_offscreen_notices()
        # The command-line option beats QT_QPA_PLATFORM, and is not inherited by children.
        app = QApplication([sys.argv[0], "-platform", "offscreen"])
    assert isinstance(app, QApplication)
    return app


# Notices that are expected here and would only clutter the summary: the offscreen
# platform cannot propagate size hints, and a clean environment (env -i) has no UTF-8 locale.
EXPECTED_NOTICES = ("propagateSizeHints", "Detected locale", "Qt depends on a UTF-8 locale", "reconfigure your locale")


def _drop_offscreen_notices() -> None:
    """Drop EXPECTED_NOTICES; every other Qt message goes through as before."""
    previous = None

    def handler(mode: QtMsgType, context: QMessageLogContext, message: str) -> None:
        if any(notice in message for notice in EXPECTED_NOTICES):
            return
        if previous is not None:
            previous(mode, context, message)
        else:
            print(message, file=sys.stderr)

    previous = qInstallMessageHandler(handler)


def platform_plugins() -> list[str]:
    """The Qt platform plugins installed beside this Qt (file stems without lib/q prefixes)."""
    folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    names = sorted(p.name.split(".")[0] for p in folder.glob("*") if p.is_file())
    return [n.removeprefix("lib") for n in names]


def check_window(project: Project, stream: str, requests: str, timeout_s: float) -> str:
    """An offscreen main window on the runtime at `stream`/`requests` shows every
    configured tag live in its table and paints; returns what it saw."""
    app = _application()
    plugins = platform_plugins()
    wanted = DESKTOP_PLATFORM.get(sys.platform)
    if wanted and wanted not in plugins:
        raise CheckFailed(f"the Qt platform plugin {wanted} is missing (found: {', '.join(plugins) or 'none'})")
    loop = qasync.QEventLoop(app)
    mirror = BusMirror()
    client = IpcClient(stream, requests, mirror)
    # Without the 3D view: it needs a real window system; the 3D models step loads and
    # draws every model through the same code instead.
    window = MainWindow(
        project, mirror, client, history=HistoryLookup(project.historian.url), sound_player=lambda: None, scene=False
    )
    configured = set(project.tags)
    good = QUALITY_LABEL[Quality.GOOD]

    def live_rows() -> int:
        model = window.table_model
        return sum(
            1
            for row in range(model.rowCount())
            if model.index(row, COL_TAG).data() in configured and model.index(row, COL_QUALITY).data() == good
        )

    async def wait_live() -> float:
        started = time.monotonic()
        while live_rows() < len(configured):
            if time.monotonic() - started > timeout_s:
                raise CheckFailed(f"only {live_rows()}/{len(configured)} tags live in the window after {timeout_s:g} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    try:
        window.show()
        client.start()
        with loop:
            seconds = loop.run_until_complete(wait_live())
            loop.run_until_complete(asyncio.sleep(0.3))  # a few trend frames
        image = window.grab().toImage()
        if image.isNull() or image.width() < 100:
            raise CheckFailed("the window did not paint")
        colours = len({image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)})
        if colours < 8:
            raise CheckFailed(f"the window painted only {colours} colour(s)")
    finally:
        client.stop()
        window.close()
        window.deleteLater()
        app.processEvents()
    desktop = f", {wanted.removeprefix('q')} plugin present" if wanted else ""
    return (
        f"{len(configured)}/{len(configured)} tags live in the table after {seconds:.1f} s, "
        f"{image.width()}x{image.height()} painted offscreen{desktop}"
    )


def scene_view_loads() -> None:
    """The 3D view's module imports (QVTKRenderWindowInteractor, interaction styles, text)."""
    import hmi.ui.scene_view  # noqa: F401


def use_egl_without_display() -> None:
    """With no X server, render through EGL at once (VTK would try X first and warn)."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def import_and_render(check: ModelCheck) -> str:
    """Import a model that passed validation and the probe, as the window does, and draw
    one offscreen frame of it; returns its number of parts (VTK actors)."""
    summary = check.checked.report.summary
    if not check.ok or summary is None or check.checked.data is None:
        raise CheckFailed(check.message)
    use_egl_without_display()
    renderer = vtkRenderer()
    renderer.SetBackground(0.0, 0.0, 0.0)
    model = import_glb(check.checked.data, renderer, summary)
    if summary.expected_actors and model.actor_count == 0:
        raise CheckFailed("VTK imported nothing from this model")
    window = vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetSize(*RENDER_SIZE)
    window.AddRenderer(renderer)
    try:
        renderer.ResetCamera()
        window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(window)
        grab.Update()
        pixels = vtk_to_numpy(grab.GetOutput().GetPointData().GetScalars())
        covered = float(np.any(pixels[:, :3] > 0, axis=1).mean())
    finally:
        window.Finalize()
    if covered < 0.01:
        raise CheckFailed(f"the rendered frame is empty ({window.GetClassName()})")
    return str(model.actor_count)
