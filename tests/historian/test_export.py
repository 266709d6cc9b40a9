"""`hmi export`: CSV content, tag selection, Parquet, the message without pyarrow, progress."""

from __future__ import annotations

import csv
import io
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hmi.cli import main
from hmi.core.samples import SampleBatch
from hmi.historian import HistorianReader, HistorianWriter
from hmi.historian.export import PARQUET_HINT, ExportError, Progress, export
from tests.historian.conftest import NS, T0, make_registry

MakeWriter = Callable[..., HistorianWriter]


@pytest.fixture
def recorded(make_writer: MakeWriter, db_path: Path) -> Path:
    writer = make_writer(make_registry(2, string_tags=1), timezone="Europe/Berlin")
    writer.submit(
        SampleBatch.from_arrays(
            [0, 0, 0, 1, 2],
            [T0, T0 + NS, T0 + 2 * NS, T0 + NS // 2, T0],
            [1.5, math.nan, math.inf, 0.1, math.nan],
            [0, 2, 1, 3, 0],
            {4: "G01, X10"},
        )
    )
    writer.close()
    return db_path


def test_csv_holds_every_sample_exactly(recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI writes one row per sample: tag, UTC time, ns, exact value (text for strings), quality name."""
    out = tmp_path / "out.csv"
    code = main(
        [
            "export",
            "--db",
            str(recorded),
            "--from",
            "2026-09-21T14:13:20Z",
            "--to",
            "2026-09-21T14:14Z",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "exported 5 samples of 3 tags" in capsys.readouterr().out
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows == [
        ["tag", "time_utc", "ts_ns", "value", "quality"],
        ["m.t0", "2026-09-21T14:13:20.000000000Z", str(T0), "1.5", "GOOD"],
        ["m.t0", "2026-09-21T14:13:21.000000000Z", str(T0 + NS), "nan", "BAD"],
        ["m.t0", "2026-09-21T14:13:22.000000000Z", str(T0 + 2 * NS), "inf", "UNCERTAIN"],
        ["m.t1", "2026-09-21T14:13:20.500000000Z", str(T0 + NS // 2), "0.1", "COMM_LOST"],
        ["m.s0", "2026-09-21T14:13:20.000000000Z", str(T0), "G01, X10", "GOOD"],
    ]


def test_local_times_and_tag_selection(recorded: Path, tmp_path: Path) -> None:
    """--from/--to without an offset are in the recording's time zone; --tags picks tags."""
    out = tmp_path / "sel.csv"
    code = main(
        [
            "export",
            "--db",
            str(recorded),
            "--from",
            "2026-09-21T16:13:21",
            "--to",
            "2026-09-21T16:14",
            "--tags",
            "m.t0",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rows = list(csv.reader(out.open(encoding="utf-8")))[1:]
    assert [r[2] for r in rows] == [str(T0 + NS), str(T0 + 2 * NS)]


def test_unknown_tags_and_bad_ranges_are_refused_clearly(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown tag or a reversed range exits 2 with a message naming the problem."""
    args = ["export", "--db", str(recorded), "--from", "2026-09-21T14:00Z", "--to", "2026-09-21T15:00Z"]
    assert main([*args, "--tags", "m.nope"]) == 2
    assert "unknown tag(s): m.nope" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["export", "--db", str(recorded), "--from", "2026-09-21T15:00Z", "--to", "2026-09-21T14:00Z"])
    assert exc.value.code == 2
    assert "--to must be after --from" in capsys.readouterr().err


def test_parquet_has_typed_columns(recorded: Path, tmp_path: Path) -> None:
    """Parquet keeps tag, ns timestamps, float values (NaN, inf), quality and text."""
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is an optional dependency (dev installs it)")
    out = tmp_path / "out.parquet"
    with HistorianReader(recorded) as reader:
        result = export(reader, T0, T0 + 60 * NS, out, "parquet")
    assert result.samples == 5
    table = pq.read_table(out).to_pydict()
    assert [str(t) for t in table["tag"]] == ["m.t0", "m.t0", "m.t0", "m.t1", "m.s0"]
    assert table["value"][0] == 1.5 and math.isnan(table["value"][1]) and table["value"][2] == math.inf
    assert table["quality"] == [0, 2, 1, 3, 0]
    assert table["text"] == [None, None, None, None, "G01, X10"]


def test_parquet_without_pyarrow_says_how_to_get_it(
    recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pyarrow the export stops before writing anything and says to install it."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with HistorianReader(recorded) as reader, pytest.raises(ExportError) as exc:
        export(reader, T0, T0 + 60 * NS, tmp_path / "x.parquet", "parquet")
    assert str(exc.value) == PARQUET_HINT
    assert "pip install pyarrow" in PARQUET_HINT
    assert not (tmp_path / "x.parquet").exists()


def test_progress_bar_on_a_terminal_and_lines_on_a_pipe() -> None:
    """A terminal gets a redrawn bar ending at 100 %; a pipe gets one line per 10 %."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    progress = Progress(1000, tty, delay_s=0.0)
    for _ in range(10):
        progress.advance(100)
    progress.finish()
    text = tty.getvalue()
    assert "\r" in text and "100%" in text and "1,000/1,000 samples" in text
    pipe = io.StringIO()
    progress = Progress(1000, pipe, delay_s=0.0)
    progress._last_draw = -1e9
    for _ in range(10):
        progress._last_draw = -1e9
        progress.advance(100)
    progress.finish()
    lines = pipe.getvalue().splitlines()
    assert lines[-1] == "exporting: 100% (1,000/1,000 samples)"
    assert len(lines) <= 11
    quiet = io.StringIO()
    short = Progress(10, quiet, delay_s=60.0)
    short.advance(10)
    short.finish()
    assert quiet.getvalue() == "", "a quick export prints no bar"
