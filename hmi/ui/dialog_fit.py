"""Dialogs that size to their text: a shown dialog grows for a label that wraps onto more lines."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog


def grow_to_fit(dialog: QDialog) -> None:
    """Make a shown dialog tall enough for its wrapped labels. It does not grow by itself for
    a label that wraps onto more lines (a login error, a confirmation naming every argument):
    its minimum size ignores height-for-width, so the second line was cut in half. Call it
    after Qt's deferred show of newly set text (QTimer.singleShot(0, ...)), not at once."""
    layout = dialog.layout()
    if layout is None or not layout.hasHeightForWidth() or not dialog.isVisible():
        return
    needed = layout.totalHeightForWidth(dialog.width())
    if needed > dialog.height():
        dialog.resize(dialog.width(), needed)
