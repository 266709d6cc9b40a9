"""The tag browser: configured tags (live values, filter) and the live OPC UA address space.

Both lists are drag sources for trends: a configured tag drags as its name; a browsed
variable drags as (connection, NodeId, suggested tag name), and the window asks the
runtime to watch it as an ad-hoc tag before it adds the pen. Browsing goes through the
runtime (`browse` command), which holds the connection: the window never talks to a PLC.
A Method node has "Call…" (button and context menu): the call dialog, through the runtime too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QMimeData, QModelIndex, QPersistentModelIndex, QPoint, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableView,
    QTabWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from hmi.core.bus import TagBus
from hmi.ui.alarm_feed import AlarmFeed
from hmi.ui.call_dialog import CallDialog
from hmi.ui.mime import NODE_MIME, TAGS_MIME
from hmi.ui.tag_table import COL_TAG, TagTableModel

SendCommand = Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], None]

NODE_ROLE = Qt.ItemDataRole.UserRole + 1
OBJECTS_FOLDER = "i=85"  # the parent of the top level of the address space
LOADED_ROLE = Qt.ItemDataRole.UserRole + 2


class DraggableTagModel(QSortFilterProxyModel):
    """The tag table, filtered by a text, whose rows drag as tag names."""

    def mimeTypes(self) -> list[str]:
        return [TAGS_MIME]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        names = sorted({str(self.index(i.row(), COL_TAG).data()) for i in indexes})
        mime = QMimeData()
        mime.setData(TAGS_MIME, json.dumps(names).encode())
        mime.setText("\n".join(names))
        return mime

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        return super().flags(index) | Qt.ItemFlag.ItemIsDragEnabled


class AddressSpaceModel(QStandardItemModel):
    """Lazily browsed nodes; variables drag as node descriptions."""

    COLUMNS = ("Name", "Class", "Data type", "Value", "Unit / range", "Access", "Tag")

    def __init__(self) -> None:
        super().__init__()
        self.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.connection = ""

    def mimeTypes(self) -> list[str]:
        return [NODE_MIME, TAGS_MIME]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        mime = QMimeData()
        by_id: dict[str, dict[str, Any]] = {}  # one per row, whichever columns were selected
        for index in indexes:
            item = self.itemFromIndex(index.siblingAtColumn(0))
            node = item.data(NODE_ROLE) if item is not None else None
            if node and node["node_class"] == "Variable":
                by_id[node["node_id"]] = node
        nodes = list(by_id.values())
        if nodes:
            mime.setData(NODE_MIME, json.dumps(nodes).encode())
            configured = [n["tag"] for n in nodes if n.get("tag")]
            if len(configured) == len(nodes):
                mime.setData(TAGS_MIME, json.dumps(configured).encode())
        return mime


def engineering_units(node: dict[str, Any]) -> str:
    """A variable's EngineeringUnits and EURange as the browser shows them: "rpm, 0 … 6000"."""
    eu_range = node.get("eu_range")
    span = f"{eu_range[0]:g} … {eu_range[1]:g}" if eu_range else ""
    return ", ".join(part for part in (node.get("eu_unit") or "", span) if part)


def suggested_tag_name(connection: str, path: list[str]) -> str:
    """A `machine.signal` name for an ad-hoc tag from its browse path: the connection is the
    machine part, the path's last names (lower snake case) the signal."""
    words = [re.sub(r"[^a-z0-9]+", "_", p.lower()).strip("_") for p in path[-2:]]
    signal = "_".join(w for w in words if w) or "node"
    if not signal[0].isalpha():
        signal = "n_" + signal
    machine = re.sub(r"[^a-z0-9_]+", "_", connection.lower()).strip("_") or "adhoc"
    if not machine[0].isalpha():
        machine = "c_" + machine
    return f"{machine}.{signal}"


class TagBrowser(QWidget):
    """Configured tags and the address space of each OPC UA connection."""

    write_requested = Signal(str)  # a configured tag the operator wants to write

    def __init__(
        self,
        bus: TagBus,
        connections: list[str],
        send: SendCommand | None,
        parent: QWidget | None = None,
        feed: AlarmFeed | None = None,
    ):
        """`feed` carries method calls with the operator's session (None: no "Call…")."""
        super().__init__(parent)
        self.bus = bus
        self.send = send
        self.feed = feed
        self.call_dialog: CallDialog | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.tabs = QTabWidget()
        layout.addWidget(self.tabs)

        configured = QWidget()
        col = QVBoxLayout(configured)
        col.setContentsMargins(2, 2, 2, 2)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter tags (e.g. pump01 or temperature)")
        self.filter.setClearButtonEnabled(True)
        col.addWidget(self.filter)
        self.table_model = TagTableModel(bus)
        self.proxy = DraggableTagModel()
        self.proxy.setSourceModel(self.table_model)
        self.proxy.setFilterKeyColumn(COL_TAG)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setDragEnabled(True)
        self.table.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column, width in ((1, 110), (2, 50), (3, 85), (4, 95)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            self.table.setColumnWidth(column, width)
        self.table_model.rows_in_view = self._rows_in_view
        self.table.doubleClicked.connect(lambda index: self.write_requested.emit(self.tag_at(index.row())))
        col.addWidget(self.table)
        self.tabs.addTab(configured, "Configured")

        browse = QWidget()
        col = QVBoxLayout(browse)
        col.setContentsMargins(2, 2, 2, 2)
        row = QHBoxLayout()
        self.connection_box = QComboBox()
        self.connection_box.addItems(connections)
        self.connection_box.currentTextChanged.connect(lambda _: self.refresh_address_space())
        row.addWidget(QLabel("Connection"))
        row.addWidget(self.connection_box, 1)
        self.reload_button = QPushButton("Browse")
        self.reload_button.clicked.connect(self.refresh_address_space)
        row.addWidget(self.reload_button)
        self.call_button = QPushButton("Call…")
        self.call_button.setToolTip("call the selected method on the plant (operator role; confirmed and audited)")
        self.call_button.setEnabled(False)
        self.call_button.clicked.connect(lambda: self.open_call_dialog(self.selected_node()))
        self.call_button.setVisible(feed is not None)
        row.addWidget(self.call_button)
        col.addLayout(row)
        self.space_model = AddressSpaceModel()
        self.tree = QTreeView()
        self.tree.setModel(self.space_model)
        self.tree.setDragEnabled(True)
        self.tree.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.expanded.connect(self._on_expanded)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.tree.setColumnWidth(0, 200)
        self.tree.selectionModel().currentChanged.connect(self._on_current_node)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._on_tree_menu)
        col.addWidget(self.tree)
        self.browse_status = QLabel("")
        self.browse_status.setWordWrap(True)
        col.addWidget(self.browse_status)
        self.tabs.addTab(browse, "Address space")
        self.tabs.setTabEnabled(1, bool(connections) and send is not None)
        self.tabs.currentChanged.connect(self._on_tab)

    def tag_at(self, row: int) -> str:
        return str(self.proxy.index(row, COL_TAG).data() or "")

    def _rows_in_view(self) -> list[int]:
        """The table model's rows on screen (none while the table is hidden)."""
        if not self.table.isVisible():
            return []
        viewport = self.table.viewport()
        first = self.table.rowAt(0)
        if first < 0:
            return []
        last = self.table.rowAt(viewport.height() - 1)
        last = self.proxy.rowCount() - 1 if last < 0 else last
        return [self.proxy.mapToSource(self.proxy.index(r, COL_TAG)).row() for r in range(first, last + 1)]

    def refresh(self) -> None:
        """Live values (UI timer); only while the configured list is what is shown."""
        if self.isVisible() and self.tabs.currentIndex() == 0:
            self.table_model.refresh()

    # -- address space --------------------------------------------------------------------------

    def _on_tab(self, index: int) -> None:
        if index == 1 and self.space_model.rowCount() == 0:
            self.refresh_address_space()

    def refresh_address_space(self) -> None:
        self.space_model.removeRows(0, self.space_model.rowCount())
        self.space_model.connection = self.connection_box.currentText()
        self._browse(None, self.space_model.invisibleRootItem(), [])

    def _on_expanded(self, index: QModelIndex) -> None:
        item = self.space_model.itemFromIndex(index.siblingAtColumn(0))
        if item is None or item.data(LOADED_ROLE):
            return
        node = item.data(NODE_ROLE)
        self._browse(node["node_id"], item, node["path"])

    def _browse(self, node_id: str | None, parent: QStandardItem, path: list[str]) -> None:
        if self.send is None:
            return
        connection = self.space_model.connection
        parent.setData(True, LOADED_ROLE)
        self.browse_status.setText(f"Browsing {connection}…")

        def on_reply(reply: dict[str, Any]) -> None:
            if connection != self.space_model.connection:
                return  # another connection was chosen meanwhile
            if not reply.get("ok"):
                parent.setData(False, LOADED_ROLE)
                self.browse_status.setText(f"Cannot browse {connection}: {reply.get('error', 'no answer')}")
                return
            parent.removeRows(0, parent.rowCount())
            for node in reply["nodes"]:
                self._add_node(parent, node, path)
            self.browse_status.setText(f"{connection}: {len(reply['nodes'])} node(s)")

        self.send({"command": "browse", "connection": connection, "node_id": node_id}, on_reply)

    def _add_node(self, parent: QStandardItem, node: dict[str, Any], path: list[str]) -> None:
        owner = parent.data(NODE_ROLE)  # a method is called on the object it belongs to
        node = {**node, "path": [*path, node["display_name"]], "connection": self.space_model.connection,
                "object": owner["node_id"] if owner else OBJECTS_FOLDER}  # fmt: skip
        value = node.get("value")
        cells = [
            node["display_name"],
            node["node_class"],
            node.get("data_type") or "",
            "" if value is None else str(value),
            engineering_units(node),
            ", ".join(node.get("access") or []),
            node.get("tag") or "",
        ]
        items = [QStandardItem(text) for text in cells]
        for item in items:
            item.setEditable(False)
            item.setToolTip(node["node_id"])
        items[0].setData(node, NODE_ROLE)
        variable = node["node_class"] == "Variable"
        items[0].setDragEnabled(variable)
        if node["node_class"] in ("Object", "Folder", "View") or not variable:
            items[0].appendRow([QStandardItem("…")])  # an expander until its children are browsed
        parent.appendRow(items)

    # -- method calls ---------------------------------------------------------------------------

    def selected_node(self) -> dict[str, Any] | None:
        index = self.tree.currentIndex()
        item = self.space_model.itemFromIndex(index.siblingAtColumn(0)) if index.isValid() else None
        return item.data(NODE_ROLE) if item is not None else None

    def _on_current_node(self, current: QModelIndex, _previous: QModelIndex) -> None:
        node = self.selected_node()
        self.call_button.setEnabled(self.feed is not None and bool(node and node["node_class"] == "Method"))

    def _on_tree_menu(self, position: QPoint) -> None:
        index = self.tree.indexAt(position)
        item = self.space_model.itemFromIndex(index.siblingAtColumn(0)) if index.isValid() else None
        node = item.data(NODE_ROLE) if item is not None else None
        if self.feed is None or not node or node["node_class"] != "Method":
            return
        menu = QMenu(self)
        menu.addAction("Call…", lambda: self.open_call_dialog(node))
        menu.exec(self.tree.viewport().mapToGlobal(position))

    def open_call_dialog(self, node: dict[str, Any] | None) -> CallDialog | None:
        """The call dialog for a browsed Method node (None for anything else, or without a feed)."""
        if self.feed is None or not node or node["node_class"] != "Method":
            return None
        if self.call_dialog is not None:
            self.call_dialog.close()
        self.call_dialog = CallDialog(
            self.feed, node["connection"], node["object"], node["node_id"], node["display_name"], self
        )
        self.call_dialog.open()
        return self.call_dialog
