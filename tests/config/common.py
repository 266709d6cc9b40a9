"""Helpers for project-file tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmi.config import ConfigError, load_project


def write_project(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "project.toml"
    path.write_text(text, encoding="utf-8")
    return path


def errors(tmp_path: Path, text: str) -> list[str]:
    """The loader's complaints about `text` as a project file, without the file name."""
    path = write_project(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_project(path)
    return [str(issue).removeprefix(f"{path}: ") for issue in info.value.issues]
