"""The ground of a simulated day: `groundsw serve` on the bench's ground port, set for the short
passes of a compressed orbit, and an HTTP client of its API for the harness (uploads, commands,
the passes it lived, the results it fetched, archived telemetry).

Pass settings for a compressed orbit (`compressed_pass_settings`): at 200x a pass is 2 to 4 s
of bench time, so the station calls the link down after a second without a frame (the payload
sends an idle frame every 0.14 s at 921600 baud: hil/orbit_driver.py), gap recovery looks every
0.1 s and keeps a gap once the bulk channel has been quiet 0.3 s (at most 1 s: a 921600-baud
line empties in well under that), requests time out after 5 s (a pass ends with a request out
now and then), and four results are fetched at a time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import IO, Any

import httpx

from groundsw.station.config import PassSettings
from groundsw.station.discovery import DISCOVERY_FILE

PAYLOAD = "fm1"
PREFIX = f"/api/v1/payloads/{PAYLOAD}"
HTTP_TIMEOUT_S = 30.0
POLL_S = 0.05


class DayError(Exception):
    """The simulated day could not be flown as asked; one sentence."""


def compressed_pass_settings() -> PassSettings:
    """The station's pass behaviour for passes of seconds (see the module's docstring)."""
    return PassSettings(
        link_timeout_s=1.0,
        fetch_results=True,
        fetch_parallel=4,
        request_timeout_s=5.0,
        gap_step_s=0.1,
        gap_settle_s=0.3,
        gap_max_settle_s=1.0,
    )


def station_config_text(
    socket: Path, data: Path, port: str, baud: int, keys: Path | None, passes: PassSettings
) -> str:
    """The station's TOML configuration for one payload on the bench."""
    lines = [
        "[station]",
        f'listen = "unix:{socket}"',
        f'data_dir = "{data}"',
        "[[payload]]",
        f'name = "{PAYLOAD}"',
        f'port = "{port}"',
        f"baud = {baud}",
    ]
    if keys is not None:
        lines.append(f'keys = "{keys}"')
    lines.append("[payload.passes]")
    for setting in fields(passes):
        value = getattr(passes, setting.name)
        lines.append(f"{setting.name} = {str(value).lower() if isinstance(value, bool) else value}")
    return "\n".join(lines) + "\n"


class StationProcess:
    """`groundsw serve` for the day, its log in `log_path`."""

    def __init__(self, workdir: Path, config_text: str, data: Path) -> None:
        self.config = workdir / "station.toml"
        self.config.write_text(config_text)
        self.data = data
        self.log_path = workdir / "station.log"
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop
        self.process = subprocess.Popen(
            [sys.executable, "-m", "groundsw", "serve", "--config", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not (self.data / DISCOVERY_FILE).exists():
            if self.process.poll() is not None:
                raise DayError(f"the ground station exited at start; see {self.log_path}")
            if time.monotonic() > deadline:
                raise DayError(f"the ground station did not start within {timeout:g} s")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        status = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(20)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            status = self.process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return status


class StationClient:
    """The harness's end of the station's API for the day's payload."""

    def __init__(self, socket: Path, client: str = "simulated day") -> None:
        self.client = client
        self.http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket)),
            base_url="http://station",
            timeout=HTTP_TIMEOUT_S,
        )

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, **params: Any) -> Any:
        response = self.http.get(PREFIX + path, params=params)
        if response.status_code >= 400:
            raise DayError(f"the station refused GET {path}: {response.text}")
        return response.json()

    def summary(self) -> dict[str, Any]:
        return dict(self._get(""))

    def wait_up(self, timeout: float = 30.0) -> None:
        """Until the link is up and the station knows the payload's dictionary."""
        deadline = time.monotonic() + timeout
        while True:
            summary = self.summary()
            if summary["link"]["up"] and summary["dictionary_hash"] is not None:
                return
            if time.monotonic() > deadline:
                raise DayError(f"the station's link did not come up in {timeout:g} s: {summary}")
            time.sleep(0.1)

    def wait_down(self, timeout: float) -> bool:
        """Until the station calls the link down (True), `timeout` at most (False)."""
        deadline = time.monotonic() + timeout
        while self.summary()["link"]["up"]:
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S)
        return True

    def send(self, command: str, *arguments: str, expires_in: float | None = None) -> str:
        """A dictionary command through the station (queued while the link is down); its
        request ID."""
        body: dict[str, Any] = {"command": command, "arguments": list(arguments)}
        body["client"] = self.client
        if expires_in is not None:
            body["expires_in"] = expires_in
        response = self.http.post(PREFIX + "/commands", json=body)
        if response.status_code >= 400:
            raise DayError(f"the station refused {command}: {response.text}")
        return str(response.json()["request"])

    def status(self, request: str, wait: float = 0.0) -> dict[str, Any]:
        return dict(self._get(f"/commands/{request}", wait=wait))

    def run(self, command: str, *arguments: str, timeout: float = 20.0) -> dict[str, Any]:
        """Send a command and wait for its completion; DayError when it does not complete."""
        request = self.send(command, *arguments)
        status = self.status(request, wait=timeout)
        if status["state"] != "completed":
            raise DayError(f"{command} ended {status['state']}: {status['stages'][-1:]}")
        return status

    def reply(self, request: str, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """The values of the reply `name` to a command sent, once it has come."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(request)
            for reply in status["replies"]:
                if reply["name"] == name:
                    return dict(reply["values"])
            if status["state"] in ("failed", "dropped"):
                raise DayError(f"request {request} {status['state']}: {status['stages'][-1:]}")
            if time.monotonic() > deadline:
                raise DayError(f"no {name} to request {request} within {timeout:g} s")
            time.sleep(POLL_S)

    def upload(self, name: str, data: bytes, timeout: float = 120.0) -> None:
        """Upload `data` to the payload's store as `name`, through the station."""
        response = self.http.put(
            f"{PREFIX}/files/{name}", content=data, params={"client": self.client}
        )
        if response.status_code >= 400:
            raise DayError(f"the station refused the upload of {name}: {response.text}")
        transfer = response.json()
        deadline = time.monotonic() + timeout
        while transfer["state"] == "running":
            if time.monotonic() > deadline:
                raise DayError(f"the upload of {name} did not end within {timeout:g} s")
            time.sleep(POLL_S)
            transfer = self._get(f"/transfers/{transfer['id']}")
        if transfer["state"] != "done":
            raise DayError(f"the upload of {name} failed: {transfer['error']}")

    def contacts(self) -> list[dict[str, Any]]:
        return list(self._get("/contacts"))

    def results(self) -> list[dict[str, Any]]:
        return list(self._get("/results"))

    def result(self, job_id: int) -> bytes:
        """The octets of job `job_id`'s result, as the station fetched them."""
        response = self.http.get(f"{PREFIX}/results/{job_id}/content")
        if response.status_code >= 400:
            raise DayError(f"the station refused job {job_id}'s result: {response.text}")
        return response.content

    def samples(self, parameter: str, since: str = "1d") -> list[dict[str, Any]]:
        return list(self._get(f"/parameters/{parameter}", since=since))

    def events(self, since: str = "1d") -> list[dict[str, Any]]:
        return list(self._get("/events", since=since))
