"""Soak (`make soak`): the whole application on the demo plant for an hour; every process
stays under its memory budget and does not grow. HMI_SOAK_S shortens or lengthens the run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.helpers import ARTIFACTS, free_port, hmi_process, stop_process, wait_until, write_demo_project

SOAK_S = float(os.environ.get("HMI_SOAK_S", "3600"))
SAMPLE_EVERY_S = 30.0
BUDGET_MB = 600.0  # the whole application: plant + runtime + window
GROWTH_LIMIT_MB_PER_H = 25.0  # "flat": over the second half of the run


def role(process: psutil.Process) -> str:
    cmd = " ".join(process.cmdline())
    if " sim " in cmd:
        return "plant"
    if "--headless" in cmd:
        return "runtime"
    if " window " in cmd:
        return "window"
    return "other"


@pytest.mark.soak
@pytest.mark.timeout(SOAK_S + 600)
def test_an_hour_on_the_demo_plant_stays_under_budget_and_flat(tmp_path: Path) -> None:
    """RSS of plant, runtime and window sampled every 30 s: total under 600 MB, no growth trend."""
    stream, requests = free_port(), free_port()
    project = write_demo_project(tmp_path, free_port(), stream_port=stream, request_port=requests)
    supervisor = hmi_process("run", "--project", str(project))
    samples: list[dict[str, float]] = []
    try:
        parent = psutil.Process(supervisor.pid)
        wait_until(lambda: {role(c) for c in parent.children()} >= {"plant", "runtime", "window"}, 60)
        start = time.monotonic()
        while time.monotonic() - start < SOAK_S:
            children = {role(c): c for c in parent.children()}
            row = {"t_s": time.monotonic() - start}
            for name, proc in children.items():
                try:
                    row[name] = proc.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    row[name] = float("nan")
            samples.append(row)
            time.sleep(SAMPLE_EVERY_S)
    finally:
        stop_process(supervisor, timeout=30)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "soak_memory.json").write_text(json.dumps(samples, indent=1))
    totals = np.array([sum(v for k, v in s.items() if k != "t_s") for s in samples])
    times_h = np.array([s["t_s"] for s in samples]) / 3600
    assert np.nanmax(totals) < BUDGET_MB, f"peak {np.nanmax(totals):.0f} MB"
    half = len(samples) // 2
    if half >= 4:
        slope = np.polyfit(times_h[half:], totals[half:], 1)[0]
        assert slope < GROWTH_LIMIT_MB_PER_H, f"memory grows {slope:.1f} MB/h in the second half"
