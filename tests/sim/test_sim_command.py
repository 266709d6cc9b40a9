"""`hmi sim` as a user runs it, and the demo project and docs agreeing with the simulator."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest
from asyncua import Client, ua

from hmi.cli import main
from hmi.config import load_project
from hmi.sim.opcua_server import NAMESPACE_URI
from hmi.sim.plant import MACHINE_TYPES, catalogue
from tests.helpers import DEMO_PROJECT, REPO, free_port, hmi_process, run_async, stop_process, wait_for_port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--machines", "cnc01,lathe07"], "unknown demo machine"),
        (["--fault", "pump01.bearing_wear"], "bad fault"),
        (["--fault", "pump01.tool_wear@10s"], "unknown"),
        (["--machines", "cnc01", "--fault", "pump01.cavitation@1s"], "not simulated"),
        (["--opcua-port", "0"], "nothing to serve"),
        (["--user", "operator"], "needs a password"),
        (["--rate", "0"], "positive"),
        (["--machines", ""], "no machines"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every mistake on the command line ends with exit code 2 and a message that names it."""
    monkeypatch.delenv("HMI_SIM_PASSWORD", raising=False)
    assert main(["sim", *args]) == 2
    assert message in capsys.readouterr().err


def test_list_prints_every_machine_signal_and_fault() -> None:
    """`hmi sim --list` (a real process) prints the catalogue of machines, signals and faults."""
    result = subprocess.run(
        [sys.executable, "-m", "hmi", "sim", "--list"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for mid, cls in MACHINE_TYPES.items():
        assert f"### {mid}:" in result.stdout
        for spec in cls.signals:
            assert f"`{spec.name}`" in result.stdout
        for fault in cls.faults:
            assert f"`{fault}`" in result.stdout


def test_sim_serves_logs_each_second_and_applies_its_schedule() -> None:
    """`hmi sim` with a schedule and a required user: one log line a second naming what it serves and the
    active faults; the scheduled fault shows on the server; the user's password (from the environment) is
    needed to connect; it stops by itself after --duration."""
    port = free_port()
    proc = hmi_process(
        "sim",
        "--opcua-port",
        str(port),
        "--security",
        "none",
        "--user",
        "operator",
        "--speed",
        "10",
        "--fault",
        "pump01.cavitation@2s",
        "--duration",
        "3",
        env={"HMI_SIM_PASSWORD": "from-the-env"},
    )
    try:
        wait_for_port(port, timeout=30)

        async def check() -> None:
            client = Client(f"opc.tcp://127.0.0.1:{port}/hmi-demo", timeout=10)
            client.set_user("operator")
            client.set_password("from-the-env")
            await client.connect()
            try:
                ns = await client.get_namespace_index(NAMESPACE_URI)
                active = client.get_node(ua.NodeId("Plant/pump01/ActiveFaults", ns))
                for _ in range(50):
                    if await active.read_value() == ["cavitation"]:
                        break
                    await asyncio.sleep(0.1)
                assert await active.read_value() == ["cavitation"]
            finally:
                await client.disconnect()

        run_async(check())
        proc.wait(30)
        out = stop_process(proc)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, out
    lines = [line for line in out.splitlines() if "hmi.sim.runner" in line]
    assert 2 <= len(lines) <= 4, out
    assert re.search(r"5 machines, 44 signals at 10 Hz; OPC UA \d+ updates/s, \d subscription", lines[0])
    assert "faults: pump01.cavitation" in lines[-1]
    assert "pump01: fault cavitation injected (schedule" in out


def test_demo_project_describes_every_simulated_signal() -> None:
    """config/demo.toml has a tag for every signal of the five machines, with the simulator's address, unit,
    type, writability and (except counters) range, and a trend for each machine."""
    project = load_project(DEMO_PROJECT)
    assert project.simulator.enabled and not project.simulator.machines
    assert set(project.machines) == set(MACHINE_TYPES)
    expected = {f"{mid}.{s.name}": (mid, s) for mid, cls in MACHINE_TYPES.items() for s in cls.signals}
    assert set(project.tags) == set(expected)
    for name, (mid, spec) in expected.items():
        tag = project.tags[name]
        assert tag.address == f"nsu={NAMESPACE_URI};s=Plant/{mid}/{spec.name}"
        assert (tag.unit, tag.datatype, tag.writable) == (spec.unit, spec.datatype, spec.writable), name
        if tag.range is not None:
            assert tag.range == (spec.low, spec.high), name
        else:
            assert spec.datatype in ("int", "string", "bool"), name
    pens = {pen.split(".")[0] for trend in project.trends for pen in trend.pens}
    assert pens == set(MACHINE_TYPES)


def test_docs_list_every_signal_and_fault() -> None:
    """docs/demo-plant.md carries the catalogue exactly as the code produces it."""
    text = (REPO / "docs" / "demo-plant.md").read_text(encoding="utf-8")
    begin, end = text.index("<!-- catalogue: begin -->"), text.index("<!-- catalogue: end -->")
    assert text[begin:end].strip().removeprefix("<!-- catalogue: begin -->").strip() == catalogue().strip()


@pytest.mark.soak  # three simulator processes: about 20 s
def test_benchmark_runs_and_reports_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m bench.sim` (at small sizes) measures the demo load and both OPC UA write paths."""
    from bench.sim import main as bench_main

    demo, batched, ceiling = bench_main(["--seconds", "1", "--warmup", "1", "--tags", "200"])
    assert demo.rate > 100 and demo.cpu > 0
    assert batched.rate > 1000 and ceiling.rate > 1000
    assert "library ceiling" in capsys.readouterr().out
