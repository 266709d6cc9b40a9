"""The horn's audio path: found, missing, or failing, with real player processes (small
scripts standing in for paplay in a PATH of their own) and the WAV the horn plays."""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import pytest

from hmi.ui.annunciator import SystemPlayer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux players")


def fake_player(folder: Path, name: str, exit_status: int) -> Path:
    """An executable `name` that records its arguments and exits with `exit_status`."""
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/{name}.calls"\nexit {exit_status}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def sound_server(tmp_path: Path) -> str:
    """A runtime folder with a PulseAudio socket path, as a desktop session has."""
    (tmp_path / "run" / "pulse").mkdir(parents=True)
    (tmp_path / "run" / "pulse" / "native").touch()
    return str(tmp_path / "run")


def test_no_player_means_no_audio_output(qapp, tmp_path: Path) -> None:
    """With no player on the machine the horn says it cannot sound, and why."""
    (tmp_path / "bin").mkdir()
    player = SystemPlayer(env={"PATH": str(tmp_path / "bin")})
    assert not player.available
    assert player.path == "system bell"
    assert player.detail == "no audio player found (paplay, pw-play, aplay)"
    player()  # the bell, and no exception


def test_a_player_without_a_sound_server_cannot_sound(qapp, tmp_path: Path) -> None:
    """paplay installed but no PulseAudio/PipeWire server: no audio output, not a silent failure."""
    fake_player(tmp_path / "bin", "paplay", 0)
    player = SystemPlayer(env={"PATH": str(tmp_path / "bin"), "XDG_RUNTIME_DIR": str(tmp_path)})
    assert not player.available
    assert player.detail == "paplay found, but no sound server or ALSA playback device"


def test_player_with_a_server_plays_the_horn(qapp, tmp_path: Path) -> None:
    """paplay and a sound server: the horn plays the alarm WAV through paplay."""
    fake_player(tmp_path / "bin", "paplay", 0)
    player = SystemPlayer(env={"PATH": str(tmp_path / "bin"), "XDG_RUNTIME_DIR": sound_server(tmp_path)})
    assert (player.available, player.path) == (True, "paplay")
    player()
    calls = tmp_path / "bin" / "paplay.calls"
    deadline = time.monotonic() + 5
    while not calls.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    played = Path(calls.read_text().split()[0])
    assert played.name == "alarm-v1.wav" and played.stat().st_size > 30000


def test_a_failing_player_turns_the_horn_to_no_audio_output(qapp, tmp_path: Path) -> None:
    """When the player exits with an error, the horn stops claiming it can be heard."""
    fake_player(tmp_path / "bin", "paplay", 1)
    player = SystemPlayer(env={"PATH": str(tmp_path / "bin"), "XDG_RUNTIME_DIR": sound_server(tmp_path)})
    assert player.available
    player()
    assert player._proc is not None
    player._proc.wait(5)
    player()  # the next play finds the first one failed
    assert not player.available
    assert player.detail == "paplay failed (exit status 1)"
