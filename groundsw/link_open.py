"""A command's end of the link: through the ground station when one serves the payload, else
the link of --port owned for the command's duration; and what a silence on it may mean."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from groundsw.archive import ArchiveStore
from groundsw.link_bringup import InitMode, default_t1
from groundsw.payload_link import PayloadLink
from groundsw.session import LinkSession
from groundsw.station.owned_link import ClientLink, OwnedLink
from groundsw.station.remote import ServiceLink
from groundsw.station_commands import StationRefusals, station_get
from spacelink.cop1 import FopConfig
from spacelink.icd import LinkParameters, TmCoding
from spacelink.serialport import PortError, open_port


def client_name(args: argparse.Namespace) -> str:
    """Who sends, for the command history: user, host, and the groundsw command."""
    command = " ".join(a for a in (args.command, getattr(args, "tm_command", None)) if a)
    return f"{getpass.getuser()}@{socket.gethostname()} groundsw {command} (pid {os.getpid()})"


@contextmanager
def connect(args: argparse.Namespace, archive: ArchiveStore | None = None) -> Iterator[PayloadLink]:
    """This command's end of the link: through the ground station when one owns it (the station
    archives and records), else owned here for the command's duration: open the port, start the
    AD service, archive every packet and record the command history, as the station does."""
    if args.station is not None:
        with _through_station(args) as link:
            yield link
        return
    with own_link(args, archive) as client:
        yield client


@contextmanager
def _through_station(args: argparse.Namespace) -> Iterator[PayloadLink]:
    station, payload = args.station, args.payload_name
    link = ServiceLink(
        station.base_url, payload, client_name(args), station.unix_socket, args.timeout
    )
    try:
        args.refusals = StationRefusals(station, payload)
        summary = station_get(station, f"/payloads/{payload}")
        state = summary["link"]
        # The payload's dictionary as its housekeeping said: checked without a round trip.
        args.known_hash = summary.get("dictionary_hash")
        where = f"{state['port']} through the ground station (payload {payload})"
        if state["up"]:
            print(f"link up on {where}: COP-1 {state['cop1']}, CLCW {state['clcw']}")
        else:
            print(f"link DOWN on {where}: commands wait in its queue until it is back")
        args.through_station = True
        yield link
    finally:
        link.close()


@contextmanager
def own_link(args: argparse.Namespace, archive: ArchiveStore | None) -> Iterator[ClientLink]:
    """Own the link of --port for this command (no station serves it)."""
    if not args.port:
        raise PortError("no serial port given: use --port PORT or set GROUNDSW_PORT")
    port = open_port(args.port, args.baud)
    try:
        session = LinkSession(
            port,
            params=LinkParameters(tm_coding=TmCoding(args.tm_coding)),
            baud=args.baud,
            source_id=args.source_id,
            fop=FopConfig(t1=default_t1(args.baud)),
            security=args.security,
        )
        owned = OwnedLink(
            args.payload_name,
            session,
            args.dictionary_loaded,
            archive,
            init_mode=InitMode(args.cop_init),
            init_timeout=args.timeout,
        )
        # What the payload says of our frames, kept to explain a silence.
        args.refusals = owned.refusals
        owned.start()
        try:
            link_up = owned.bring_up()
            print(f"link up on {args.port}: {link_up}")
            args.link_up = True
            client = owned.client(client_name(args), args.source_id)
            try:
                yield client
            finally:
                client.close()
        finally:
            owned.close()
    finally:
        port.close()


def no_answer_hint(args: argparse.Namespace) -> str:
    """What to add to a no-answer error: a word on the uplink key when its absence may be why."""
    if getattr(args, "through_station", False):
        # The station holds the keys: a silence there is the link's, not the keys'.
        return ""
    # The downlink flows either way: only a silence after the link is up can be the keys'.
    if getattr(args, "keys", None) is not None or not getattr(args, "link_up", False):
        return ""
    return (
        " (no uplink key given: a payload that requires authentication discards every frame; "
        "use --keys FILE or set GROUNDSW_KEYS)"
    )
