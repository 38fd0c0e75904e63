"""The station's configuration: a TOML file or the command line, every mistake one sentence."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from groundsw.station.config import (
    PayloadConfig,
    StationConfigError,
    default_data_dir,
    load_station_config,
    parse_listen,
)
from groundsw.station_commands import station_config
from spacelink.icd import TmCoding


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(text)
    return path


def test_a_full_configuration_is_read(tmp_path: Path) -> None:
    config = load_station_config(
        write(
            tmp_path,
            """
[station]
listen = "unix:/run/gs.sock"
data_dir = "data"

[[payload]]
name = "fm1"
port = "/dev/ttyUSB0"
baud = 921600
keys = "keys/fm1.toml"
spi = 2

[[payload]]
name = "fm2"
port = "socket://127.0.0.1:7000"
tm_coding = "none"
""",
        )
    )
    assert config.listen == "unix:/run/gs.sock" and config.data_dir == tmp_path / "data"
    assert config.payloads[0] == PayloadConfig(
        "fm1", "/dev/ttyUSB0", 921600, tmp_path / "keys/fm1.toml", 2
    )
    assert config.payload("fm2").port == "socket://127.0.0.1:7000"
    assert [p.tm_coding for p in config.payloads] == [TmCoding.RS, TmCoding.NONE]
    with pytest.raises(StationConfigError, match="several payloads"):
        config.payload(None)
    with pytest.raises(StationConfigError, match="no payload named 'fm3'"):
        config.payload("fm3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[station]\n", "defines no payload"),
        ('[[payload]]\nname = "a"\n', "missing port"),
        ('[[payload]]\nname = "a"\nport = "p"\ncolour = 1\n', "unknown key 'colour'"),
        ('[[payload]]\nname = "a b"\nport = "p"\n', "payload name 'a b'"),
        ('[[payload]]\nname = "a"\nport = "p"\nbaud = "fast"\n', "baud must be an integer"),
        ('[[payload]]\nname = "a"\nport = "p"\n[[payload]]\nname = "a"\nport = "q"\n', "twice"),
        ('[station]\nlisten = "8765"\n[[payload]]\nname = "a"\nport = "p"\n', "HOST:PORT"),
        ("[[payload]\n", "not valid TOML"),
        ('[[payload]]\nname = "a"\nport = "p"\ntm_coding = "ldpc"\n', "expected 'rs' or 'none'"),
        ('[stations]\n[[payload]]\nname = "a"\nport = "p"\n', "unknown table 'stations'"),
    ],
)
def test_each_mistake_is_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(StationConfigError) as refused:
        load_station_config(write(tmp_path, text))
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    assert parse_listen("unix:/tmp/s.sock") == Path("/tmp/s.sock")
    for bad in ("unix:", "host:port", "host:70000", "8765"):
        with pytest.raises(StationConfigError):
            parse_listen(bad)


def test_the_data_directory_defaults_to_the_users(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GROUNDSW_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "groundsw"
    monkeypatch.setenv("GROUNDSW_DATA", str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine"


def test_serve_without_a_file_serves_the_port_of_the_options(tmp_path: Path) -> None:
    args = argparse.Namespace(
        config=None, listen=None, port="/dev/pts/9", baud=9600, keys=None, spi=None,
        dictionary=None, name="fm1", data_dir=tmp_path, tm_coding="none", fetch_results=False,
    )  # fmt: skip
    config = station_config(args)
    assert config.payloads == (PayloadConfig("fm1", "/dev/pts/9", 9600, tm_coding=TmCoding.NONE),)
    assert config.data_dir == tmp_path and config.address == tmp_path / "station.sock"
    assert config.listen_text == f"unix:{tmp_path / 'station.sock'}"
    args.port = None
    with pytest.raises(StationConfigError, match="nothing to serve"):
        station_config(args)
