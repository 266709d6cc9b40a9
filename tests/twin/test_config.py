"""[twin.*] in the project file: validated with `FILE: key.path: message`, derived tags known
before the runtime starts, and `hmi twin fit` fitting a pump curve from a recorded healthy period."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hmi.cli import main
from hmi.config import ConfigError, load_project
from hmi.config.twin import PumpCurve
from hmi.historian.writer import HistorianWriter
from hmi.sim import pump as pump_sim
from tests.helpers import DEMO_PROJECT, REPO
from tests.twin.feed import START_NS, PlantFeed

DEMO = DEMO_PROJECT.read_text(encoding="utf-8")
KNOWN_CMM = " (measured_length, part_id, part_temperature)"


def issues(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_project(path)
    return [str(i).removeprefix(f"{path}: ") for i in caught.value.issues]


def test_demo_project_declares_the_derived_tags_and_the_compensation_trend() -> None:
    """The demo's twin tags follow the configured ones; a trend group shows temperature, raw and compensated length."""
    project = load_project(DEMO_PROJECT)
    names = [s.name for s in project.tag_specs()]
    assert names.index("cmm01.length_compensated") > names.index("pump01.supply_voltage")
    assert "pump01.advisory.cavitation" in names and "cnc01.tool_wear" in names
    trend = next(t for t in project.trends if t.name == "CMM thermal compensation")
    assert trend.pens == ["cmm01.part_temperature", "cmm01.measured_length", "cmm01.length_compensated"]


def test_twin_mistakes_are_reported_by_key(tmp_path: Path) -> None:
    """Unknown input, tag, material, machine and a command tag that cannot be written: one line each, by key."""
    text = DEMO.replace('inputs = { part_id = "cmm01.part_id" }', 'inputs = { part_idd = "cmm01.part_id" }')
    text = text.replace('material = "aluminium_6061"', 'material = "unobtainium"')
    text = text.replace('speed_setpoint_tag = "pump01.speed_setpoint"', 'speed_setpoint_tag = "pump01.speed"')
    text += '\n[twin.pump02]\nkind = "centrifugal_pump"\nrated_speed_rpm = 1450\n[twin.pump02.curve]\n'
    text += "head_shutoff_m = 30\nhead_k = 0.01\nflow_rated_m3h = 20\nsuction_bar = 1\ncurrent_magnetising_a = 3\n"
    text += "current_active_a = 5\n"
    found = issues(tmp_path, text)
    assert any(line.startswith("twin.cmm01.material: unknown material 'unobtainium'") for line in found), found
    text = text.replace('material = "unobtainium"', 'material = "brass"')
    found = issues(tmp_path, text)
    assert found[0] == "twin.cmm01.inputs.part_idd: unknown input 'part_idd' of thermal_compensation" + KNOWN_CMM
    assert "twin.pump01.speed_setpoint_tag: pump01.speed must be writable, with a range" in found
    assert "twin.pump02: machine 'pump02' is not defined under [machines.pump02]" in found
    assert any(line.startswith("twin.pump02: input 'speed' reads tag 'pump02.speed'") for line in found)


def test_check_config_prints_file_key_and_message(tmp_path: Path) -> None:
    """`hmi check-config` exits 2 and prints `FILE: twin.<machine>...: message` for a bad twin section."""
    path = tmp_path / "bad.toml"
    path.write_text(DEMO.replace('kind = "cnc_tool_health"', 'kind = "cnc_tool_healt"'), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "hmi", "check-config", str(path)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"{path}: twin.cnc01.kind: unknown kind 'cnc_tool_healt'"), result.stderr


def test_twin_fit_recovers_the_pump_curve_from_the_historian(
    tmp_path: Path, private_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Half an hour of healthy running at three speeds, recorded in a real historian file, fits the
    simulated pump's curve; the printed block is valid TOML for [twin.pump01.curve]."""
    feed = PlantFeed.demo("pump01", seed=6)
    writer = HistorianWriter.from_project(feed.project, feed.bus.registry)
    writer.attach(feed.bus)
    writer.start()

    def operator(f: PlantFeed) -> None:
        if abs(f.t - 600) < 0.05:
            f.machines["pump01"].write("speed_setpoint", 2400)
        if abs(f.t - 1200) < 0.05:
            f.machines["pump01"].write("speed_setpoint", 2700)

    feed.run(1800, operator)
    writer.close()
    start = _iso(START_NS)
    end = _iso(START_NS + 1800 * 10**9)
    db = private_data_dir / "demo.sqlite"
    code = main(["twin", "fit", "--db", str(db), "--from", start, "--to", end, "--machine", "pump01",
                 "--project", str(DEMO_PROJECT)])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    block = tomllib.loads(out.out)["twin"]["pump01"]["curve"]
    curve = PumpCurve.model_validate(block)
    assert curve.flow_rated_m3h == pytest.approx(55.0, rel=0.005)
    assert curve.head_shutoff_m == pytest.approx(pump_sim.SHUTOFF_HEAD_M, rel=0.01)
    assert curve.suction_bar == pytest.approx(pump_sim.TANK_BAR, abs=0.005)
    assert curve.suction_k == pytest.approx(pump_sim.SUCTION_K, rel=0.05)
    assert "head_k: kept, Q/n does not vary" in out.out  # a closed loop: said, not guessed silently
    assert "residual RMS flow" in out.err


def _iso(ts_ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
