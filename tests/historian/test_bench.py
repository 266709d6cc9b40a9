"""The historian benchmark itself runs (at small sizes) and reports every figure."""

from __future__ import annotations

import pytest

from bench.historian import main


def test_quick_benchmark_reports_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m bench.historian --quick` measures ingest, reads, playback and bytes per sample."""
    rows = main(["--quick"])
    names = [row.name for row in rows]
    for needle in ("sustained ingest", "read one tag", "decimated read", "first frame", "seek", "bytes per stored"):
        assert any(needle in name for name in names), needle
    assert all(row.value > 0 for row in rows)
    bytes_per_sample = [row.value for row in rows if row.name.startswith("bytes per stored")]
    assert all(10 < b < 60 for b in bytes_per_sample)
    assert "vs ceiling" in capsys.readouterr().out
