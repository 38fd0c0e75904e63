"""groundsw's entry point: each command to what runs it (offline, at the ground station or on the
link), and each error to one sentence and an exit code.

Exit codes: 0 success, 1 the payload refused or failed a command (its frames refused by the
uplink security included), 2 bad usage, name, value,
port, file or archive, 3 no answer (link down, timeout, COP-1 gave up), 4 the payload's
dictionary differs from the ground's.

The parser is groundsw.cli_parser's, the link's opening groundsw.link_open's and the commands on
the link groundsw.link_commands'; their names are importable from here as before.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time

from groundsw.archive import ArchiveError, open_archive
from groundsw.cli_parser import (
    TM_CODINGS,
    accept_global_options_after_subcommands,
    build_parser,
    package_version,
)
from groundsw.console import say
from groundsw.dictionary_check import DictionaryMismatch
from groundsw.dictionary_help import run_commands, run_parameters
from groundsw.history_commands import HistoryContext, HistoryError
from groundsw.link_commands import live_events, run_on_link, status_once
from groundsw.link_open import client_name, connect, no_answer_hint, own_link
from groundsw.liveview import LiveTable
from groundsw.payload_link import LinkTimeout, PacketTooLong
from groundsw.plot import PlotError
from groundsw.station.config import payload_data_dir
from groundsw.station.discovery import find_station
from groundsw.station_commands import (
    StationRequestError,
    resolve_payload,
    run_queue,
    run_serve,
    run_status,
)
from groundsw.timespec import TimeSpecError
from groundsw.transfer import GroundInputError
from groundsw.uplink_security import RefusalLog, UplinkKeyError, UplinkSecurity
from groundsw.verification import CommandFailed
from spacelink.errors import Cop1Error, LinkError
from spacelink.serialport import PortError
from telemetry_defs.loader import DictionaryError, load_dictionary
from telemetry_defs.model import UnknownName
from telemetry_defs.valuetypes import DictionaryValueError

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_COMMAND_FAILED",
    "EXIT_DICTIONARY_MISMATCH",
    "EXIT_INTERRUPTED",
    "EXIT_NO_ANSWER",
    "EXIT_OK",
    "EXIT_USAGE",
    "TM_CODINGS",
    "accept_global_options_after_subcommands",
    "build_parser",
    "client_name",
    "connect",
    "main",
    "own_link",
    "package_version",
    "status_once",
]

EXIT_OK = 0
EXIT_COMMAND_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 3
EXIT_DICTIONARY_MISMATCH = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command Ctrl-C stopped
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def main(argv: list[str] | None = None) -> int:
    """Run `groundsw ARGV` (the process's arguments when None); its exit code."""
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
            return run_serve(args, say)
        if args.command in ("commands", "parameters") or (
            args.command == "cmd" and (args.show_help or args.list or args.name is None)
        ):
            return _dictionary_help(args)
        found = find_station(args.data_dir)
        if args.command == "status" and found is not None and args.payload is None:
            return run_status(found, say)  # the whole fleet
        args.station, args.payload_name = resolve_payload(found, args.port, args.payload)
        args.known_hash = None
        if args.command in ("status", "queue") and args.station is not None:
            if args.command == "status":
                return run_status(args.station, say, args.payload_name)
            return run_queue(args.station, args.payload_name, args.cancel, say)
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
                    out=say,
                    live_events=lambda: live_events(args, archive, dictionary),
                    now=time.time,
                )
                return int(handler(args, ctx))
            code = run_on_link(args, archive, dictionary, prepared)
            if code is not None:
                return code
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
        return _fail(f"{exc}{no_answer_hint(args)}", EXIT_NO_ANSWER)
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


def _dictionary_help(args: argparse.Namespace) -> int:
    """The dictionary's listings and a command's help: no link, no archive."""
    dictionary = load_dictionary(args.dictionary)
    if args.command == "parameters":
        return run_parameters(dictionary, args.name, args.settable, say)
    if args.command == "commands" or args.list:
        return run_commands(dictionary, args.name if args.command == "commands" else None, say)
    if args.name is None:
        if args.show_help:
            args.cmd_parser.print_help()
            return EXIT_OK
        raise GroundInputError("cmd needs a command name: groundsw commands lists them")
    return run_commands(dictionary, args.name, say)


def _fail(message: str, code: int) -> int:
    print(f"groundsw: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
