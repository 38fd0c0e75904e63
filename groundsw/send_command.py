"""`groundsw cmd NAME key=value ...`: one dictionary command, its stages and its replies."""

from __future__ import annotations

from collections.abc import Callable

from groundsw.session import PayloadLink, ReceivedTm
from groundsw.verification import Retrieve, follow
from spacelink.pus import VerificationReport, failure_name
from spacelink.spacepacket import AckFlags
from telemetry_defs.model import CodecError, Command, Dictionary, UnknownName

Print = Callable[[str], None]
RETRIEVE_COMMAND = "STORE_RETRIEVE_RANGE"
STORE_ENUM = "PacketStoreId"
REPORTS_STORE = "EVENTS"


def describe_tm(dictionary: Dictionary, item: ReceivedTm) -> str:
    """`TM[s,st] NAME k=v ...` as far as the dictionary can read the packet."""
    tm = item.tm
    head = f"TM[{tm.service},{tm.subtype}]"
    try:
        decoded = dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
    except (CodecError, UnknownName) as exc:
        return f"{head} ({len(tm.source_data)} octets, not decoded: {exc})"
    text = dictionary.describe_values(decoded)
    return f"{head} {decoded.name}{' ' + text if text else ''}"


def describe_failure(dictionary: Dictionary, report: VerificationReport) -> str:
    """`INPUT_WRONG_SHAPE (code 284): <detail>`: the failure by its dictionary name, with its
    data decoded where the failure has a layout (a lone `detail` text shown as it is)."""
    code = report.failure_code or 0
    failure = dictionary.failure(code)
    name = failure.name if failure is not None else failure_name(code)
    text = f"{name} (code {code})"
    data = report.failure_data
    if not data:
        return text
    if failure is not None and failure.layout is not None:
        try:
            values = failure.layout.parse(data)
        except CodecError:
            return f"{text}: data {data.hex()}"
        if list(values) == ["detail"]:
            return f"{text}: {values['detail']}"
        return f"{text}: {failure.layout.to_text(values)}"
    return f"{text}: data {data.hex()}"


def stored_reports(session: PayloadLink, dictionary: Dictionary) -> Retrieve | None:
    """How `follow` gets lost reports back: a by-time-range retrieval of the payload's EVENTS
    packet store (reports and events only: small, and apart from the ALL store the ground
    station repairs its archive from); None when the payload's dictionary has no stores."""
    try:
        command = dictionary.command(RETRIEVE_COMMAND)
        store = dictionary.enums[STORE_ENUM].values[REPORTS_STORE]
    except (UnknownName, KeyError):
        return None

    def ask(since: float, until: float) -> None:
        limit = 0xFFFFFFFF
        start, end = (min(limit, max(0, int(t))) for t in (since, until))
        data = command.encode({"store": store, "start": start, "end": end})
        # Only a failure is reported: a busy store leaves the command unsettled, as before.
        session.command(command.service, command.subtype, data, AckFlags.NONE)

    return ask


def run_command(
    session: PayloadLink,
    dictionary: Dictionary,
    command: Command,
    app_data: bytes,
    timeout: float,
    out: Print,
) -> float:
    """Send the command, print its stages and every reply addressed to us; CommandFailed or
    LinkTimeout as `follow` raises them. Returns the time to completion."""
    replies = session.subscribe()
    try:
        record = session.command(command.service, command.subtype, app_data)
        out(f"{command.name} TC[{command.service},{command.subtype}] {record.request_id} sent")

        def on_reply(item: ReceivedTm, elapsed: float) -> None:
            # Periodic telemetry is not an answer: only packets addressed to this ground are.
            if item.tm.destination_id == session.source_id:
                out(f"  {'reply':<20}{elapsed * 1000:8.1f} ms  {describe_tm(dictionary, item)}")

        return follow(
            record,
            replies,
            timeout,
            out,
            name=command.name,
            on_reply=on_reply,
            describe_failure=lambda report: describe_failure(dictionary, report),
            retrieve=stored_reports(session, dictionary),
        )
    finally:
        session.unsubscribe(replies)
