"""`groundsw schedule`: the payload's time-based schedule (ST[11]): time-tag any dictionary
command, list and summarise what is scheduled, delete, time-shift, enable, disable, reset."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from groundsw.session import LinkTimeout
from groundsw.timespec import TimeSpecError, parse_instant, utc_text
from groundsw.transfer import (
    GroundInputError,
    OneSentenceParser,
    Operation,
    OperationContext,
    add_operation,
)
from groundsw.verification import CommandFailed
from spacelink.cdstime import CdsTime
from spacelink.pus_schedule import (
    MAX_ACTIVITIES_PER_REQUEST,
    SCHEDULE_SERVICE,
    ScheduleCodecError,
    ScheduleRequestId,
    Subtype,
    SummaryEntry,
    TimeTaggedTc,
    decode_detail_report,
    decode_summary,
    encode_activities,
)
from spacelink.spacepacket import AckFlags, PusTc
from telemetry_defs.model import CodecError, Command, Dictionary

MAX_SEQUENCE = 0x3FFF
I32 = (-(1 << 31), (1 << 31) - 1)


def add_schedule_commands(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "schedule",
        help="time-tagged commands (ST[11]): insert, list, summary, delete, shift, enable, "
        "disable, reset",
    )
    commands = parser.add_subparsers(
        dest="schedule_command",
        required=True,
        metavar="SCHEDULE_COMMAND",
        parser_class=OneSentenceParser,
    )
    insert = add_operation(
        commands,
        "insert",
        "schedule a dictionary command, built as `groundsw cmd` builds it, for release at a "
        "time (TC[11,4]); prints its request ID",
        run_insert,
        _check_insert,
    )
    insert.add_argument(
        "--at",
        required=True,
        metavar="TIME",
        help="release time, UTC: +DURATION from now (+90s, +10m, +1h30m), an ISO time "
        "(2026-12-07T10:00:00.250Z) or UNIX seconds",
    )
    insert.add_argument("name", metavar="COMMAND", help="dictionary command, e.g. HK_GENERATE")
    insert.add_argument("arguments", nargs="*", metavar="key=value")
    add_operation(commands, "list", "every scheduled activity, decoded", run_list)
    add_operation(commands, "summary", "release times and request IDs", run_summary)
    delete = add_operation(
        commands, "delete", "delete a scheduled activity", run_delete, _check_delete
    )
    delete.add_argument("request_id", metavar="ID", help="request ID, as list shows it")
    shift = add_operation(
        commands, "shift", "time-shift one activity or all of them", run_shift, _check_shift
    )
    shift.add_argument("request_id", nargs="?", metavar="ID", help="request ID (or --all)")
    shift.add_argument("--all", action="store_true", help="shift every activity")
    shift.add_argument("seconds", metavar="SECONDS", help="offset; negative: earlier")
    add_operation(commands, "enable", "enable the release of activities", _simple("ENABLE"))
    add_operation(
        commands,
        "disable",
        "disable it: an activity whose time comes meanwhile is dropped",
        _simple("DISABLE"),
    )
    add_operation(
        commands, "reset", "delete every activity and disable the schedule", _simple("RESET")
    )


# -- what the operator typed -------------------------------------------------------------------


def release_at(text: str, now: float) -> float:
    """The UNIX time `--at` means; GroundInputError for anything else or a time gone."""
    try:
        at = parse_instant(text, now)
    except TimeSpecError:
        raise GroundInputError(
            f"--at {text!r} is not a time: give +DURATION (+90s, +10m), an ISO time such as "
            "2026-12-07T10:00:00Z, or UNIX seconds"
        ) from None
    if at <= now:
        raise GroundInputError(f"--at {text}: {utc_text(at)} is not in the future")
    return at


def parse_request_id(text: str) -> ScheduleRequestId:
    """A request ID as `list` shows it (0x...), in decimal, or as SOURCE:APID:COUNT."""
    try:
        if text.count(":") == 2:
            source, apid, count = (int(part, 0) for part in text.split(":"))
            return ScheduleRequestId(source, apid, count)
        return ScheduleRequestId.from_value(int(text, 0))
    except ValueError:
        raise GroundInputError(
            f"{text!r} is not a request ID: give it as schedule list shows it, e.g. "
            "0x0000000100640005, or as SOURCE:APID:COUNT"
        ) from None


def offset_ms(text: str) -> int:
    try:
        value = round(float(text) * 1000)
    except (ValueError, OverflowError):
        raise GroundInputError(f"{text!r} is not a number of seconds") from None
    if not I32[0] <= value <= I32[1]:
        raise GroundInputError(f"{text} s is more than the 24.8 days a shift can be")
    return value


def _check_insert(args: argparse.Namespace) -> None:
    release_at(args.at, time.time())
    args.dictionary_loaded.command_from_text(args.name, args.arguments)


def _check_delete(args: argparse.Namespace) -> None:
    parse_request_id(args.request_id)


def _check_shift(args: argparse.Namespace) -> None:
    if args.all == (args.request_id is not None):
        raise GroundInputError("give either one request ID or --all")
    if args.request_id is not None:
        parse_request_id(args.request_id)
    offset_ms(args.seconds)


# -- on the link ---------------------------------------------------------------------------------


def run_insert(args: argparse.Namespace, ctx: OperationContext) -> int:
    command, app_data = ctx.dictionary.command_from_text(args.name, args.arguments)

    def release() -> float:
        # Checked again once the summary's round trip is over.
        return release_at(args.at, time.time())

    (activity,) = insert_commands(ctx, [(release, command, app_data)])
    ctx.out(
        f"{command.name} TC[{command.service},{command.subtype}] scheduled for "
        f"{activity.release} as request ID {activity.request_id}"
    )
    ctx.out(str(activity.request_id))
    return 0


def insert_commands(
    ctx: OperationContext, commands: Sequence[tuple[Callable[[], float], Command, bytes]]
) -> list[TimeTaggedTc]:
    """Time-tag dictionary commands (each `(release time, command, its application data)`,
    the time asked for once the request IDs in use are known) and insert them, as many per
    TC[11,4] as one packet carries. Each inner TC carries this ground's source ID and a sequence
    count no scheduled activity of ours has, and asks for every report. A request is refused
    whole; when one after the first is refused, the activities inserted before it are deleted
    again, so that the commands are scheduled all or none (CommandFailed or LinkTimeout)."""
    dictionary = ctx.dictionary
    taken = {entry.request_id for entry in _summary(ctx)}
    source, apid = ctx.link.source_id, dictionary.apid
    seed = int(time.time() * 1000)
    activities = []
    for at, command, app_data in commands:
        seq = _free_count(taken, source, apid, seed)
        taken.add(ScheduleRequestId(source, apid, seq))
        inner = PusTc(
            apid,
            command.service,
            command.subtype,
            app_data,
            seq_count=seq,
            source_id=source,
            ack_flags=AckFlags.ALL,
        )
        activities.append(TimeTaggedTc(CdsTime.from_unix(at()), inner.pack()))
    inserted: list[TimeTaggedTc] = []
    try:
        for batch in _requests(activities, ctx.link.max_packet_octets, apid):
            ctx.exchange().request("SCHEDULE_INSERT", {"activities": encode_activities(batch)})
            inserted.extend(batch)
    except (CommandFailed, LinkTimeout):
        if inserted:
            ids = [a.request_id.value for a in inserted]
            for start in range(0, len(ids), MAX_ACTIVITIES_PER_REQUEST):
                chunk = ids[start : start + MAX_ACTIVITIES_PER_REQUEST]
                ctx.exchange().request("SCHEDULE_DELETE", {"request_ids": chunk})
        raise
    return activities


def _requests(
    activities: list[TimeTaggedTc], max_packet_octets: int, apid: int
) -> list[list[TimeTaggedTc]]:
    """The activities cut into TC[11,4] requests that each fit in one packet."""
    room = max_packet_octets - len(PusTc(apid, SCHEDULE_SERVICE, Subtype.INSERT).pack())
    batches: list[list[TimeTaggedTc]] = []
    size = room + 1
    for activity in activities:
        octets = len(activity.release.pack()) + len(activity.packet)
        if 2 + octets > room:
            raise GroundInputError(
                f"a scheduled TC of {len(activity.packet)} octets does not fit in a TC[11,4]"
            )
        if size + octets > room or len(batches[-1]) >= MAX_ACTIVITIES_PER_REQUEST:
            batches.append([])
            size = 2  # the count
        batches[-1].append(activity)
        size += octets
    return batches


def _free_count(taken: set[ScheduleRequestId], source: int, apid: int, seed: int) -> int:
    """A sequence count no scheduled activity of ours has: from a seed that moves with time,
    so that a recent command's count (and its reports) is not reused at once."""
    for step in range(MAX_SEQUENCE + 1):
        count = (seed + step) & MAX_SEQUENCE
        if ScheduleRequestId(source, apid, count) not in taken:
            return count
    raise GroundInputError("every request ID of this ground is scheduled: delete some first")


def _summary(ctx: OperationContext) -> list[SummaryEntry]:
    """Every activity's release time and request ID, from all the TM[11,13] of one request."""
    parts = ctx.exchange().query_all("SCHEDULE_SUMMARY_ALL", reply="SCHEDULE_SUMMARY_REPORT")
    try:
        return [entry for part in parts for entry in decode_summary(part["activities"])]
    except ScheduleCodecError as exc:
        raise GroundInputError(f"the payload's TM[11,13] does not decode: {exc}") from None


def run_summary(args: argparse.Namespace, ctx: OperationContext) -> int:
    entries = _summary(ctx)
    ctx.out(f"{len(entries)} scheduled")
    for entry in entries:
        ctx.out(f"  {entry.release}  {entry.request_id}")
    return 0


def describe_packet(dictionary: Dictionary, packet: bytes) -> str:
    """`NAME key=value ...` of a TC packet, as far as the dictionary reads it."""
    try:
        tc = PusTc.unpack(packet)
    except Exception as exc:  # a report is data from afar: shown, never trusted
        return f"({len(packet)} octets, not a TC: {exc})"
    head = f"TC[{tc.service},{tc.subtype}]"
    command = dictionary.command_for(tc.service, tc.subtype)
    if command is None:
        return f"{head} (not in the dictionary) {tc.app_data.hex()}"
    try:
        text = command.layout.to_text(command.decode(tc.app_data))
    except (CodecError, ValueError) as exc:
        return f"{head} {command.name} (arguments not decoded: {exc})"
    return f"{head} {command.name}{' ' + text if text else ''}"


def run_list(args: argparse.Namespace, ctx: OperationContext) -> int:
    # A long schedule comes in several TM[11,10], in release order: every one of them.
    parts = ctx.exchange().query_all("SCHEDULE_DETAIL_ALL", reply="SCHEDULE_DETAIL_REPORT")
    try:
        activities = [a for part in parts for a in decode_detail_report(part["activities"])]
    except ScheduleCodecError as exc:
        raise GroundInputError(f"the payload's TM[11,10] does not decode: {exc}") from None
    ctx.out(f"{len(activities)} scheduled")
    for activity in activities:
        text = describe_packet(ctx.dictionary, activity.packet)
        ctx.out(f"  {activity.release}  {activity.request_id}  {text}")
    return 0


def run_delete(args: argparse.Namespace, ctx: OperationContext) -> int:
    request_id = parse_request_id(args.request_id)
    ctx.exchange().request("SCHEDULE_DELETE", {"request_ids": [request_id.value]})
    ctx.out(f"request ID {request_id} deleted")
    return 0


def run_shift(args: argparse.Namespace, ctx: OperationContext) -> int:
    offset = offset_ms(args.seconds)
    if args.all:
        ctx.exchange().request("SCHEDULE_SHIFT_ALL", {"offset_ms": offset})
        ctx.out(f"every activity shifted by {offset / 1000:+g} s")
        return 0
    request_id = parse_request_id(args.request_id)
    ctx.exchange().request(
        "SCHEDULE_SHIFT", {"offset_ms": offset, "request_ids": [request_id.value]}
    )
    ctx.out(f"request ID {request_id} shifted by {offset / 1000:+g} s")
    return 0


def _simple(what: str) -> Operation:
    def run(args: argparse.Namespace, ctx: OperationContext) -> int:
        ctx.exchange().request(f"SCHEDULE_{what}")
        ctx.out(f"schedule {what.lower()}{'d' if what.endswith('E') else ''}")
        return 0

    return run
