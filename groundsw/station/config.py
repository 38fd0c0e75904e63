"""The ground station's configuration: where it listens, where its data lives, and the links it
owns (one per payload), from a TOML file or from the command line's options.

    [station]
    listen = "unix:/srv/groundsw/station.sock"   # default: station.sock in the data directory,
                                                 # owner only; "127.0.0.1:8765": any local user
    data_dir = "/srv/groundsw"         # default: $GROUNDSW_DATA, else the user's data directory

    [[payload]]
    name = "fm1"
    port = "/dev/ttyUSB0"              # a device or a pyserial URL
    baud = 115200
    keys = "/home/ops/keys/fm1.toml"   # uplink key file (docs/security.md); none: unauthenticated
    spi = 1                            # default: the key file's first SA
    scid = 500                         # default: the ICD's
    tm_coding = "rs"                   # "none" for a payload on an ICD v1 link
    dictionary = "/opt/fm1/dictionary" # default: the shipped one

    [payload.passes]                   # what the station does pass by pass (all optional)
    link_timeout_s = 3.0               # no frame for this long: the link (the pass) is down
    fetch_results = false              # true: at each pass, download the results of the jobs
    fetch_parallel = 4                 #   finished since (into results/), so many at a time
    request_timeout_s = 10.0           #   seconds for each request's answer
    gap_step_s = 0.5                   # gap recovery: how often it looks,
    gap_settle_s = 2.0                 #   VC 1 quiet this long before a gap found is kept,
    gap_max_settle_s = 30.0            #   and kept after this long regardless
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from groundsw.station.gap_recovery import MAX_SETTLE_S, SETTLE_S, STEP_S
from groundsw.station.owned_link import LINK_UP_S
from spacelink.icd import DEFAULT_BAUD, SPACECRAFT_ID, TmCoding

# By default the station listens on a Unix socket that only its user can open: whoever reaches
# the API commands the payload with the station's uplink key.
SOCKET_FILE = "station.sock"
DATA_ENV = "GROUNDSW_DATA"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


class StationConfigError(Exception):
    """The configuration cannot be used; one sentence."""


@dataclass(frozen=True)
class PassSettings:
    """What the station does pass by pass (`[payload.passes]`). The defaults suit passes of
    minutes at 115200 baud; a bench that compresses its orbit into passes of seconds wants a
    faster payload idle frame, a shorter link timeout and shorter gap recovery waits (docs/
    ground_station.md, Pass operations)."""

    link_timeout_s: float = LINK_UP_S
    fetch_results: bool = False
    fetch_parallel: int = 4
    request_timeout_s: float = 10.0
    gap_step_s: float = STEP_S
    gap_settle_s: float = SETTLE_S
    gap_max_settle_s: float = MAX_SETTLE_S

    def __post_init__(self) -> None:
        for name in (
            "link_timeout_s",
            "request_timeout_s",
            "gap_step_s",
            "gap_settle_s",
            "gap_max_settle_s",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise StationConfigError(f"passes: {name} must be a number above 0")
        if not isinstance(self.fetch_results, bool):
            raise StationConfigError("passes: fetch_results must be true or false")
        parallel = self.fetch_parallel
        if isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= 16:
            raise StationConfigError("passes: fetch_parallel must be an integer from 1 to 16")


@dataclass(frozen=True)
class PayloadConfig:
    """One payload's link."""

    name: str
    port: str
    baud: int = DEFAULT_BAUD
    keys: Path | None = None
    spi: int | None = None
    scid: int = SPACECRAFT_ID
    dictionary: Path | None = None
    tm_coding: TmCoding = TmCoding.RS
    passes: PassSettings = field(default_factory=PassSettings)


@dataclass(frozen=True)
class StationConfig:
    """Where the station listens, where its data lives, and its payloads (at least one)."""

    payloads: tuple[PayloadConfig, ...]
    listen: str | None = None
    data_dir: Path = field(default_factory=lambda: default_data_dir())

    @property
    def address(self) -> tuple[str, int] | Path:
        """Where it listens: (host, port), or a Unix socket's path (by default, in the data
        directory)."""
        return parse_listen(self.listen) if self.listen else self.data_dir / SOCKET_FILE

    @property
    def listen_text(self) -> str:
        address = self.address
        return f"unix:{address}" if isinstance(address, Path) else f"{address[0]}:{address[1]}"

    def payload(self, name: str | None) -> PayloadConfig:
        """The payload named `name`, or the only one when None; StationConfigError if none."""
        if name is None:
            if len(self.payloads) == 1:
                return self.payloads[0]
            names = ", ".join(p.name for p in self.payloads)
            raise StationConfigError(f"this station has several payloads: name one ({names})")
        for payload in self.payloads:
            if payload.name == name:
                return payload
        names = ", ".join(p.name for p in self.payloads)
        raise StationConfigError(f"no payload named {name!r} (the station has {names})")


def default_data_dir() -> Path:
    """$GROUNDSW_DATA, else the platform's user data directory ($XDG_DATA_HOME/groundsw)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "groundsw"


def payload_data_dir(data_dir: Path, payload: str) -> Path:
    """Where one payload's archive lives under the station's data directory."""
    return data_dir / payload


def check_name(name: str) -> str:
    """`name` when it can name a payload (a directory and a URL path element)."""
    if not _NAME.fullmatch(name):
        raise StationConfigError(
            f"payload name {name!r}: 1 to 32 letters, digits, '_', '.' or '-', not starting with "
            "a punctuation mark"
        )
    return name


def parse_listen(text: str) -> tuple[str, int] | Path:
    """(host, port) of a TCP address, or the path of a Unix socket ("unix:PATH")."""
    if text.startswith("unix:"):
        path = text.removeprefix("unix:")
        if not path:
            raise StationConfigError("listen: 'unix:' needs a socket path")
        return Path(path)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise StationConfigError(
            f"listen {text!r}: expected HOST:PORT (127.0.0.1:8765) or unix:PATH"
        )
    return host or "127.0.0.1", int(port)


def load_station_config(path: Path) -> StationConfig:
    """The configuration in the TOML file at `path`; StationConfigError on anything wrong."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise StationConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise StationConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(raw) - {"station", "payload"}
    if unknown:
        raise StationConfigError(f"{path}: unknown table {sorted(unknown)[0]!r}")
    station = _table(raw.get("station", {}), f"{path}: [station]", {"listen", "data_dir"})
    tables = raw.get("payload", [])
    if not isinstance(tables, list) or not tables:
        raise StationConfigError(f"{path} defines no payload ([[payload]] with name and port)")
    payloads = tuple(
        _payload(t, f"{path}: payload {n}", path.parent) for n, t in enumerate(tables, 1)
    )
    names = [p.name for p in payloads]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise StationConfigError(f"{path}: payload {twice[0]!r} is defined twice")
    listen = station.get("listen")
    if listen is not None:
        listen = str(listen)
        parse_listen(listen)
    data_dir = station.get("data_dir")
    return StationConfig(
        payloads,
        listen,
        _path(data_dir, path.parent) if data_dir is not None else default_data_dir(),
    )


def _table(value: object, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StationConfigError(f"{where}: expected a table")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise StationConfigError(f"{where}: unknown key {unknown[0]!r}")
    return value


def _path(value: object, base: Path) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def _payload(value: object, where: str, base: Path) -> PayloadConfig:
    keys = {"name", "port", "baud", "keys", "spi", "scid", "dictionary", "tm_coding", "passes"}
    table = _table(value, where, keys)
    missing = [k for k in ("name", "port") if k not in table]
    if missing:
        raise StationConfigError(f"{where}: missing {', '.join(missing)}")
    for key in ("baud", "spi", "scid"):
        if key in table and (not isinstance(table[key], int) or isinstance(table[key], bool)):
            raise StationConfigError(f"{where}: {key} must be an integer")
    if table.get("baud", 1) <= 0:
        raise StationConfigError(f"{where}: baud must be above 0")
    codings = [c.value for c in TmCoding]
    if table.get("tm_coding", TmCoding.RS.value) not in codings:
        raise StationConfigError(
            f"{where}: tm_coding = {table['tm_coding']!r}: expected "
            + " or ".join(repr(c) for c in codings)
        )
    return PayloadConfig(
        name=check_name(str(table["name"])),
        port=str(table["port"]),
        baud=table.get("baud", DEFAULT_BAUD),
        keys=_path(table["keys"], base) if "keys" in table else None,
        spi=table.get("spi"),
        scid=table.get("scid", SPACECRAFT_ID),
        dictionary=_path(table["dictionary"], base) if "dictionary" in table else None,
        tm_coding=TmCoding(table.get("tm_coding", TmCoding.RS.value)),
        passes=_passes(table.get("passes", {}), f"{where}: passes"),
    )


def _passes(value: object, where: str) -> PassSettings:
    keys = {f.name for f in fields(PassSettings)}
    table = _table(value, where, keys)
    try:
        return PassSettings(**table)
    except StationConfigError as exc:
        raise StationConfigError(f"{where.removesuffix(': passes')}: {exc}") from None
