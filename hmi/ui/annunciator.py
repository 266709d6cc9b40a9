"""Audible annunciation of new urgent and high alarms, with silence, and whether it can sound.

The audio path, chosen deliberately:
- QtMultimedia's QSoundEffect would be the Qt way, but it ships in PySide6-Addons (a second
  wheel of about 170 MB, not installed here) and brings libQt6Multimedia with its FFmpeg
  libraries (tens of MB) into a bundle that is at 439 of its 450 MB (docs/performance.md).
- A small PyPI library: simpleaudio and sounddevice need PortAudio/ALSA at run time like any
  player; miniaudio (about 1 MB, cffi) would play in-process and list devices, but is a new
  compiled dependency on a safety function for what the desktop already does.
- Kept: the platform's own player, made honest. The horn is a short two-tone WAV made with the
  standard library on first use, played by winsound on Windows, afplay on macOS, and paplay,
  pw-play or aplay on Linux. Zero bytes in the bundle, no new dependency. It says whether
  anything can be heard: `SystemPlayer` checks at start for a player and an output (a
  PulseAudio/PipeWire socket for paplay/pw-play, an ALSA playback device for aplay), watches
  each play's exit status, and says "no audio output" when there is none
  (then QApplication.beep(), the system bell, is all that is left, and it is not counted as
  sound). The window shows that permanently in its status bar and logs a warning.

The horn sounds when a new alarm of `min_priority` or above arrives (urgent and high by
default; `[alarm_system] horn_min_priority`), repeats every `repeat_s` (`horn_repeat_s`)
while any of them is still unacknowledged, and stops on silence (until the next new one) or
when all of them are acknowledged. A player is any callable (tests count calls); it may
carry `available`, `path` and `detail` attributes, read here with defaults.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import struct
import subprocess
import sys
import wave
from collections.abc import Callable, Mapping
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

from hmi.core.alarms.model import Priority
from hmi.paths import data_dir
from hmi.ui.alarm_feed import AlarmFeed

log = logging.getLogger(__name__)

Player = Callable[[], None]
SOUND_PRIORITY = Priority.HIGH  # by default this priority and above sound the horn
LINUX_PLAYERS = ("paplay", "pw-play", "aplay")


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


def _sound_server(env: Mapping[str, str]) -> bool:
    """A PulseAudio or PipeWire server this user can reach (paplay and pw-play need one)."""
    if env.get("PULSE_SERVER"):
        return True
    runtime = env.get("XDG_RUNTIME_DIR")
    if not runtime:
        return False
    return any((Path(runtime) / p).exists() for p in ("pulse/native", "pipewire-0"))


def _alsa_playback(proc_asound: Path = Path("/proc/asound/pcm")) -> bool:
    """An ALSA playback device ("… : playback 1" in /proc/asound/pcm)."""
    try:
        return "playback" in proc_asound.read_text()
    except OSError:
        return False


class SystemPlayer:
    """Plays the horn with the platform's own means; never raises.

    `available` says whether the horn can be heard; `path` names the means ("paplay",
    "winsound", "system bell"), `detail` why not when it cannot. `env` (default os.environ)
    is where players and the sound server are looked up."""

    def __init__(self, env: Mapping[str, str] | None = None, platform: str = sys.platform) -> None:
        self._env = dict(os.environ if env is None else env)
        self._platform = platform
        self._proc: subprocess.Popen[bytes] | None = None
        self._command: list[str] | None = None
        self._path: Path | None = None
        self.path = "system bell"
        self.available = False
        self.detail = ""
        try:
            self._path = alarm_wav()
        except OSError as exc:
            self.detail = f"cannot write the alarm sound ({exc})"
            return
        search = self._env.get("PATH", "")
        if platform == "win32":
            self.path, self.available = "winsound", True
        elif platform == "darwin":
            found = shutil.which("afplay", path=search)
            if found:
                self._command, self.path, self.available = [found, str(self._path)], "afplay", True
            else:
                self.detail = "afplay not found"
        elif platform.startswith("linux"):
            self._choose_linux(search)

    def _choose_linux(self, search: str) -> None:
        found = {tool: shutil.which(tool, path=search) for tool in LINUX_PLAYERS}
        server, alsa = _sound_server(self._env), _alsa_playback()
        for tool, where in found.items():
            if where and (alsa if tool == "aplay" else server):
                self._command = [where, *(["-q"] if tool == "aplay" else []), str(self._path)]
                self.path, self.available = tool, True
                return
        present = [tool for tool, where in found.items() if where]
        if not present:
            self.detail = f"no audio player found ({', '.join(LINUX_PLAYERS)})"
        else:
            self.detail = f"{', '.join(present)} found, but no sound server or ALSA playback device"

    def __call__(self) -> None:
        try:
            if sys.platform == "win32" and self._path is not None:  # sys.platform: mypy checks winsound only there
                import winsound

                winsound.PlaySound(str(self._path), winsound.SND_FILENAME | winsound.SND_ASYNC)
                return
            if self._command is not None and self.available:
                if self._proc is not None:
                    code = self._proc.poll()
                    if code is None:
                        return  # still sounding
                    if code != 0:
                        self._failed(f"{self.path} failed (exit status {code})")
                        QApplication.beep()
                        return
                self._proc = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                return
        except OSError as exc:
            self._failed(f"cannot play the alarm sound: {exc}")
        QApplication.beep()  # the system bell: all there is; not counted as sound

    def _failed(self, detail: str) -> None:
        log.warning("alarm horn: %s; no audio output from now on", detail)
        self.available = False
        self.detail = detail


class Annunciator(QObject):
    """`sounding_changed(bool)`: the horn started or stopped; `audio_changed()`: whether it
    can be heard changed (a player failed)."""

    sounding_changed = Signal(bool)
    audio_changed = Signal()

    def __init__(
        self,
        feed: AlarmFeed,
        player: Player | None = None,
        repeat_s: float = 5.0,
        min_priority: Priority = SOUND_PRIORITY,
    ) -> None:
        super().__init__(feed)
        self.feed = feed
        self.player: Player = player if player is not None else SystemPlayer()
        self.min_priority = min_priority
        self.sounding = False
        self.plays = 0
        self._alarms: set[str] = set()  # the new alarms the horn is for
        self._repeat = QTimer(self)
        self._repeat.timeout.connect(self._on_repeat)
        self._repeat.setInterval(int(repeat_s * 1000))
        self._audible = self.audible
        feed.changed.connect(self._on_changed)

    @property
    def audible(self) -> bool:
        """Whether the horn can be heard (a player that does not say is trusted)."""
        return bool(getattr(self.player, "available", True))

    def audio_text(self) -> str:
        """For the status bar: "horn: paplay", or "horn: no audio output (why)"."""
        if self.audible:
            return f"horn: {getattr(self.player, 'path', 'custom player')}"
        detail = getattr(self.player, "detail", "")
        return "horn: no audio output" + (f" ({detail})" if detail else "")

    def _on_changed(self) -> None:
        new = [t for t in self.feed.alarms.take_annunciations() if t.priority >= self.min_priority]
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
        if self.audible != self._audible:
            self._audible = self.audible
            self.audio_changed.emit()

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
