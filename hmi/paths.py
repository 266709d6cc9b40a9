"""Where things live: the installation's resources and the user's data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "hmi"


def install_root() -> Path:
    """The folder holding config/, resources/ and models_glb/ (the bundle or the checkout)."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle)
    return Path(__file__).resolve().parent.parent


def default_project() -> Path:
    return install_root() / "config" / "demo.toml"


def data_dir() -> Path:
    """The user's data folder (historian, certificates, logs); HMI_DATA_DIR overrides it."""
    override = os.environ.get("HMI_DATA_DIR")
    if override:
        path = Path(override)
    elif sys.platform == "win32":
        path = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / APP_NAME
    elif sys.platform == "darwin":
        path = Path.home() / "Library" / "Application Support" / APP_NAME
    else:
        path = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / APP_NAME
    path.mkdir(parents=True, exist_ok=True)
    return path


def hmi_command(*args: str) -> list[str]:
    """The command line that runs `hmi <args>` in a child process, frozen or not."""
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "hmi", *args]


def expand_data_url(url: str) -> str:
    """`{data}` in a configured database URL is the user's data folder."""
    return url.replace("{data}", data_dir().as_posix()) if "{data}" in url else url
