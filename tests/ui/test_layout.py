"""No text the operator reads is cut: the main window on the demo project, attached over the
real IPC channel to a runtime's operator side (alarm engine, sessions, audit) with realistic
long tag names, rendered at 1280×720, 1920×1080 and 2560×1440 and back: the machine tiles,
the alarm summary (header and every cell but Message, which takes the rest) and the login
and write dialogs show every label whole."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel, QStyleOptionViewItem, QWidget

from hmi.config import load_project
from hmi.core.alarms import AlarmDefinition, Condition, Priority
from hmi.core.samples import now_ns
from hmi.core.tags import TagSpec
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.ui.alarm_panel import COL_MESSAGE
from hmi.ui.login import LoginDialog
from hmi.ui.main_window import MainWindow
from tests.alarm_runtime import PASSWORD, TAGS, InProcessRuntime, demo_definitions
from tests.helpers import ARTIFACTS, DEMO_PROJECT

SIZES = ((1280, 720), (1920, 1080), (2560, 1440), (1280, 720))  # and back: the docks re-balance both ways

# Names as a plant's tag list has them (ISA-5.1 loop names and long descriptive signals).
LONG_TAGS = [
    TagSpec("press04.hydraulic_accumulator_precharge_pressure", unit="bar", low=0, high=250),
    TagSpec("line2_oven3.zone4_heater_element_temperature_pv", unit="°C", low=0, high=400),
    TagSpec("cmm01.probe_head_stylus_deflection_error_um", unit="µm", low=0, high=50),
]
LONG_DEFINITIONS = [
    AlarmDefinition(
        f"{spec.name}.hi",
        spec.name,
        Condition.HI,
        priority,
        limit=spec.high * 0.8,
        unit=spec.unit,
        latching=latching,
        message="{tag} above its limit: {value:.1f} {unit}",
    )
    for spec, priority, latching in zip(
        LONG_TAGS, (Priority.URGENT, Priority.MEDIUM, Priority.LOW), (True, False, False)
    )
]


@dataclass
class Attached:
    window: MainWindow
    rt: InProcessRuntime
    client: IpcClient


@pytest.fixture
def attached(qtbot, main_window_factory, tmp_path: Path) -> Iterator[Attached]:
    project = load_project(DEMO_PROJECT)
    tags = {s.name: s for s in [*project.tag_specs(), *TAGS, *LONG_TAGS]}
    rt = InProcessRuntime(tmp_path, demo_definitions() + LONG_DEFINITIONS, list(tags.values())).start()
    mirror = BusMirror()
    client = IpcClient(rt.stream, rt.requests, mirror)
    window = main_window_factory(project, mirror, client)
    client.start()
    try:
        yield Attached(window, rt, client)
    finally:
        client.stop()
        window.alarm_feed.close()
        rt.stop()
        gc.collect()


def cut_labels(root: QWidget) -> list[str]:
    """The visible labels under `root` whose text does not fit: one line wider than the label,
    or wrapped lines taller than it (or a word wider than a line)."""
    cut = []
    for label in root.findChildren(QLabel):
        text = label.text()
        if not label.isVisible() or not text or label.textFormat().name == "RichText":
            continue
        metrics = label.fontMetrics()
        room = label.contentsRect()
        if label.wordWrap():
            widest_word = max(metrics.horizontalAdvance(word) for word in text.split())
            if widest_word > room.width() or label.heightForWidth(label.width()) > label.height():
                cut.append(f"{text!r} wraps to {label.heightForWidth(label.width())} px in {label.height()} px")
        elif metrics.horizontalAdvance(text) > room.width():
            cut.append(f"{text!r} needs {metrics.horizontalAdvance(text)} px, has {room.width()} px")
    return cut


def cut_alarm_cells(window: MainWindow) -> list[str]:
    """Alarm summary headers and cells (every row, Message excepted) wider than their column,
    and a Message column wider than the room the others leave (pushing them out of view)."""
    table = window.alarm_panel.table
    header = table.horizontalHeader()
    model = table.model()
    option = QStyleOptionViewItem()
    table.initViewItemOption(option)
    grid = 1 if table.showGrid() else 0
    cut = []
    for col in range(model.columnCount()):
        title = model.headerData(col, header.orientation())
        if header.sectionSizeHint(col) > header.sectionSize(col):
            cut.append(f"header {title!r}: {header.sectionSizeHint(col)} px in {header.sectionSize(col)} px")
        if col == COL_MESSAGE:
            continue
        for row in range(model.rowCount()):
            index = model.index(row, col)
            needed = table.itemDelegate().sizeHint(option, index).width() + grid
            if needed > table.columnWidth(col):
                cut.append(f"{title} {index.data()!r}: {needed} px in {table.columnWidth(col)} px")
    # Message takes the rest: wider than its header only when nothing is pushed out of view.
    squeezed = header.sectionSize(COL_MESSAGE) > header.sectionSizeHint(COL_MESSAGE)
    if header.length() > table.viewport().width() and squeezed:
        cut.append(f"columns {header.length()} px wide in a {table.viewport().width()} px table")
    return cut


def test_no_label_is_cut_at_three_window_sizes(qtbot, attached: Attached) -> None:
    """At 1280×720, 1920×1080 and 2560×1440 (and back to 1280×720) every tile label, the
    alarm summary's headers and cells, the login error and the write confirmation are whole."""
    window, rt = attached.window, attached.rt
    for tile in window.overview.tiles.values():
        for item in tile.values:  # near the top of its range: the widest value it shows
            rt.publish(item.spec.name, -0.987 * (item.spec.high or 1000.0))
    start = now_ns()
    yesterday = start - int(timedelta(days=1).total_seconds() * 1e9)  # shown with its date: the widest time
    rt.publish(LONG_TAGS[0].name, 240.0, yesterday)
    rt.alarms.tick(yesterday)
    for spec in LONG_TAGS[1:]:
        rt.publish(spec.name, spec.high * 0.95, start)
    rt.publish("cnc01.tool_temperature", 99.0, start)
    rt.alarms.tick(start)
    qtbot.waitUntil(lambda: window.bus.latest("pump01.discharge_pressure") is not None, timeout=10000)
    window.alarm_panel.set_filters(state="All configured")
    configured = len(demo_definitions()) + len(LONG_DEFINITIONS)
    qtbot.waitUntil(lambda: window.alarm_panel.model.rowCount() == configured, timeout=10000)

    window.alarm_feed.session.login("olga", PASSWORD)
    qtbot.waitUntil(lambda: window.alarm_feed.session.logged_in, timeout=10000)
    failures: dict[str, list[str]] = {}
    for step, (width, height) in enumerate(SIZES):
        window.resize(width, height)
        size = f"{width}x{height}" + (" again" if (width, height) in SIZES[:step] else "")
        try:
            qtbot.waitUntil(lambda w=width, h=height: window.size().toTuple() == (w, h), timeout=3000)
        except qtbot.TimeoutError:  # wider than the screen: the right edge of every row is cut
            failures[f"{size} window"] = [
                f"is {window.size().toTuple()}, at least {window.minimumSizeHint().toTuple()}"
            ]
        qtbot.wait(200)  # the docks re-balance on the next turn of the event loop
        window.overview.refresh()
        qtbot.wait(50)
        failures[f"{size} tiles"] = cut_labels(window.overview)
        failures[f"{size} alarm summary"] = cut_alarm_cells(window)

        login = LoginDialog(window.alarm_feed.session, window)
        login.show()
        qtbot.waitExposed(login)
        login.user.setText("olga")
        login.password.setText("not the password")
        login.submit()
        qtbot.waitUntil(lambda d=login: d.buttons.isEnabled() and d.message.text() != "checking…", timeout=10000)
        qtbot.wait(50)
        failures[f"{size} login error"] = cut_labels(login)
        login.close()

        write = window.open_write_dialog("cnc01.feed_override")
        assert write is not None
        qtbot.waitExposed(write)
        write.new_value.setText("87.5")
        write.ask_confirmation()
        qtbot.wait(50)
        assert write.message.text().startswith("Write 87.5 % to cnc01.feed_override (now ")
        failures[f"{size} write confirmation"] = cut_labels(write)
        write.close()
        ARTIFACTS.mkdir(exist_ok=True)
        window.screenshot().save(str(ARTIFACTS / f"layout_{step}_{width}x{height}.png"))
    failures = {where: cut for where, cut in failures.items() if cut}
    assert not failures, "\n".join(f"{where}: {cut}" for where, cut in failures.items())
