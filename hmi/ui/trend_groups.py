"""Trend groups an operator owns: saved per user and project in the data folder.

The project's `[[trends]]` are the defaults a user starts from; from the first change on,
the user's own groups (pens added, removed or reordered, renamed, new or deleted groups)
live in `{data}/trends/<project key>/<user>.json`, with the folder trend exports go to.
The file is small, versioned and written atomically (a temporary file renamed over the
old one), so a crash mid-write leaves the previous version. A file that cannot be read is
logged, renamed aside (`.corrupt-<time>`) and the project's trends are used.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmi.config.models import Project

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class TrendGroup:
    name: str
    pens: list[str] = field(default_factory=list)  # tag names, in legend order
    span_s: float = 300.0


@dataclass
class TrendSettings:
    groups: list[TrendGroup]
    export_dir: str = ""  # where the last export went ("" = the documents folder)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "_"


def project_key(project: Project) -> str:
    """The project's name, plus a hash of its file's path: two projects of the same name in
    different folders keep different trends."""
    where = str(project.source_path.resolve()) if project.source_path is not None else project.project.name
    digest = hashlib.sha256(where.encode("utf-8")).hexdigest()[:10]
    return f"{_safe(project.project.name)}-{digest}"


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a service account without one)
        return "viewer"


def project_defaults(project: Project) -> list[TrendGroup]:
    groups = [TrendGroup(t.name, list(t.pens), float(t.span_s)) for t in project.trends or []]
    return groups or [TrendGroup("Trend")]


class TrendGroupStore:
    def __init__(self, path: Path, defaults: list[TrendGroup]) -> None:
        self.path = path
        self.defaults = defaults

    @classmethod
    def for_user(cls, data: Path, project: Project, user: str) -> TrendGroupStore:
        return cls(data / "trends" / project_key(project) / f"{_safe(user)}.json", project_defaults(project))

    def load(self) -> TrendSettings:
        """The user's saved groups, or the project's when there are none (or they are unreadable)."""
        if not self.path.exists():
            return TrendSettings(self._copy_defaults())
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError(f"unknown format version {data.get('version') if isinstance(data, dict) else data!r}")
            groups = [
                TrendGroup(str(g["name"]), [str(p) for p in g.get("pens", [])], float(g.get("span_s", 300.0)))
                for g in data["groups"]
            ]
            return TrendSettings(groups or self._copy_defaults(), str(data.get("export_dir", "")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            log.warning("trend groups in %s unreadable (%s); moved to %s, using the project's", self.path, exc, aside)
            try:
                self.path.replace(aside)
            except OSError:
                log.exception("could not move %s aside", self.path)
            return TrendSettings(self._copy_defaults())

    def save(self, settings: TrendSettings) -> None:
        data: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "groups": [{"name": g.name, "pens": list(g.pens), "span_s": g.span_s} for g in settings.groups],
            "export_dir": settings.export_dir,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(temporary, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, self.path)
        except OSError:
            log.exception("could not save trend groups to %s", self.path)

    def _copy_defaults(self) -> list[TrendGroup]:
        return [TrendGroup(g.name, list(g.pens), g.span_s) for g in self.defaults]
