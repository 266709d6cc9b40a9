"""The trend groups as tabs. A tag dragged over a tab switches to that trend (so any trend
can take a drop, not only the one shown), and a tag dropped on the tab itself becomes a pen
of that trend (built or not yet)."""

from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QTabBar, QTabWidget, QWidget

from hmi.ui.trend import TrendView, accepts


class TrendTabBar(QTabBar):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if accepts(event.mimeData()):
            event.acceptProposedAction()
            self._switch_to(event.position().toPoint())

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if accepts(event.mimeData()):
            event.acceptProposedAction()
            self._switch_to(event.position().toPoint())

    def dropEvent(self, event: QDropEvent) -> None:
        index = self.tabAt(event.position().toPoint())
        tabs = self.parent()
        if index < 0 or not isinstance(tabs, QTabWidget):
            return
        view = tabs.widget(index)
        if isinstance(view, TrendView) and view.take_drop(event.mimeData()):
            event.acceptProposedAction()

    def _switch_to(self, pos: QPoint) -> None:
        index = self.tabAt(pos)
        if index >= 0 and index != self.currentIndex():
            self.setCurrentIndex(index)


class TrendTabs(QTabWidget):
    """Trend groups added lazily (TrendView(lazy=True)) are built when their tab becomes the
    current one, so only the group on screen costs its plot."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTabBar(TrendTabBar(self))
        self.currentChanged.connect(self._build_current)

    def _build_current(self, index: int) -> None:
        view = self.widget(index)
        if isinstance(view, TrendView):
            view.build()

    def views(self) -> list[TrendView]:
        return [w for i in range(self.count()) if isinstance(w := self.widget(i), TrendView)]
