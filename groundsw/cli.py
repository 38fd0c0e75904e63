"""groundsw: the operators' command-line tool. Errors end as one sentence and an exit code.

Exit codes: 0 success, 1 the payload refused or failed a command (its frames refused by the
uplink security included), 2 bad usage, name, value,
port, file or archive, 3 no answer (link down, timeout, COP-1 gave up), 4 the payload's
dictionary differs from the ground's.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib.metadata
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from groundsw.archive import ArchiveError, ArchiveStore, open_archive
from groundsw.command_history import add_history_command
from groundsw.contact_commands import add_contact_commands
from groundsw.dictionary_check import DictionaryMismatch, check_dictionary
from groundsw.dictionary_help import add_dictionary_commands, run_commands, run_parameters
from groundsw.history_commands import (
    EventRecord,
    HistoryContext,
    HistoryError,
    add_events_command,
    add_tm_commands,
)
from groundsw.job_commands import add_job_commands
from groundsw.key_commands import add_key_commands
from groundsw.live import run_live
from groundsw.liveview import LiveTable
from groundsw.model_commands import add_model_commands
from groundsw.pass_commands import add_pass_commands
from groundsw.ping import run_ping
from groundsw.plan_commands import add_plan_commands
from groundsw.plot import PlotError
from groundsw.schedule_commands import add_schedule_commands
from groundsw.send_command import run_command
from groundsw.session import (
    InitMode,
    LinkSession,
    LinkTimeout,
    PacketTooLong,
    PayloadLink,
    default_t1,
)
from groundsw.station.config import default_data_dir, payload_data_dir
from groundsw.station.discovery import find_station
from groundsw.station.owned_link import ClientLink, OwnedLink
from groundsw.station.remote import ServiceLink
from groundsw.station.station import Station
from groundsw.station_commands import (
    StationRefusals,
    StationRequestError,
    add_station_commands,
    resolve_payload,
    run_queue,
    run_serve,
    run_status,
    station_get,
    summary_line,
)
from groundsw.timespec import TimeSpecError
from groundsw.transfer import (
    GroundInputError,
    OneSentenceParser,
    OperationContext,
    add_file_commands,
)
from groundsw.uplink_security import (
    RefusalLog,
    UplinkKeyError,
    UplinkSecurity,
    keys_from_environment,
)
from groundsw.verification import CommandFailed
from spacelink.cop1 import FopConfig
from spacelink.errors import Cop1Error, LinkError
from spacelink.icd import DEFAULT_BAUD, LinkParameters, TmCoding
from spacelink.serialport import PortError, open_port
from telemetry_defs.loader import DictionaryError, load_dictionary
from telemetry_defs.model import Dictionary, UnknownName
from telemetry_defs.valuetypes import DictionaryValueError

EXIT_OK = 0
EXIT_COMMAND_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 3
EXIT_DICTIONARY_MISMATCH = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command Ctrl-C stopped
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


TM_CODINGS = tuple(c.value for c in TmCoding)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="groundsw", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument(
        "--port",
        default=os.environ.get("GROUNDSW_PORT"),
        help="serial device path or pyserial URL (default: $GROUNDSW_PORT)",
    )
    parser.add_argument("--baud", type=_positive_int, default=DEFAULT_BAUD)
    parser.add_argument(
        "--tm-coding",
        choices=TM_CODINGS,
        default=os.environ.get("GROUNDSW_TM_CODING", "rs"),
        help="TM channel coding the payload sends: rs (Reed-Solomon, ICD v2) or none (a v1 "
        "link) (default: $GROUNDSW_TM_CODING, else rs)",
    )
    parser.add_argument(
        "--timeout", type=_positive_float, default=10.0, help="seconds to wait for an answer"
    )
    parser.add_argument(
        "--cop-init",
        choices=[m.value for m in InitMode],
        default=InitMode.AUTO.value,
        help="how to start COP-1: from the CLCW (auto, with Unlock if locked out), "
        "clcw, unlock, or setvr (resets the payload's V(R) to 0)",
    )
    parser.add_argument("--source-id", type=int, default=1, help="PUS source ID of this ground")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="ground data directory: each payload's archive, the running ground station "
        "(default: $GROUNDSW_DATA, else $XDG_DATA_HOME/groundsw or ~/.local/share/groundsw)",
    )
    parser.add_argument(
        "--payload",
        help="the payload, by its name at the ground station (needed when it has several; "
        "default: the one of --port, or 'payload')",
    )
    parser.add_argument(
        "--dictionary", type=Path, help="dictionary directory (default: the shipped one)"
    )
    parser.add_argument(
        "--keys",
        type=Path,
        default=keys_from_environment(),
        help="uplink key file (default: $GROUNDSW_KEYS); without one, frames go out "
        "unauthenticated, which a payload requiring authentication discards",
    )
    parser.add_argument(
        "--spi", type=int, help="security association to use (default: the key file's first)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the link's traffic: every frame and packet",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ping = sub.add_parser("ping", help="TC[17,1] are-you-alive, with each verification stage")
    ping.add_argument("--count", type=_positive_int, default=1)
    ping.add_argument("--interval", type=float, default=0.0, help="seconds between pings")
    cmd = sub.add_parser(
        "cmd",
        add_help=False,
        help="send any dictionary command: cmd NAME key=value ... (cmd NAME --help: arguments)",
        description="Send a dictionary command; arguments are checked before anything is sent. "
        "PARAM_SET takes PARAMETER=VALUE pairs; lists are comma-separated; structures and "
        "parameters may be named instead of numbered.",
    )
    cmd.add_argument("name", nargs="?", help="command name, e.g. HK_GENERATE")
    cmd.add_argument("arguments", nargs="*", metavar="key=value")
    cmd.add_argument(
        "--list", action="store_true", help="list the dictionary's commands (groundsw commands)"
    )
    cmd.add_argument(
        "--force", action="store_true", help="send even if the payload's dictionary differs"
    )
    cmd.set_defaults(cmd_parser=cmd)
    cmd.add_argument(
        "-h",
        "--help",
        dest="show_help",
        action="store_true",
        help="this help; with a NAME, the command's arguments, ranges, units and descriptions",
    )
    tm = sub.add_parser("tm", help="telemetry: live view, archive queries and plots")
    tm_sub = tm.add_subparsers(
        dest="tm_command", required=True, metavar="TM_COMMAND", parser_class=OneSentenceParser
    )
    live = tm_sub.add_parser("live", help="live table of the latest values with limit colours")
    live.add_argument(
        "--duration", type=_positive_float, help="seconds to run (default: until Ctrl-C)"
    )
    live.add_argument(
        "--refresh",
        action="store_true",
        help="ask for one report of every housekeeping structure at start (TC[3,27])",
    )
    live.add_argument(
        "--force",
        action="store_true",
        help="send the --refresh command even if the payload's dictionary differs",
    )
    live.add_argument(
        "--structure",
        action="append",
        default=[],
        metavar="NAME",
        help="show this housekeeping structure (repeatable; default: all, in pages that fit)",
    )
    live.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME",
        help="show this parameter (repeatable)",
    )
    add_tm_commands(tm_sub)
    add_events_command(sub)
    add_history_command(sub)
    add_model_commands(sub)
    add_job_commands(sub)
    add_schedule_commands(sub)
    add_file_commands(sub)
    add_key_commands(sub)
    add_station_commands(sub)
    add_pass_commands(sub)
    add_contact_commands(sub)
    add_plan_commands(sub)
    add_dictionary_commands(sub)
    accept_global_options_after_subcommands(parser)
    return parser


def accept_global_options_after_subcommands(parser: argparse.ArgumentParser) -> None:
    """Let `groundsw ping --port P` mean `groundsw --port P ping`: every subcommand also takes
    the global options it does not define itself, without replacing a value given before it."""
    globals_ = [
        a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")
    ]
    for subparser in _subparsers(parser):
        taken = set(subparser._option_string_actions)
        for action in globals_:
            names = [o for o in action.option_strings if o not in taken]
            if len(names) != len(action.option_strings):
                continue  # the subcommand has an option of that name: its own
            kwargs: dict[str, Any] = {"dest": action.dest, "default": argparse.SUPPRESS}
            if action.nargs == 0:
                kwargs["action"] = "store_true" if action.const is True else "store_const"
                if action.const is not True:
                    kwargs["const"] = action.const
            else:
                kwargs.update(type=action.type, choices=action.choices, metavar=action.metavar)
            subparser.add_argument(*names, help=argparse.SUPPRESS, **kwargs)


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield child
                yield from _subparsers(child)


class _VersionAction(argparse.Action):
    """--version: groundsw's and its dictionary's, loaded only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=0, help="groundsw's and its dictionary's version"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        dictionary = load_dictionary(None)
        print(
            f"groundsw {package_version()}, dictionary {dictionary.name} {dictionary.version} "
            f"(0x{dictionary.hash32:08X})"
        )
        parser.exit(0)


def package_version() -> str:
    try:
        return importlib.metadata.version("orbital-inference-payload")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The station is a service: its log says what it does by itself (the link up and down,
    # COP-1 started again, gaps found and repaired); a one-off command prints only its result.
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "serve" else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.verbose:
        logging.getLogger("groundsw").setLevel(logging.DEBUG)  # the link's traffic, ours only
    try:
        offline = getattr(args, "offline", None)
        if offline is not None:
            return int(offline(args))
        if args.command == "serve":
            return run_serve(args, _print)
        if args.command in ("commands", "parameters") or (
            args.command == "cmd" and (args.show_help or args.list or args.name is None)
        ):
            return _dictionary_help(args)
        found = find_station(args.data_dir)
        if args.command == "status" and found is not None and args.payload is None:
            return run_status(found, _print)  # the whole fleet
        args.station, args.payload_name = resolve_payload(found, args.port, args.payload)
        args.known_hash = None
        if args.command in ("status", "queue") and args.station is not None:
            if args.command == "status":
                return run_status(args.station, _print, args.payload_name)
            return run_queue(args.station, args.payload_name, args.cancel, _print)
        if args.command == "key" and args.station is not None:
            # The station secures the link with its own copy of the key and counter.
            raise StationRequestError(
                f"the ground station (pid {args.station.pid}) owns the link of "
                f"{args.payload_name} and secures it: stop it to rotate the key, then start "
                "it again"
            )
        if args.command == "queue":
            raise StationRequestError(
                f"no ground station serves {args.data_dir}: commands wait in a queue only at "
                "a station (groundsw serve)"
            )
        dictionary = load_dictionary(args.dictionary)
        args.dictionary_loaded = dictionary
        args.security = (
            None if args.keys is None else UplinkSecurity.from_key_file(args.keys, args.spi)
        )
        prepared = None
        if args.command == "tm" and args.tm_command == "live":
            LiveTable(dictionary, args.structure, args.parameter)  # names checked first
        if args.command == "cmd":
            # Checked before the port is opened: a typo costs nothing on the link.
            prepared = dictionary.command_from_text(args.name, args.arguments)
        operation = getattr(args, "operation", None)
        local_check = getattr(args, "local_check", None)
        if local_check is not None:
            # Files and values are checked before the port is opened, as for `cmd`.
            local_check(args)
        with contextlib.closing(
            open_archive(payload_data_dir(args.data_dir, args.payload_name), dictionary)
        ) as archive:
            handler = getattr(args, "handler", None)
            if handler is not None:
                ctx = HistoryContext(
                    archive=archive,
                    dictionary=dictionary,
                    out=_print,
                    live_events=lambda: _live_events(args, archive, dictionary),
                    now=time.time,
                )
                return int(handler(args, ctx))
            with connect(args, archive) as session:
                if args.command == "status":
                    assert isinstance(session, ClientLink)
                    status_once(session, dictionary, args.timeout, _print)
                elif args.command == "ping":
                    run_ping(session, args.count, args.interval, args.timeout, _print)
                elif args.command == "cmd":
                    assert prepared is not None
                    if not args.force:
                        check_dictionary(session, dictionary, args.timeout, args.known_hash)
                    command, app_data = prepared
                    run_command(session, dictionary, command, app_data, args.timeout, _print)
                elif args.command == "tm" and args.tm_command == "live":
                    refresh = None
                    if args.refresh:

                        def refresh() -> None:
                            _refresh(session, dictionary, args.timeout, args.force)

                    run_live(
                        session,
                        dictionary,
                        args.duration,
                        _print,
                        _warn,
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
                        _print,
                        _warn,
                        tty=sys.stdout.isatty(),
                        security=args.security,
                    )
                    return int(operation(args, context))
    except (
        DictionaryError,
        UnknownName,
        DictionaryValueError,
        ArchiveError,
        HistoryError,
        TimeSpecError,
        PlotError,
        GroundInputError,
        UplinkKeyError,
        StationRequestError,
    ) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except PortError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except CommandFailed as exc:
        return _fail(str(exc), EXIT_COMMAND_FAILED)
    except DictionaryMismatch as exc:
        return _fail(str(exc), EXIT_DICTIONARY_MISMATCH)
    except PacketTooLong as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (LinkTimeout, Cop1Error) as exc:
        refusals: RefusalLog | None = getattr(args, "refusals", None)
        said = None if refusals is None else refusals.explain()
        if said is not None:
            return _fail(f"{said}; {exc}", EXIT_COMMAND_FAILED)
        return _fail(f"{exc}{_no_answer_hint(args)}", EXIT_NO_ANSWER)
    except LinkError as exc:
        return _fail(str(exc), EXIT_NO_ANSWER)
    except BrokenPipeError:
        # The reader went away (`groundsw commands | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        if args.command in ("tm", "events"):
            return EXIT_OK  # watching ends with Ctrl-C
        return _fail("interrupted", EXIT_INTERRUPTED)
    return EXIT_OK


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


def _dictionary_help(args: argparse.Namespace) -> int:
    """The dictionary's listings and a command's help: no link, no archive."""
    dictionary = load_dictionary(args.dictionary)
    if args.command == "parameters":
        return run_parameters(dictionary, args.name, args.settable, _print)
    if args.command == "commands" or args.list:
        return run_commands(dictionary, args.name if args.command == "commands" else None, _print)
    if args.name is None:
        if args.show_help:
            args.cmd_parser.print_help()
            return EXIT_OK
        raise GroundInputError("cmd needs a command name: groundsw commands lists them")
    return run_commands(dictionary, args.name, _print)


def _no_answer_hint(args: argparse.Namespace) -> str:
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


def _print(line: str) -> None:
    print(line, flush=True)


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _refresh(session: PayloadLink, dictionary: Dictionary, timeout: float, force: bool) -> None:
    # The table shows telemetry under a mismatch banner, but commands wait for --force.
    if not force:
        try:
            check_dictionary(session, dictionary, timeout)
        except DictionaryMismatch as exc:
            _warn(f"groundsw: WARNING {exc}; --refresh not sent")
            return
    command = dictionary.command("HK_GENERATE")
    sids = [h.sid for h in dictionary.housekeeping.values()]
    run_command(
        session, dictionary, command, command.encode({"sids": sids}), timeout, lambda _: None
    )


def _live_events(
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


def _fail(message: str, code: int) -> int:
    print(f"groundsw: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
