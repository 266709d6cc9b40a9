"""What a reader reads on each back end: the tables, shaped alike (the "schema adapter").

HistorianReader speaks to one shape of tables whatever the back end:

- tags(id, name, datatype, unit, description, low, high)
- tag_configs(tag_id, since_ns, datatype, unit, description, low, high)
- samples(tag_id, ts, value, quality) and sample_texts(tag_id, ts, text), read by plain SQL
  text on the hot paths (the same table names on both back ends)
- events(id, ts, category, source, severity, message, user, details), `id` increasing in
  the order a station recorded its events (the journal's keyset paging runs on (ts, id))

A local SQLite file has exactly these tables. The central PostgreSQL database keeps every
station's data in one set of tables keyed by station (hmi/historian/central.py); its layout
is a set of SELECTs over them:

- with a station (`?station=ws1`): that station's tags and events under their own names,
  so a project recorded there opens unchanged;
- without one: every station's, named `station/name` (tags and event sources), so that one
  playback shows `ws1/cnc01.x` beside `ws2/cnc01.x`. An event's id is then its station's
  own id times EVENT_ID_STATIONS plus the station id: unique, and in each station's order.

Sample tag ids are the central ones in both cases, so the hot reads need no join.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from hmi.historian import schema as s
from hmi.historian.errors import HistorianError
from hmi.historian.sessions import ModelRecord, ProjectRecord, RecordedSession

if TYPE_CHECKING:
    from hmi.historian.dialect import Dialect

# Central event ids without a station: local id * this + station id (station ids stay below).
EVENT_ID_STATIONS = 4096


@dataclass(frozen=True, slots=True)
class Layout:
    tags: sa.FromClause
    tag_configs: sa.FromClause
    samples: sa.FromClause
    events: sa.FromClause
    central: bool = False
    station: str | None = None  # the one station shown (central only)
    station_id: int | None = None


LOCAL = Layout(s.tags, s.tag_configs, s.samples, s.events)


def _qualified(station: sa.ColumnElement[str], name: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    return sa.func.concat(station, "/", name)


def central_layout(conn: sa.Connection, station: str | None) -> Layout:
    """The central tables as a reader of `station` (None: every station) sees them."""
    from hmi.historian import central as c

    st, t, e = c.stations, c.tags, c.events
    tag_columns = (t.c.datatype, t.c.unit, t.c.description, t.c.low, t.c.high)
    event_columns = (e.c.ts, e.c.category, e.c.severity, e.c.message, e.c.user, e.c.details)
    if station is not None:
        station_id = conn.execute(sa.select(st.c.id).where(st.c.name == station)).scalar()
        if station_id is None:
            known = sorted(str(n) for (n,) in conn.execute(sa.select(st.c.name)))
            raise HistorianError(
                f"no station {station!r} in the central historian (stations: {', '.join(known) or 'none yet'})"
            )
        sid = int(station_id)
        tags = sa.select(t.c.id, t.c.name, *tag_columns).where(t.c.station_id == sid).subquery("tags")
        events = (
            sa.select(e.c.local_id.label("id"), e.c.source, *event_columns)
            .where(e.c.station_id == sid)
            .subquery("events")
        )
        # tag_configs is read by a tag id taken from `tags`: no station filter needed there.
        return Layout(tags, c.tag_configs, c.samples, events, central=True, station=station, station_id=sid)
    tags = (
        sa.select(t.c.id, _qualified(st.c.name, t.c.name).label("name"), *tag_columns)
        .join_from(t, st, t.c.station_id == st.c.id)
        .subquery("tags")
    )
    events = (
        sa.select(
            (e.c.local_id * EVENT_ID_STATIONS + e.c.station_id).label("id"),
            _qualified(st.c.name, e.c.source).label("source"),
            *event_columns,
        )
        .join_from(e, st, e.c.station_id == st.c.id)
        .subquery("events")
    )
    return Layout(tags, c.tag_configs, c.samples, events, central=True)


def open_central(url: str, dialect: Dialect) -> tuple[sa.Engine, str | None]:
    """An engine on a central database this version reads, and the station the URL names."""
    from hmi.historian import central as c
    from hmi.historian.postgres import connection_error, safe_url, url_station

    station = url_station(url)
    engine = dialect.create_engine(url)
    try:
        with engine.connect() as conn:
            found = c.schema_version(conn)
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        raise HistorianError(connection_error(url, exc)) from None
    if found is None:
        engine.dispose()
        raise HistorianError(f"{safe_url(url)} is not an hmi central historian (no tables): run `hmi central init`")
    if found > c.CENTRAL_SCHEMA_VERSION:
        engine.dispose()
        raise HistorianError(
            f"{safe_url(url)}: central schema version {found} is newer than this hmi reads "
            f"(up to {c.CENTRAL_SCHEMA_VERSION}): update hmi"
        )
    return engine, station


def central_session(conn: sa.Connection, layout: Layout, at_ns: int, until_ns: int | None) -> RecordedSession | None:
    """read_session (sessions.py) on the central tables, for the reader's station. Without a
    station there is no one project for the mixed tags (`ws1/...`, `ws2/...`): None, and a
    playback shows the generic view of every station's tags."""
    from hmi.historian import central as c

    if layout.station_id is None:
        return None
    t = c.sessions
    mine = t.c.station_id == layout.station_id
    row = conn.execute(
        sa.select(t).where(mine, t.c.started_ns <= at_ns).order_by(t.c.started_ns.desc()).limit(1)
    ).first()
    if row is None and until_ns is not None:
        row = conn.execute(
            sa.select(t).where(mine, t.c.started_ns < until_ns).order_by(t.c.started_ns).limit(1)
        ).first()
    if row is None:
        return None
    text: str | None = None
    redacted = 0
    if row.project_sha256 is not None:
        f = c.project_files
        file_row = conn.execute(sa.select(f.c.text, f.c.redacted).where(f.c.sha256 == row.project_sha256)).first()
        if file_row is not None:
            text, redacted = str(file_row.text), int(file_row.redacted)
    m = c.session_models
    models = tuple(
        ModelRecord(r.machine, r.path, r.sha256, None if r.size is None else int(r.size))
        for r in conn.execute(
            sa.select(m).where(m.c.station_id == layout.station_id, m.c.session_id == row.id).order_by(m.c.machine)
        )
    )
    record = ProjectRecord(row.project_name, row.project_path, row.project_sha256, text, redacted, models)
    return RecordedSession(int(row.id), int(row.started_ns), row.host, row.program_version, record)


def central_timezone(conn: sa.Connection, layout: Layout) -> str | None:
    """The time zone of the project the station ran last (the central database has no meta
    time zone: stations may differ); None when no session names one."""
    import tomllib

    from hmi.historian import central as c

    t, f = c.sessions, c.project_files
    query = sa.select(f.c.text).join_from(t, f, t.c.project_sha256 == f.c.sha256)
    if layout.station_id is not None:
        query = query.where(t.c.station_id == layout.station_id)
    text = conn.execute(query.order_by(t.c.started_ns.desc()).limit(1)).scalar()
    if text is None:
        return None
    try:
        zone = tomllib.loads(str(text)).get("project", {}).get("timezone")
    except tomllib.TOMLDecodeError:
        return None
    return zone if isinstance(zone, str) and zone else None
