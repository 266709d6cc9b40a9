"""The session record: which project each runtime start ran, kept beside the data it recorded.

`hmi replay --db FILE --shift S` reads it to show the machines, 3D models and trend groups of
the recording without being told the project file (docs/historian.md, "Sessions").

What is kept, per runtime start (schema version 2: tables sessions, project_files,
session_models):

- the project file's text, by the SHA-256 of its bytes (stored once per distinct file, so a
  runtime restarting in a loop adds a small row, not another copy), and its path;
- each machine's GLB model: path, SHA-256 and size. Not a copy: models are engineered
  files kept under version control, up to many MB each, and the hash names the exact version
  to fetch. When the file is gone at replay the machine shows without a model and the
  playback window says which file and hash it needs.

No secrets: project files name passwords by reference only (`password_ref`); a password an
engineer wrote into a URL anyway (`postgresql://user:pw@host/db`) is blanked out before the
text is stored, and the record says so (`redacted`). The hash stays that of the file on disk.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from hmi.config.models import Project
from hmi.historian import schema as s

log = logging.getLogger(__name__)

# scheme://user:password@  ->  scheme://user:***@   (the user stays: it helps, and it is no secret)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@\"'\[\]]*:)(?P<secret>[^ \t\r\n@/\"']+)(?=@)")
REDACTED = "***"


def redact(text: str) -> tuple[str, int]:
    """`text` with every password written into a URL replaced by ***, and how many were."""
    return _URL_PASSWORD.subn(lambda m: m["head"] + REDACTED, text)


def _sha256_of(path: Path) -> tuple[str, int] | None:
    """(hex digest, size) of a file, or None when it cannot be read."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return None
    return digest.hexdigest(), size


@dataclass(frozen=True, slots=True)
class ModelRecord:
    machine: str
    path: str
    sha256: str | None  # None: the file was not there when recorded
    size: int | None


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    """A project as a session ran it."""

    name: str
    path: str | None  # None: a project built in code (tests), not read from a file
    sha256: str | None
    text: str | None  # the file's text, with URL passwords blanked out
    redacted: int  # how many secrets were blanked out of `text`
    models: tuple[ModelRecord, ...]

    @classmethod
    def of(cls, project: Project) -> ProjectRecord:
        """Read the project's file and hash its models (the writer thread calls this, once)."""
        path = project.source_path
        text: str | None = None
        sha: str | None = None
        redacted = 0
        if path is not None:
            try:
                raw = path.read_bytes()
            except OSError as exc:
                log.warning("historian: cannot read the project file %s to record it: %s", path, exc)
            else:
                sha = hashlib.sha256(raw).hexdigest()
                text, redacted = redact(raw.decode("utf-8", errors="replace"))
                if redacted:
                    log.warning("historian: %d password(s) written in URLs of %s were not recorded", redacted, path)
        models = []
        for machine, config in project.machines.items():
            if config.model:
                model_path = project.resolve_path(config.model)
                found = _sha256_of(model_path)
                models.append(ModelRecord(machine, str(model_path), *(found if found is not None else (None, None))))
        return cls(project.project.name, str(path) if path else None, sha, text, redacted, tuple(models))


@dataclass(frozen=True, slots=True)
class RecordedSession:
    """A runtime start found in the historian."""

    id: int
    started_ns: int
    host: str
    program_version: str
    project: ProjectRecord


def write_session(conn: sa.Connection, record: ProjectRecord, started_ns: int, program_version: str) -> bool:
    """Record a runtime start (in one transaction); False if this start is recorded already
    (the writer reopens its file after a failure, or a replaced file is opened anew)."""
    host = socket.gethostname()
    with conn.begin():
        exists = conn.execute(
            sa.select(s.sessions.c.id).where(s.sessions.c.started_ns == started_ns, s.sessions.c.host == host)
        ).first()
        if exists is not None:
            return False
        if record.sha256 is not None and record.text is not None:
            known = conn.execute(
                sa.select(s.project_files.c.sha256).where(s.project_files.c.sha256 == record.sha256)
            ).first()
            if known is None:
                conn.execute(
                    sa.insert(s.project_files).values(sha256=record.sha256, text=record.text, redacted=record.redacted)
                )
        key = conn.execute(
            sa.insert(s.sessions).values(
                started_ns=started_ns,
                host=host,
                program_version=program_version,
                project_name=record.name,
                project_path=record.path,
                project_sha256=record.sha256 if record.text is not None else None,
            )
        ).inserted_primary_key
        assert key is not None
        if record.models:
            conn.execute(
                sa.insert(s.session_models),
                [
                    {"session_id": key[0], "machine": m.machine, "path": m.path, "sha256": m.sha256, "size": m.size}
                    for m in record.models
                ],
            )
    return True


def read_session(conn: sa.Connection, at_ns: int, until_ns: int | None = None) -> RecordedSession | None:
    """The session running at `at_ns` (the last one started at or before it); failing that,
    the first one started before `until_ns`. None when the file has none (an older file)."""
    t = s.sessions
    row = conn.execute(sa.select(t).where(t.c.started_ns <= at_ns).order_by(t.c.started_ns.desc()).limit(1)).first()
    if row is None and until_ns is not None:
        row = conn.execute(sa.select(t).where(t.c.started_ns < until_ns).order_by(t.c.started_ns).limit(1)).first()
    if row is None:
        return None
    text: str | None = None
    redacted = 0
    if row.project_sha256 is not None:
        file_row = conn.execute(
            sa.select(s.project_files.c.text, s.project_files.c.redacted).where(
                s.project_files.c.sha256 == row.project_sha256
            )
        ).first()
        if file_row is not None:
            text, redacted = str(file_row.text), int(file_row.redacted)
    m = s.session_models
    models = tuple(
        ModelRecord(r.machine, r.path, r.sha256, None if r.size is None else int(r.size))
        for r in conn.execute(sa.select(m).where(m.c.session_id == row.id).order_by(m.c.machine))
    )
    record = ProjectRecord(row.project_name, row.project_path, row.project_sha256, text, redacted, models)
    return RecordedSession(int(row.id), int(row.started_ns), row.host, row.program_version, record)


def model_file_state(model: ModelRecord, path: Path) -> str:
    """ "ok", "missing" or "changed": the model file at `path` against the recorded one."""
    found = _sha256_of(path)
    if found is None:
        return "missing"
    if model.sha256 is not None and found[0] != model.sha256:
        return "changed"
    return "ok"
