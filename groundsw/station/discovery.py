"""Finding a running station: its discovery file in the data directory, and the payload a
command means. Apart from the server so that every ground command, which asks this first, does
not load the web framework (a third of a second at each start)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DISCOVERY_FILE = "station.json"


@dataclass(frozen=True)
class StationInfo:
    """A running station as its discovery file says: its process, address and payloads."""

    pid: int
    base_url: str
    unix_socket: Path | None
    payloads: dict[str, str]

    def payload_for(self, port: str | None, name: str | None) -> str | None:
        """The payload a command means: the one named, else the one on `port`, else the only
        one when neither is given; None when the station has no such payload."""
        if name is not None:
            return name if name in self.payloads else None
        if port is not None:
            wanted = _same_port(port)
            return next((n for n, p in self.payloads.items() if _same_port(p) == wanted), None)
        return next(iter(self.payloads)) if len(self.payloads) == 1 else None


def _same_port(port: str) -> str:
    # A device by any of its names (a symbolic link, a relative path); a URL as written.
    return os.path.realpath(port) if "://" not in port else port


def find_station(data_dir: Path) -> StationInfo | None:
    """The station serving `data_dir`, if its process is alive."""
    try:
        raw = json.loads((data_dir / DISCOVERY_FILE).read_text())
        info = StationInfo(
            int(raw["pid"]),
            str(raw["base_url"]),
            Path(raw["unix_socket"]) if raw.get("unix_socket") else None,
            {str(k): str(v) for k, v in dict(raw["payloads"]).items()},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return info
