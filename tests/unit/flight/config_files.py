"""Configuration files for the tests of the payload's configuration sections: write one, and the
one-sentence message a wrong one is refused with."""

from __future__ import annotations

from pathlib import Path

import pytest

from flight.config import ConfigError, load_config


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def config_error(path: Path | list[Path]) -> str:
    """The message of the ConfigError that loading `path` raises, checked to be one sentence."""
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message
    assert "\n" not in message
    assert "Traceback" not in message
    return message
