"""Retention: delete data older than a cutoff in small chunks, one short transaction each.

`purge_steps` is a generator: every `next()` deletes at most `chunk_rows` rows of one tag
(or of the events table) and commits, so the writer thread can interleave it with its
commits and ingest never waits behind one long delete. Portable SQL only (no DELETE ...
LIMIT, which SQLite builds often lack): a chunk's upper bound is the timestamp of the
chunk_rows-th old row of that tag.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa

from hmi.historian import schema as s


def purge_steps(conn: sa.Connection, cutoff_ns: int, chunk_rows: int = 5_000) -> Iterator[int]:
    """Delete samples, texts and events with ts < cutoff_ns; yields rows deleted per chunk."""
    with conn.begin():
        tag_ids = [int(r[0]) for r in conn.execute(sa.select(s.tags.c.id).order_by(s.tags.c.id))]
    for table in (s.samples, s.sample_texts):
        for tag_id in tag_ids:
            while True:
                with conn.begin():
                    bound = conn.execute(
                        sa.select(table.c.ts)
                        .where(table.c.tag_id == tag_id, table.c.ts < cutoff_ns)
                        .order_by(table.c.ts)
                        .offset(chunk_rows)
                        .limit(1)
                    ).scalar()
                    upper = cutoff_ns if bound is None else int(bound)
                    deleted = conn.execute(
                        sa.delete(table).where(table.c.tag_id == tag_id, table.c.ts < upper)
                    ).rowcount
                if deleted:
                    yield int(deleted)
                if bound is None:
                    break
    while True:
        with conn.begin():
            ids = sa.select(s.events.c.id).where(s.events.c.ts < cutoff_ns).order_by(s.events.c.id).limit(chunk_rows)
            deleted = conn.execute(sa.delete(s.events).where(s.events.c.id.in_(ids.scalar_subquery()))).rowcount
        if deleted:
            yield int(deleted)
        if deleted < chunk_rows:
            break
