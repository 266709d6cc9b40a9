"""Help: About (version, build, runtime versions, the bundled libraries' licences), the
operator's guide, and the keyboard shortcuts as a table.

Everything is read locally: the version from `hmi.__version__`, the build from the BUILD
file the bundle carries (build.spec writes `git describe` into it; "development" when run
from a checkout), the libraries from the installed distributions' metadata (build.spec
copies it into the bundle). The guide is docs/window.md, shipped as data beside config/ and
found through hmi.paths.install_root(), so the same code finds it in the bundle and in a
checkout; it is rendered in a QTextBrowser (no browser, no network).
"""

from __future__ import annotations

import html
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import PySide6
from PySide6.QtCore import QUrl
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

import hmi
from hmi.paths import install_root

BUILD_FILE = "BUILD"  # written by build.spec at build time
GUIDE = Path("docs") / "window.md"
# The distributions whose code the bundle carries: pyproject's dependencies and what they pull
# in (not VTK's matplotlib and Pillow, which build.spec leaves out). build.spec copies their
# metadata into the bundle, where this reads it.
LIBRARIES = ("PySide6-Essentials", "shiboken6", "vtk", "pyqtgraph", "numpy", "asyncua", "paho-mqtt", "pyzmq",
             "SQLAlchemy", "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "qasync",
             "psutil", "cryptography", "cffi", "pycparser", "aiosqlite", "python-dateutil", "pytz", "tzdata",
             "sortedcontainers", "typing-extensions", "wait-for2")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Library:
    name: str
    version: str
    licence: str


def build_id() -> str:
    """`git describe` of the bundle's build, or "development" (a checkout, or a bundle without one)."""
    path = install_root() / BUILD_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return "development"
    return text or "development"


def licence_of(meta: metadata.PackageMetadata) -> str:
    """The licence a distribution declares: License-Expression (PEP 639), else a short License
    field, else its "License ::" classifiers; "not stated" when none says."""
    expression = (meta.get_all("License-Expression") or [""])[0]
    if expression:
        return str(expression)
    text = str((meta.get_all("License") or [""])[0]).strip()
    if text and "\n" not in text and len(text) <= 80:  # some put the whole licence text here
        return text
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return ", ".join(classifiers)
    return text.splitlines()[0][:80] if text else "not stated"


def libraries(names: tuple[str, ...] = LIBRARIES) -> list[Library]:
    """Name, version and licence of each of `names` that is installed (or bundled)."""
    found = []
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(Library(dist.metadata["Name"] or name, dist.version, licence_of(dist.metadata)))
    return found


def versions() -> list[tuple[str, str]]:
    from PySide6.QtCore import qVersion

    rows = [("Version", hmi.__version__), ("Build", build_id()),
            ("Python", f"{platform.python_version()} ({sys.platform})"),
            ("Qt", f"{qVersion()} (PySide6 {PySide6.__version__})")]  # fmt: skip
    try:
        from vtkmodules.vtkCommonCore import vtkVersion

        rows.append(("VTK", vtkVersion.GetVTKVersion()))
    except ImportError:
        rows.append(("VTK", "not installed"))
    return rows


def _table(headers: list[str], rows: list[list[str]]) -> QTableWidget:
    """A read-only table sized to its text: columns to their contents, the last one stretched."""
    table = QTableWidget(len(rows), len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setWordWrap(False)
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))
    header = table.horizontalHeader()
    for c in range(len(headers) - 1):
        header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(len(headers) - 1, QHeaderView.ResizeMode.Stretch)
    return table


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle("About HMI")
        layout = QVBoxLayout(self)
        title = QLabel(f"<b>HMI</b> — {html.escape(hmi.__doc__ or '')}")
        layout.addWidget(title)
        self.versions = _table(["", ""], [list(row) for row in versions()])
        self.versions.horizontalHeader().setVisible(False)
        self.versions.setFixedHeight(self.versions.verticalHeader().length() + 2 * self.versions.frameWidth())
        layout.addWidget(self.versions)
        layout.addWidget(QLabel("Bundled libraries and their licences:"))
        self.libraries = libraries()
        rows = [[x.name, x.version, x.licence] for x in self.libraries]
        self.licences = _table(["Library", "Version", "Licence"], rows)
        layout.addWidget(self.licences, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(640, 560)


def guide_path() -> Path:
    return install_root() / GUIDE


class GuideWindow(QDialog):
    """The operator's guide (docs/window.md) rendered, with its pictures, from the installation."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("operatorGuide")
        self.setWindowTitle("Operator's guide")
        layout = QVBoxLayout(self)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)  # links to other docs stay local and inert
        path = guide_path()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            text = f"# Operator's guide\n\nThe guide is missing from this installation ({path}: {exc.strerror})."
        self.browser.setSearchPaths([str(path.parent)])
        self.browser.document().setBaseUrl(QUrl.fromLocalFile(str(path.parent) + "/"))
        self.browser.setMarkdown(text)
        layout.addWidget(self.browser)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(900, 760)


class ShortcutsDialog(QDialog):
    """The keyboard shortcuts as a two-column table (keys, what they do)."""

    def __init__(self, shortcuts: tuple[tuple[str, str], ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("shortcutsDialog")
        self.setWindowTitle("Keyboard shortcuts")
        layout = QVBoxLayout(self)
        self.table = _table(["Keys", "What they do"], [list(row) for row in shortcuts])
        # Tall enough for every row: a short list must not scroll.
        self.table.setMinimumHeight(
            self.table.horizontalHeader().height() + self.table.verticalHeader().length() + 2 * self.table.frameWidth()
        )
        self.table.resizeColumnsToContents()
        layout.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        width = sum(self.table.columnWidth(c) for c in range(2)) + 2 * self.table.frameWidth() + 40
        self.resize(max(width, 460), self.sizeHint().height())
