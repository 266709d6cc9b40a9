"""Shared test helpers: free ports, project files, child processes, async runners."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
DEMO_PROJECT = REPO / "config" / "demo.toml"
SHARED_TESTDATA = REPO.parent / "shared" / "testdata"
ARTIFACTS = REPO / "artifacts"

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, message: str = "") -> Any:
    """Poll until `predicate()` is truthy; return its value or fail with `message`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"condition not met within {timeout} s")
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], Any], timeout: float = 10.0, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


def demo_project_text(opcua_port: int, stream_port: int | None = None, request_port: int | None = None) -> str:
    """The demo project with its plant on `opcua_port` (and runtime ports when given)."""
    text = DEMO_PROJECT.read_text(encoding="utf-8").replace("48400", str(opcua_port))
    if stream_port is not None and request_port is not None:
        text += f"\n[runtime]\nstream_port = {stream_port}\nrequest_port = {request_port}\n"
    return text


def write_demo_project(directory: Path, opcua_port: int, **ports: int) -> Path:
    path = directory / "project.toml"
    path.write_text(demo_project_text(opcua_port, **ports), encoding="utf-8")
    return path


def hmi_process(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start `python -m hmi ARGS` with its output captured as text."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.update(kwargs.pop("env", {}))
    return subprocess.Popen(
        [sys.executable, "-m", "hmi", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> str:
    """Terminate politely, kill if needed; return what it printed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = proc.stdout.read() if proc.stdout else ""
    return out or ""


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    def is_open() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex((host, port)) == 0

    wait_until(is_open, timeout, interval=0.05, message=f"nothing listens on {host}:{port} after {timeout} s")
