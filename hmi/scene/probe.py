"""Defence in depth: a probe import in a child process, and a verdict cache per file hash.

The validator catches every hazard we know of, but vtkGLTFImporter is C++ that trusts its
input, so a file the window has not seen before is first imported by a child process
(hmi/ui/scene_probe.py) that must exit 0. Only then does the window import the same
bytes itself. Verdicts, good and bad, are cached by SHA-256 (with the VTK and validator
versions), so a known model loads at once and a known crasher is refused at once.

No Qt, no VTK here: this module only starts the child. Runs on any thread (the window
calls it from a worker thread so the GUI never waits on a probe).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from hmi.paths import data_dir, hmi_command
from hmi.scene.validate import CheckedModel, validate_file

log = logging.getLogger(__name__)

# Bump when the validator's rules change: cached verdicts of the old rules are dropped.
VALIDATOR_VERSION = 2
CACHE_FORMAT = 1
CACHE_MAX_ENTRIES = 500
PROBE_TIMEOUT_S = 60.0
_CRASH_SIGNALS = {
    int(getattr(signal, n)) for n in ("SIGSEGV", "SIGABRT", "SIGBUS", "SIGFPE", "SIGILL") if hasattr(signal, n)
}


@dataclass(frozen=True, slots=True)
class ProbeVerdict:
    ok: bool
    message: str  # why not, in words for the operator ("" when ok)
    actors: int = 0
    seconds: float = 0.0  # wall time of the child process
    cached: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelCheck:
    """Validation plus probe: `ok` means the window may import `checked.data` in-process."""

    checked: CheckedModel
    probe: ProbeVerdict | None

    @property
    def ok(self) -> bool:
        return self.checked.report.ok and (self.probe is None or self.probe.ok)

    @property
    def message(self) -> str:
        report = self.checked.report
        if not report.ok:
            return report.headline() if report.unsupported else f"invalid model file: {report.headline()}"
        if self.probe is not None and not self.probe.ok:
            return self.probe.message
        return "OK"


def vtk_version() -> str:
    """The installed VTK's version, without importing VTK (this module stays VTK-free)."""
    try:
        return metadata.version("vtk")
    except metadata.PackageNotFoundError:
        return "unknown"


def probe_command(render: bool = False) -> list[str]:
    extra = ["--render"] if render else []
    if getattr(sys, "frozen", False):
        return hmi_command("model-info", "--probe-child", *extra)
    return [sys.executable, "-m", "hmi.ui.scene_probe", *extra]


def run_probe(
    data: bytes, render: bool = False, timeout_s: float = PROBE_TIMEOUT_S, command: list[str] | None = None
) -> ProbeVerdict:
    """Import `data` in a child process; the verdict says whether VTK survived it."""
    cmd = command or probe_command(render)
    started = time.perf_counter()
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        return ProbeVerdict(
            False,
            f"VTK did not finish importing this model within {timeout_s:.0f} s",
            seconds=timeout_s,
            detail={"transient": True},
        )
    except OSError as exc:
        return ProbeVerdict(
            False,
            f"could not start the probe import: {exc}",
            seconds=time.perf_counter() - started,
            detail={"transient": True},
        )
    seconds = time.perf_counter() - started
    stderr_tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return ProbeVerdict(
            False,
            f"VTK crashed importing this model ({name}); it is not loaded",
            seconds=seconds,
            # A crash signal repeats for the same bytes; a kill from outside may not.
            detail={"stderr": stderr_tail, "transient": -proc.returncode not in _CRASH_SIGNALS},
        )
    result = _last_json_line(proc.stdout)
    if proc.returncode != 0 or result is None:
        reason = result.get("refused") if result else None
        reason = reason or (stderr_tail[-1] if stderr_tail else f"exit status {proc.returncode}")
        return ProbeVerdict(
            False, f"the probe import failed: {reason}", seconds=seconds, detail={"stderr": stderr_tail}
        )
    actors = int(result.get("actors", 0))
    expected = int(result.get("expected", 0))
    if expected > 0 and actors == 0:
        first_error = _first_vtk_error(str(result.get("messages", "")))
        why = f": {first_error}" if first_error else ""
        return ProbeVerdict(False, f"VTK imported nothing from this model{why}", 0, seconds, detail=result)
    return ProbeVerdict(True, "", actors, seconds, detail=result)


def _last_json_line(stdout: bytes) -> dict[str, Any] | None:
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _first_vtk_error(messages: str) -> str:
    """VTK's text is 'ERROR: In file, line N\\nclass (0x...): message'; keep the message."""
    lines = messages.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("ERROR") and i + 1 < len(lines):
            text = lines[i + 1]
            return text.split("): ", 1)[-1].strip()
    return ""


class VerdictCache:
    """Probe verdicts by file hash, in one small JSON file (written atomically).

    Thread-safe; the file carries its format version, and each entry the VTK and
    validator versions it was made with."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "cache" / "glb-probe.json"
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] | None = None
        self._key_versions = {"vtk": vtk_version(), "validator": VALIDATOR_VERSION}

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            entries: dict[str, dict[str, Any]] = {}
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(raw, dict) and raw.get("format") == CACHE_FORMAT and isinstance(raw.get("entries"), dict):
                    entries = raw["entries"]
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                log.warning("ignoring the GLB verdict cache %s: %s", self.path, exc)
            self._entries = entries
        return self._entries

    def get(self, sha256: str) -> ProbeVerdict | None:
        with self._lock:
            entry = self._load().get(sha256)
        if not entry or any(entry.get(k) != v for k, v in self._key_versions.items()):
            return None
        try:
            return ProbeVerdict(
                bool(entry["ok"]), str(entry["message"]), int(entry["actors"]), float(entry["seconds"]), cached=True
            )
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, sha256: str, verdict: ProbeVerdict) -> None:
        """Remember a verdict; transient failures (timeouts, kills from outside) are not kept."""
        if verdict.detail.get("transient"):
            return
        entry = {k: v for k, v in asdict(verdict).items() if k in ("ok", "message", "actors", "seconds")}
        entry.update(self._key_versions, stored=time.time())
        with self._lock:
            entries = self._load()
            entries[sha256] = entry
            if len(entries) > CACHE_MAX_ENTRIES:
                oldest = sorted(entries, key=lambda k: entries[k].get("stored", 0))[: len(entries) - CACHE_MAX_ENTRIES]
                for key in oldest:
                    del entries[key]
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(f".tmp{os.getpid()}")
                tmp.write_text(json.dumps({"format": CACHE_FORMAT, "entries": entries}), encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError as exc:
                log.warning("cannot write the GLB verdict cache %s: %s", self.path, exc)


def check_model(
    path: str | Path, cache: VerdictCache | None = None, probe: bool = True, render: bool = False
) -> ModelCheck:
    """Validate a file and, if it passes, probe-import it (or take the cached verdict)."""
    checked = validate_file(path)
    if not checked.report.ok or not probe or checked.data is None:
        return ModelCheck(checked, None)
    sha = checked.report.sha256
    verdict = cache.get(sha) if cache is not None else None
    if verdict is None:
        verdict = run_probe(checked.data, render=render)
        log.info(
            "probe import of %s: %s in %.2f s",
            Path(path).name,
            "ok" if verdict.ok else verdict.message,
            verdict.seconds,
        )
        if cache is not None:
            cache.put(sha, verdict)
    return ModelCheck(checked, verdict)
