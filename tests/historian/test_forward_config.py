"""[historian.forward] in the project file: what it accepts and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmi.config.loader import ConfigError, load_project
from hmi.config.models import ForwardConfig


def write(tmp_path: Path, forward: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(f'[project]\nname = "x"\n\n[historian.forward]\n{forward}\n', encoding="utf-8")
    return path


def test_a_password_in_the_url_is_refused_naming_the_key_and_not_repeating_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_project(write(tmp_path, 'url = "postgresql://ws1:s3cret@db.plant/hist"'))
    message = str(exc.value)
    assert "historian.forward.url" in message and "password_ref" in message
    assert "s3cret" not in message


def test_defaults_forward_everything_verified_towards_another_machine(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, 'url = "postgresql://ws1@db.plant/hist"\npassword_ref = "central"'))
    forward = project.historian.forward
    assert forward is not None
    assert forward.samples and forward.events and forward.audit and forward.tags
    assert forward.effective_sslmode == "verify-full"
    assert forward.station  # the host name
    assert ForwardConfig(url="postgresql://ws1@127.0.0.1/hist").effective_sslmode == "prefer"


@pytest.mark.parametrize(
    "forward",
    [
        'url = "mysql://ws1@db/hist"',
        'url = "postgresql://ws1@db/hist"\nbatch_rows = "5000"',
        'url = "postgresql://ws1@db/hist"\ntags = false',
        'url = "postgresql://ws1@db/hist"\nsslmode = "maybe"',
    ],
)
def test_wrong_values_are_refused(tmp_path: Path, forward: str) -> None:
    with pytest.raises(ConfigError):
        load_project(write(tmp_path, forward))
