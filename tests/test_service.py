"""`hmi service`: the unit it writes runs the runtime that records with no window, restarts
it on failure and logs to the journal only; install, status and uninstall; what it refuses.
And a station's `hmi run` (a project naming a remote runtime) runs only a window.

systemd is not PID 1 in this test container, so `systemctl` cannot reach a manager: the
install/status/uninstall tests put a stub that records its calls first on PATH (and skip
where systemd does run, rather than enabling a real unit from a test). The unit's syntax is
checked by the real `systemd-analyze verify`, which needs no running systemd; the unit's
command line is run for real, as systemd would run it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmi.cli import service
from hmi.historian import HistorianReader
from hmi.security.stations import StationList, key_pair
from hmi.supervisor import find_running, write_run_file
from tests.helpers import REPO, free_port, hmi_process, stop_process, wait_until, write_demo_project
from tests.system.test_processes import children_by_role

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
PID1_IS_SYSTEMD = Path("/proc/1/comm").is_file() and Path("/proc/1/comm").read_text().strip() == "systemd"


def hmi(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hmi", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)


def settings_of(text: str) -> dict[str, str]:
    """[Service] and [Unit] settings, the last of each key (Environment= is read apart)."""
    sections = service.read_unit(text)
    return {k: v for name in ("Unit", "Service", "Install") for k, v in sections.get(name, [])}


def test_the_system_unit_runs_the_headless_runtime_on_the_absolute_project(tmp_path: Path) -> None:
    """The unit (from a relative --project) starts an existing executable with the absolute
    project, restarts on failure within a start limit, keeps its data in /var/lib/hmi behind
    a read-only system, and passes `systemd-analyze verify`."""
    project = write_demo_project(tmp_path, free_port())
    me = getpass.getuser()
    result = hmi("service", "install", "--project", project.name, "--user-name", me, "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(service.UNIT_MARKER)
    sections = service.read_unit(text)
    argv = service.unit_argv(sections)
    assert Path(argv[0]).is_absolute() and os.access(argv[0], os.X_OK), argv
    assert argv[1:] == ["-m", "hmi", "run", "--headless", "--project", str(project)]
    s = settings_of(text)
    assert s["Restart"] == "on-failure" and int(s["RestartSec"]) > 0
    assert int(s["StartLimitBurst"]) > 1 and int(s["StartLimitIntervalSec"]) > 0
    assert s["SuccessExitStatus"] == "4"  # an operator's stop_system: stays stopped
    assert s["User"] == me and s["WantedBy"] == "multi-user.target"
    assert s["StateDirectory"] == "hmi" and service.unit_environment(sections)["HMI_DATA_DIR"] == "/var/lib/hmi"
    assert s["ProtectSystem"] == "strict" and "/var/lib/hmi" in service.unquote(s["ReadWritePaths"])
    assert s["ProtectHome"] == "yes" and s["NoNewPrivileges"] == "yes" and s["PrivateTmp"] == "yes"
    assert "StandardOutput" not in s and "StandardError" not in s  # the journal, systemd's default
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax was not verified")
    unit = tmp_path / "hmi-runtime.service"
    unit.write_text(text, encoding="utf-8")
    checked = verify(unit)
    assert checked.returncode == 0, checked.stderr


def test_a_project_or_historian_in_a_home_folder_stays_reachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project under a home folder is readable (ProtectHome=read-only, not hidden), and a
    historian file outside the data folder is writable (its folder in ReadWritePaths)."""
    home = tmp_path / "home"
    (home / "ada").mkdir(parents=True)
    history = tmp_path / "srv" / "history"
    history.mkdir(parents=True)
    project = write_demo_project(home / "ada", free_port())
    text = project.read_text(encoding="utf-8")
    project.write_text(text.replace("sqlite:///{data}/demo.sqlite", f"sqlite:///{history}/plant.sqlite"))
    monkeypatch.setattr(service, "HOME_FOLDERS", (home,))
    args = argparse.Namespace(project=str(project), user=False, user_name=getpass.getuser())
    s = settings_of(service.unit_text(service._plan(args)))
    assert s["ProtectHome"] == "read-only"
    assert service.unquote(s["ReadWritePaths"]) == ["/var/lib/hmi", str(history)]


def test_a_frozen_bundle_runs_its_own_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a PyInstaller bundle the unit starts the bundle's executable, not `python -m hmi`."""
    project = write_demo_project(tmp_path, free_port())
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/hmi/hmi")
    args = argparse.Namespace(project=str(project), user=True, user_name=None)
    argv = service.unit_argv(service.read_unit(service.unit_text(service._plan(args))))
    assert argv == ["/opt/hmi/hmi", "run", "--headless", "--project", str(project)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20), min_size=1, max_size=5))
def test_every_argument_survives_the_unit_quoting(argv: list[str]) -> None:
    """For every command line: ExecStart read back with shell quoting rules and systemd's
    `%%`/`$$` escapes (no `$$` in the program's path) gives the same words (spaces,
    quotes, %, $, backslashes in paths)."""
    assert service.read_exec_start(service.exec_start(argv)) == argv


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_finds_an_executable_whose_path_needs_quoting(tmp_path: Path) -> None:
    """systemd itself reads the quoted ExecStart: a program under a folder named with a
    space, % and $ is found; written unquoted, the same path is not."""
    folder = tmp_path / "HMI %i $HOME"
    folder.mkdir()
    (folder / "python").symlink_to(sys.executable)
    plan = service.UnitPlan([str(folder / "python"), "-m", "hmi"], tmp_path, user_level=True)
    unit = tmp_path / "quoted.service"
    unit.write_text(service.unit_text(plan), encoding="utf-8")
    assert verify(unit).returncode == 0, verify(unit).stderr
    unit.write_text(service.unit_text(plan).replace(service.exec_start(plan.argv), f"{folder}/python -m hmi"))
    assert verify(unit).returncode != 0


# -- install, status, uninstall ------------------------------------------------------------------

STUB = """#!/bin/sh
echo "$*" >> "{log}"
case "$*" in
  *show*) printf 'ActiveState=active\\nSubState=running\\nUnitFileState=enabled\\nMainPID=0\\nNRestarts=0\\n' ;;
esac
exit 0
"""


@pytest.fixture
def systemctl(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """PATH with a `systemctl` that records its arguments, and the file it records into."""
    if PID1_IS_SYSTEMD:
        pytest.skip("systemd runs here: this test would enable a real unit (try it by hand: docs/packaging.md)")
    # PID 1 is not systemd in this container: the real systemctl fails with "System has not
    # been booted with systemd", so the calls are recorded instead of made.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    stub = bin_dir / "systemctl"
    stub.write_text(STUB.format(log=log), encoding="utf-8")
    stub.chmod(0o755)
    yield {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, log


def calls(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def test_install_then_uninstall_a_user_service(
    tmp_path: Path, systemctl: tuple[dict[str, str], Path], private_data_dir: Path
) -> None:
    """install writes the unit (0644, this user's data folder), reloads systemd, enables it
    and (re)starts it; uninstall stops, disables and removes it, and reloads."""
    env, log = systemctl
    project = write_demo_project(tmp_path, free_port())
    units = tmp_path / "units"
    installed = hmi("service", "install", "--user", "--project", str(project), "--unit-dir", str(units), env=env)
    assert installed.returncode == 0, installed.stderr
    unit = units / "hmi-runtime.service"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    sections = service.read_unit(unit.read_text(encoding="utf-8"))
    assert service.unit_environment(sections)["HMI_DATA_DIR"] == str(private_data_dir)
    assert settings_of(unit.read_text())["WantedBy"] == "default.target" and "User" not in settings_of(unit.read_text())
    assert calls(log) == [
        "--user daemon-reload",
        "--user enable hmi-runtime.service",
        "--user restart hmi-runtime.service",
    ]
    if SYSTEMD_ANALYZE is not None:
        assert verify(unit).returncode == 0, verify(unit).stderr
    removed = hmi("service", "uninstall", "--user", "--unit-dir", str(units), env=env)
    assert removed.returncode == 0, removed.stderr
    assert not unit.exists()
    assert calls(log)[3:] == ["--user disable --now hmi-runtime.service", "--user daemon-reload"]


def test_uninstall_leaves_a_unit_it_did_not_write(tmp_path: Path, systemctl: tuple[dict[str, str], Path]) -> None:
    """A unit of the same name written by someone else is neither stopped nor removed."""
    env, log = systemctl
    unit = tmp_path / "hmi-runtime.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n", encoding="utf-8")
    result = hmi("service", "uninstall", "--user", "--unit-dir", str(tmp_path), env=env)
    assert result.returncode == 2 and "not written by `hmi service install`" in result.stderr
    assert unit.exists() and calls(log) == []


def test_the_units_command_records_with_no_window_logs_to_the_journal_and_status_finds_it(
    tmp_path: Path, systemctl: tuple[dict[str, str], Path], private_data_dir: Path, plant_server
) -> None:  # type: ignore[no-untyped-def]
    """The installed unit's ExecStart, run as systemd runs it (its environment, working
    folder, stderr on the journal), records the plant into the historian with no window
    attached, writes no log file of its own, `hmi service status` finds it answering,
    and SIGTERM (systemctl stop) ends it cleanly."""
    env, _ = systemctl
    project = write_demo_project(tmp_path, plant_server.port, stream_port=free_port(), request_port=free_port())
    units = tmp_path / "units"
    assert (
        hmi("service", "install", "--user", "--project", str(project), "--unit-dir", str(units), env=env).returncode
        == 0
    )
    sections = service.read_unit((units / "hmi-runtime.service").read_text(encoding="utf-8"))
    journal = tmp_path / "journal.txt"
    with journal.open("wb") as out:
        info = os.fstat(out.fileno())
        runtime = subprocess.Popen(
            service.unit_argv(sections),
            cwd=dict(sections["Service"])["WorkingDirectory"],
            env={**os.environ, **service.unit_environment(sections), "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"},
            stdout=out,
            stderr=out,
        )
    try:
        wait_until(lambda: find_running(project), 30.0, interval=0.2, message="the service's runtime never answered")
        db = private_data_dir / "demo.sqlite"

        def recorded() -> int:
            if not db.exists():
                return 0
            with HistorianReader(db) as reader:
                try:
                    return reader.count("cnc01.vibration_spindle", 0, 2**62)
                except KeyError:
                    return 0

        wait_until(lambda: recorded() >= 20, 30.0, interval=0.5, message="nothing recorded without a window")
        status = hmi("service", "status", "--user", "--unit-dir", str(units), env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert (
            "systemd: active (running)" in status.stdout and f"runtime: answering, pid {runtime.pid}" in status.stdout
        )
        assert "plant: connected" in status.stdout
    finally:
        runtime.send_signal(signal.SIGTERM)
        code = runtime.wait(30)
    assert code == 0
    assert not (private_data_dir / "logs" / "runtime.log").exists(), "the journal has it already"
    assert "INFO" in journal.read_text(encoding="utf-8")
    stopped = hmi("service", "status", "--user", "--unit-dir", str(units), env=env)
    assert stopped.returncode == 1 and "runtime: not answering" in stopped.stdout


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to give a folder away")
def test_status_as_root_leaves_the_service_users_keys_alone(
    tmp_path: Path, systemctl: tuple[dict[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root asking for the status of a CURVE runtime whose data folder is another user's
    makes no key there (the service's user would refuse a root-owned one) and says whom
    to ask instead."""
    env, _ = systemctl
    project = write_demo_project(tmp_path, free_port())
    data = tmp_path / "var-lib-hmi"
    data.mkdir(mode=0o700)
    monkeypatch.setenv("HMI_DATA_DIR", str(data))
    write_run_file(project, "tcp://127.0.0.2:1", "tcp://127.0.0.2:2", b"x" * 40)  # this live process
    os.chown(data, 65534, 65534)
    units = tmp_path / "units"
    units.mkdir()
    argv = [sys.executable, "-m", "hmi", "run", "--headless", "--project", str(project)]
    plan = service.UnitPlan(argv, tmp_path, user_level=True, data_dir=data)
    (units / "hmi-runtime.service").write_text(service.unit_text(plan), encoding="utf-8")
    result = hmi("service", "status", "--user", "--unit-dir", str(units), env=env)
    assert result.returncode == 1
    assert f"pid {os.getpid()} runs" in result.stdout and "as the service's user" in result.stdout
    assert not (data / "curve").exists()


def test_a_log_file_is_kept_when_stderr_is_not_the_journal(tmp_path: Path, private_data_dir: Path) -> None:
    """JOURNAL_STREAM inherited by a process whose stderr goes elsewhere (a child redirected
    to a file) does not silence its log file; on the journal's own stream it does."""
    code = "from hmi.logfile import add_log_file; print(add_log_file('runtime'))"
    journal, other = tmp_path / "journal", tmp_path / "other"
    journal.touch()
    info = journal.stat()
    env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
    for target, expected in ((journal, "None"), (other, str(private_data_dir / "logs" / "runtime.log"))):
        with target.open("ab") as err:
            out = subprocess.run([sys.executable, "-c", code], env=env, stderr=err, stdout=subprocess.PIPE, text=True)
        assert out.stdout.strip() == expected


# -- refusals ------------------------------------------------------------------------------------


def test_install_names_a_missing_project_file(tmp_path: Path) -> None:
    """A project file that does not exist: exit 2, naming the file; nothing written."""
    missing = tmp_path / "nowhere" / "plant.toml"
    result = hmi("service", "install", "--user", "--project", str(missing), "--unit-dir", str(tmp_path / "u"))
    assert result.returncode == 2 and f"the project file {missing} does not exist" in result.stderr
    assert not (tmp_path / "u").exists()


def test_a_system_service_needs_root(tmp_path: Path) -> None:
    """Not root: a system service is refused with what to do instead (sudo, or --user)."""
    project = write_demo_project(tmp_path, free_port())
    argv = [sys.executable, "-m", "hmi", "service", "install", "--project", str(project)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot run the command as another user")
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "needs root" in result.stderr and "--user" in result.stderr


def test_a_system_service_needs_an_existing_account(tmp_path: Path) -> None:
    """The account to run as must exist; the refusal says how to make the dedicated one."""
    project = write_demo_project(tmp_path, free_port())
    result = hmi("service", "install", "--project", str(project), "--user-name", "no-such-hmi-user", "--dry-run")
    assert result.returncode == 2 and "useradd --system" in result.stderr


def test_a_stations_project_gets_no_runtime_service(tmp_path: Path) -> None:
    """A project naming a remote runtime is a station's: installing a runtime for it is refused."""
    project = write_demo_project(tmp_path, free_port())
    with project.open("a", encoding="utf-8") as f:
        f.write('\n[runtime]\nremote = "tcp://127.0.0.2"\ncurve = true\nserver_key = "' + "x" * 40 + '"\n')
    result = hmi("service", "install", "--user", "--project", str(project), "--dry-run")
    assert result.returncode == 2 and "a station runs no runtime" in result.stderr


# -- a station's `hmi run` -----------------------------------------------------------------------

REMOTE = "127.0.0.2"  # "the server", as in tests/ipc/test_curve.py


def test_a_stations_hmi_run_starts_only_a_window_on_the_remote_runtime(
    tmp_path: Path, private_data_dir: Path, plant_server
) -> None:  # type: ignore[no-untyped-def]
    """With [runtime] remote, `hmi run` starts one child, the window, which attaches over
    CURVE (the station enrolled by its key) and shows live values; no plant, no runtime."""
    stream_port, request_port = free_port(), free_port()
    server_dir, station_dir, station_data = tmp_path / "server", tmp_path / "station", tmp_path / "station-data"
    for d in (server_dir, station_dir):
        d.mkdir()
    station_data.mkdir(mode=0o700)
    (station_data / "curve").mkdir(mode=0o700)
    station_keys = key_pair("station", station_data / "curve")  # what `hmi station key` makes there
    StationList(private_data_dir / "stations.json").add("ws1", station_keys.public, "ada@site", "site", "console 1")
    ports = f"stream_port = {stream_port}\nrequest_port = {request_port}\n"
    server_project = write_demo_project(server_dir, plant_server.port)
    with server_project.open("a", encoding="utf-8") as f:
        f.write(f'\n[runtime]\nipc_host = "{REMOTE}"\ncurve = true\n{ports}')
    runtime = hmi_process("run", "--headless", "--project", str(server_project))
    station: subprocess.Popen[str] | None = None
    lines: list[str] = []
    try:
        running = wait_until(lambda: find_running(server_project), 30.0, interval=0.2, message="no runtime")
        station_project = write_demo_project(station_dir, free_port())
        with station_project.open("a", encoding="utf-8") as f:
            f.write(
                f'\n[runtime]\nremote = "tcp://{REMOTE}"\ncurve = true\nserver_key = "{running.server_key}"\n{ports}'
            )
        station = hmi_process(
            "run",
            "--project",
            str(station_project),
            env={"HMI_DATA_DIR": str(station_data), "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "xcb")},
        )
        assert station.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(station.stdout), daemon=True)  # type: ignore[arg-type,union-attr]
        reader.start()
        parent = psutil.Process(station.pid)
        # The window is started last: once it runs, whatever else `hmi run` starts runs too.
        wait_until(lambda: "window" in children_by_role(parent), 20.0, message="the station started no window")
        assert set(children_by_role(parent)) == {"window"}, [c.cmdline() for c in parent.children()]
        assert len(parent.children()) == 1
        wait_until(lambda: any("first live frame" in line for line in lines), 90.0, message="no live frame")
        station.terminate()
        assert station.wait(30) == 0, "".join(lines)
    finally:
        if station is not None:
            stop_process(station, timeout=15)
        stop_process(runtime, timeout=15)
