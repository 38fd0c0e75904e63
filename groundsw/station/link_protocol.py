"""The messages of a client's link socket (`/api/v1/payloads/{name}/link`), JSON text frames.

Client to station:
    {"op": "command", "tag": T, "service": S, "subtype": U, "data": HEX, "ack": A}
Station to client:
    {"type": "hello", "payload": NAME, "source_id": N, "max_packet_octets": M}
    {"type": "submitted", "tag": T, "packet": HEX}       the TC as built (its request ID)
    {"type": "refused", "tag": T, "error": TEXT}          not sent (too long, link failed...)
    {"type": "event", "request": HEX, "kind": K, "reason": TEXT, "subtype": U, "data": HEX}
        K: queued, frame acknowledged, report (subtype and data: the TM[1,x] source data),
        dropped
    {"type": "tm", "raw": HEX}                            a TM packet for this client or for all
Every TM packet addressed to the client (destination ID = its source ID) or to everyone (0) and
every event of its commands come in the order the link delivered them. Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from groundsw.session import CommandEvent, CommandRecord, EventKind, ReceivedTm
from spacelink.pus import VerificationReport
from spacelink.spacepacket import AckFlags, PusTc, RequestId

_KINDS = {kind.value: kind for kind in EventKind}


def hello_message(payload: str, client: Any) -> dict[str, Any]:
    return {
        "type": "hello",
        "payload": payload,
        "source_id": client.source_id,
        "max_packet_octets": client.max_packet_octets,
    }


def submitted_message(tag: Any, record: CommandRecord) -> dict[str, Any]:
    return {"type": "submitted", "tag": tag, "packet": record.tc.pack().hex()}


def refused_message(tag: Any, error: str) -> dict[str, Any]:
    return {"type": "refused", "tag": tag, "error": error}


def event_message(request_id: RequestId, event: CommandEvent) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "event",
        "request": request_id.pack().hex(),
        "kind": event.kind.value,
        "reason": event.reason,
    }
    if event.report is not None:
        message["subtype"] = event.report.subtype
        message["data"] = event.report.pack().hex()
    return message


def tm_message(item: ReceivedTm) -> dict[str, Any]:
    return {"type": "tm", "raw": item.raw.hex(), "vcid": item.vcid}


def command_message(
    tag: int, service: int, subtype: int, data: bytes, ack: AckFlags
) -> dict[str, Any]:
    return {
        "op": "command",
        "tag": tag,
        "service": service,
        "subtype": subtype,
        "data": data.hex(),
        "ack": int(ack),
    }


def parse_command(op: dict[str, Any]) -> tuple[int, int, bytes, AckFlags]:
    """(service, subtype, data, ack) of a command operation; ValueError when malformed."""
    try:
        service, subtype, ack = int(op["service"]), int(op["subtype"]), int(op.get("ack", 15))
        data = bytes.fromhex(str(op.get("data", "")))
    except (KeyError, TypeError, ValueError):
        raise ValueError("a command needs service, subtype, data (hex) and ack") from None
    if not (0 <= service <= 255 and 0 <= subtype <= 255 and 0 <= ack <= 15):
        raise ValueError("service and subtype are 0..255, ack 0..15")
    return service, subtype, data, AckFlags(ack)


def parse_packet(message: dict[str, Any]) -> PusTc:
    """The TC of a `submitted` message."""
    return PusTc.unpack(bytes.fromhex(message["packet"]))


def parse_event(message: dict[str, Any], at: float, order: int) -> tuple[RequestId, CommandEvent]:
    """The request ID and event of an `event` message, timed `at` and ordered `order` here."""
    request_id = RequestId.unpack(bytes.fromhex(message["request"]))
    kind = _KINDS[message["kind"]]
    report = None
    if "data" in message:
        report = VerificationReport.unpack(int(message["subtype"]), bytes.fromhex(message["data"]))
    return request_id, CommandEvent(kind, at, order, report, str(message.get("reason", "")))


def json_values(value: Any) -> Any:
    """Decoded values as JSON takes them (octets as hex)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [json_values(v) for v in value]
    if isinstance(value, dict):
        return {k: json_values(v) for k, v in value.items()}
    return value


def encode_message(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def decode_message(text: str | bytes) -> dict[str, Any]:
    """A message's object; ValueError when the text is not one."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("a link socket message is a JSON object")
    return value
