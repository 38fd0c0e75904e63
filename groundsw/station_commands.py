"""`groundsw serve`, `groundsw status` and `groundsw queue`: running the ground station, and
asking it how its links are and what waits for them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from groundsw.station.config import (
    PassSettings,
    PayloadConfig,
    StationConfig,
    StationConfigError,
    check_name,
    load_station_config,
    parse_listen,
)
from groundsw.station.discovery import StationInfo
from groundsw.station.station import StationError
from spacelink.icd import TmCoding

Print = Callable[[str], None]
DEFAULT_PAYLOAD = "payload"
HTTP_TIMEOUT_S = 10.0


class StationRequestError(Exception):
    """The station refused or could not answer a request; one sentence."""


def add_station_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the ground station: own the links, archive everything, serve clients",
        description="Own each payload's link (from --config, or the one of --port, --baud, "
        "--keys and --spi), keep COP-1 running, archive every packet and command, and serve "
        "groundsw and scripts over HTTP + WebSocket until SIGINT or SIGTERM. Other groundsw "
        "commands on the same data directory find it and become its clients.",
    )
    serve.add_argument("--config", type=Path, help="station configuration (TOML)")
    serve.add_argument(
        "--listen",
        help="unix:PATH or HOST:PORT (default: the config's, else unix:DATA_DIR/station.sock, "
        "which only this user can open; on a TCP port any local user commands the payload)",
    )
    serve.add_argument(
        "--name", default=DEFAULT_PAYLOAD, help="name of the payload of --port (default: payload)"
    )
    serve.add_argument(
        "--fetch-results",
        action="store_true",
        help="at each pass, download the results of the jobs finished since into the data "
        "directory (groundsw results); with --config: its [payload.passes] fetch_results",
    )
    sub.add_parser("status", help="per payload: link state, mode, last frame, jobs")
    queue = sub.add_parser("queue", help="commands waiting for the link (the ground station's)")
    queue.add_argument("--cancel", metavar="REQUEST", help="cancel one (APID:SEQ, as listed)")


def station_config(args: argparse.Namespace) -> StationConfig:
    """What `serve` runs: the --config file, or one payload from the global options."""
    if args.config is not None:
        if args.fetch_results:
            raise StationConfigError(
                "--fetch-results cannot go with --config: set fetch_results = true in its "
                "[payload.passes]"
            )
        config = load_station_config(args.config)
        if args.listen:
            parse_listen(args.listen)
            config = StationConfig(config.payloads, args.listen, config.data_dir)
        return config
    if not args.port:
        raise StationConfigError(
            "nothing to serve: give --port PORT (or set GROUNDSW_PORT) or --config FILE"
        )
    payload = PayloadConfig(
        name=check_name(args.name),
        port=args.port,
        baud=args.baud,
        keys=args.keys,
        spi=args.spi,
        dictionary=args.dictionary,
        tm_coding=TmCoding(args.tm_coding),
        passes=PassSettings(fetch_results=args.fetch_results),
    )
    if args.listen:
        parse_listen(args.listen)
    return StationConfig((payload,), args.listen, args.data_dir)


def run_serve(args: argparse.Namespace, out: Print) -> int:
    try:
        from groundsw.station.server import run_station  # the web framework: only here

        return run_station(station_config(args), out)
    except (StationConfigError, StationError) as exc:
        raise StationRequestError(str(exc)) from None


def station_get(station: StationInfo, path: str) -> Any:
    """GET a station resource (JSON); StationRequestError with the station's word on failure."""
    return _request(station, "GET", path)


def _request(station: StationInfo, method: str, path: str) -> Any:
    transport = httpx.HTTPTransport(uds=str(station.unix_socket)) if station.unix_socket else None
    try:
        with httpx.Client(
            base_url=station.base_url, transport=transport, timeout=HTTP_TIMEOUT_S
        ) as http:
            response = http.request(method, f"/api/v1{path}")
    except httpx.HTTPError as exc:
        raise StationRequestError(f"the ground station did not answer: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise StationRequestError(f"the ground station says: {detail}")
    return response.json() if response.content else None


def run_status(station: StationInfo, out: Print, payload: str | None = None) -> int:
    """The fleet summary, a line per payload (or that of `payload`)."""
    summaries = (
        station_get(station, "/payloads")
        if payload is None
        else [station_get(station, f"/payloads/{payload}")]
    )
    for summary in summaries:
        out(summary_line(summary))
    return 0


def summary_line(summary: dict[str, Any]) -> str:
    link = summary["link"]
    age = link.get("last_frame_age")
    seen = "no frame yet" if age is None else f"last frame {age:.1f} s ago"
    state = "UP" if link["up"] else "DOWN"
    mode = summary.get("mode") or "?"
    queued, running = summary.get("jobs_queued"), summary.get("jobs_running")
    jobs = "jobs ?" if queued is None else f"jobs {queued} queued, {running} running"
    extra = f"; {link['queued']} commands waiting" if link.get("queued") else ""
    alert = f"; {link['alert']}" if link.get("alert") and not link["up"] else ""
    return (
        f"{summary['name']:<12} {state:<4} {link['port']}  COP-1 {link['cop1']}, {seen}; "
        f"mode {mode}; {jobs}; {link['frames']} frames, {link['frame_errors']} bad, "
        f"{link['frames_lost']} lost{coding(link)}{extra}{alert}"
    )


def coding(link: dict[str, Any]) -> str:
    """The TM coding's part of a status line: what Reed-Solomon corrected, or nothing."""
    if link.get("tm_coding") != "rs":
        return ", no TM coding"
    return (
        f", RS {link['rs_corrected_symbols']} symbols corrected, "
        f"{link['rs_uncorrectable']} uncorrectable"
    )


def run_queue(station: StationInfo, payload: str, cancel: str | None, out: Print) -> int:
    if cancel is not None:
        _request(station, "DELETE", f"/payloads/{payload}/queue/{cancel}")
        out(f"cancelled {cancel}")
        return 0
    items = station_get(station, f"/payloads/{payload}/queue")
    if not items:
        out(f"no command waiting for {payload}'s link")
    for item in items:
        out(f"{item['request']:<12} {item['command']:<24} queued by {item['client']}")
    return 0


class StationRefusals:
    """What the station's link says the payload refused of its frames: the explanation of a
    silence, asked only when one needs explaining."""

    def __init__(self, station: StationInfo, payload: str) -> None:
        self.station = station
        self.payload = payload

    def explain(self) -> str | None:
        try:
            said = station_get(self.station, f"/payloads/{self.payload}")["link"]["refusals"]
        except StationRequestError:
            return None
        return str(said) if said else None


def resolve_payload(
    station: StationInfo | None, port: str | None, payload: str | None
) -> tuple[StationInfo | None, str]:
    """The running station a command talks to (None: it owns the link itself) and the payload's
    name (for its archive). StationRequestError when the station has several payloads and the
    command names none."""
    if station is not None:
        name = station.payload_for(port, payload)
        if name is not None:
            return station, name
        if port is None and payload is None:
            names = ", ".join(station.payloads)
            raise StationRequestError(
                f"the ground station has several payloads ({names}): name one with --payload"
            )
    return None, payload or DEFAULT_PAYLOAD
