"""The theme keeps controls that cannot be used now visibly apart from usable ones."""

from __future__ import annotations

from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QPushButton

from hmi.ui.theme import apply_theme


def test_a_disabled_button_is_drawn_dimmer_than_an_enabled_one(qapp) -> None:
    old = qapp.palette()
    try:
        apply_theme(qapp)
        enabled, disabled = QPushButton("Call…"), QPushButton("Call…")
        disabled.setEnabled(False)
        role = QPalette.ColorRole.ButtonText
        on = enabled.palette().color(QPalette.ColorGroup.Active, role)
        off = disabled.palette().color(QPalette.ColorGroup.Disabled, role)
        assert off.lightness() - on.lightness() > 80, (on.name(), off.name())
    finally:
        qapp.setPalette(old)
