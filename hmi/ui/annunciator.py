"""Audible annunciation of new urgent and high alarms, with silence.

Why not QtMultimedia: it ships in PySide6-Addons, a second wheel of about 170 MB beside
PySide6-Essentials, for one sound. The horn here is a short two-tone WAV made with the
standard library on first use and played by what every desktop has: winsound on Windows,
afplay on macOS, and paplay, pw-play or aplay on Linux; QApplication.beep() (the
system bell) when none is there. The player is a plain function, so tests count calls.

The horn sounds when a new urgent or high alarm arrives, repeats every `repeat_s` while
any of them is still unacknowledged, and stops on silence (until the next new one) or when
all of them are acknowledged.
"""

from __future__ import annotations

import logging
import math
import shutil
import struct
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

from hmi.core.alarms.model import Priority
from hmi.paths import data_dir
from hmi.ui.alarm_feed import AlarmFeed

log = logging.getLogger(__name__)

Player = Callable[[], None]
SOUND_PRIORITY = Priority.HIGH  # this priority and above sound the horn


def alarm_wav(path: Path | None = None) -> Path:
    """A 0.8 s two-tone horn (880 / 660 Hz), written once."""
    path = path or data_dir() / "sounds" / "alarm-v1.wav"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = 22050
    frames = bytearray()
    for i in range(int(rate * 0.8)):
        t = i / rate
        freq = 880.0 if int(t / 0.2) % 2 == 0 else 660.0
        envelope = min(1.0, (0.2 - (t % 0.2)) * 50, (t % 0.2) * 50)
        frames += struct.pack("<h", int(0.5 * 32767 * envelope * math.sin(2 * math.pi * freq * t)))
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(bytes(frames))
    return path


class SystemPlayer:
    """Plays the horn with the platform's own means; never raises."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._command: list[str] | None = None
        self._path: Path | None = None
        try:
            self._path = alarm_wav()
        except OSError as exc:
            log.warning("cannot write the alarm sound (%s): using the system bell", exc)
        if self._path is not None and sys.platform == "darwin" and shutil.which("afplay"):
            self._command = ["afplay", str(self._path)]
        elif self._path is not None and sys.platform.startswith("linux"):
            for tool in ("paplay", "pw-play", "aplay"):
                found = shutil.which(tool)
                if found:
                    self._command = [found, *(["-q"] if tool == "aplay" else []), str(self._path)]
                    break

    def __call__(self) -> None:
        try:
            if sys.platform == "win32" and self._path is not None:
                import winsound

                winsound.PlaySound(str(self._path), winsound.SND_FILENAME | winsound.SND_ASYNC)
            elif self._command is not None:
                if self._proc is not None and self._proc.poll() is None:
                    return  # still sounding
                self._proc = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                QApplication.beep()
        except OSError as exc:
            log.warning("cannot play the alarm sound: %s", exc)
            QApplication.beep()


class Annunciator(QObject):
    sounding_changed = Signal(bool)

    def __init__(self, feed: AlarmFeed, player: Player | None = None, repeat_s: float = 5.0) -> None:
        super().__init__(feed)
        self.feed = feed
        self.player: Player = player if player is not None else SystemPlayer()
        self.sounding = False
        self.plays = 0
        self._alarms: set[str] = set()  # the new urgent/high alarms the horn is for
        self._repeat = QTimer(self)
        self._repeat.timeout.connect(self._on_repeat)
        self._repeat.setInterval(int(repeat_s * 1000))
        feed.changed.connect(self._on_changed)

    def _on_changed(self) -> None:
        new = [t for t in self.feed.alarms.take_annunciations() if t.priority >= SOUND_PRIORITY]
        if new:
            self._alarms.update(t.alarm for t in new)
            if not self.sounding:
                self._set_sounding(True)
            self._play()
        elif self.sounding and not self._still_unacknowledged():
            self._set_sounding(False)

    def _still_unacknowledged(self) -> bool:
        for name in list(self._alarms):
            status = self.feed.alarms.get(name)
            if status is None or not status.unacknowledged:
                self._alarms.discard(name)
        return bool(self._alarms)

    def _on_repeat(self) -> None:
        if self._still_unacknowledged():
            self._play()
        else:
            self._set_sounding(False)

    def _play(self) -> None:
        self.plays += 1
        self.player()

    def silence(self) -> None:
        self._alarms.clear()
        self._set_sounding(False)

    def _set_sounding(self, on: bool) -> None:
        if on == self.sounding:
            return
        self.sounding = on
        if on:
            self._repeat.start()
        else:
            self._repeat.stop()
        self.sounding_changed.emit(on)
