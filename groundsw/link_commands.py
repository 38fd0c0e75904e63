"""The commands that run on an open link: status, ping, cmd, tm live, and the operations the
command modules register (files, models, jobs...); and the events `events --follow` reads live."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator

from groundsw.archive import ArchiveStore
from groundsw.console import say, warn
from groundsw.dictionary_check import DictionaryMismatch, check_dictionary
from groundsw.history_commands import EventRecord
from groundsw.link_open import connect
from groundsw.live import run_live
from groundsw.payload_link import PayloadLink
from groundsw.ping import run_ping
from groundsw.send_command import run_command
from groundsw.station.owned_link import ClientLink
from groundsw.station.station import Station
from groundsw.station_commands import summary_line
from groundsw.transfer import OperationContext
from telemetry_defs.model import Command, Dictionary


def run_on_link(
    args: argparse.Namespace,
    archive: ArchiveStore,
    dictionary: Dictionary,
    prepared: tuple[Command, bytes] | None,
) -> int | None:
    """Open the link (`connect`) and run the command `args` names on it: an operation's exit
    code, None for the others. `prepared`: the `cmd` to send, checked before the link opened."""
    operation = getattr(args, "operation", None)
    with connect(args, archive) as session:
        if args.command == "status":
            assert isinstance(session, ClientLink)
            status_once(session, dictionary, args.timeout, say)
        elif args.command == "ping":
            run_ping(session, args.count, args.interval, args.timeout, say)
        elif args.command == "cmd":
            assert prepared is not None
            if not args.force:
                check_dictionary(session, dictionary, args.timeout, args.known_hash)
            command, app_data = prepared
            run_command(session, dictionary, command, app_data, args.timeout, say)
        elif args.command == "tm" and args.tm_command == "live":
            refresh = None
            if args.refresh:

                def refresh() -> None:
                    _refresh(session, dictionary, args.timeout, args.force)

            run_live(
                session,
                dictionary,
                args.duration,
                say,
                warn,
                first=refresh,
                structures=args.structure,
                parameters=args.parameter,
            )
        elif operation is not None:
            if not args.force:
                check_dictionary(session, dictionary, args.timeout, args.known_hash)
            context = OperationContext(
                session,
                dictionary,
                args.timeout,
                args.baud,
                say,
                warn,
                tty=sys.stdout.isatty(),
                security=args.security,
            )
            return int(operation(args, context))
    return None


def status_once(
    link: ClientLink, dictionary: Dictionary, timeout: float, out: Callable[[str], None]
) -> None:
    """`status` with no station: this link's state, and the payload's mode and jobs from one
    report of each structure that holds them."""
    command = dictionary.command("HK_GENERATE")
    sids = [dictionary.housekeeping[name].sid for name in ("PAYLOAD_STATUS", "JOBS_STATUS")]
    run_command(link, dictionary, command, command.encode({"sids": sids}), timeout, lambda _: None)
    owner = link.owner
    summary = Station.summary_of(owner)
    out(summary_line(summary.to_json()))


def _refresh(session: PayloadLink, dictionary: Dictionary, timeout: float, force: bool) -> None:
    # The table shows telemetry under a mismatch banner, but commands wait for --force.
    if not force:
        try:
            check_dictionary(session, dictionary, timeout)
        except DictionaryMismatch as exc:
            warn(f"groundsw: WARNING {exc}; --refresh not sent")
            return
    command = dictionary.command("HK_GENERATE")
    sids = [h.sid for h in dictionary.housekeeping.values()]
    run_command(
        session, dictionary, command, command.encode({"sids": sids}), timeout, lambda _: None
    )


def live_events(
    args: argparse.Namespace, archive: ArchiveStore, dictionary: Dictionary
) -> Iterator[EventRecord]:
    """Events as they arrive on the link (the archive stores them as it stores everything)."""
    from groundsw.verification import drain

    with connect(args, archive) as session:
        packets = session.subscribe()
        seen = archive.last_event_id()
        while True:
            time.sleep(0.2)
            drain(packets)  # arrival wakes us; the archive is the record
            archive.flush()
            for record in archive.events_after(seen):
                seen = record.id
                yield record
