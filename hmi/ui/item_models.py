"""What the window's table models share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def row_runs(rows: Iterable[int]) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of adjacent rows, in order: a model announces each run with
    one `dataChanged`, and the view repaints the rectangle of each run only."""
    first = last = None
    for row in sorted(rows):
        if last is not None and row == last + 1:
            last = row
            continue
        if first is not None and last is not None:
            yield first, last
        first = last = row
    if first is not None and last is not None:
        yield first, last
