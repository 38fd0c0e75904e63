"""Comparing the payload's dictionary with the ground's before commanding it.

A command encoded with another dictionary than the payload's may mean something else on board,
so the ground asks for the payload's DICTIONARY_HASH (TC[20,1]) and refuses to command on a
mismatch unless the operator forces it. Telemetry is still shown, under a loud warning.
"""

from __future__ import annotations

import time

from groundsw.session import LinkTimeout, PayloadLink
from groundsw.verification import drain
from telemetry_defs.model import CodecError, Dictionary, UnknownName

HASH_PARAMETER = "DICTIONARY_HASH"


class DictionaryMismatch(Exception):
    """The payload runs with another dictionary than the ground's."""

    def __init__(self, payload_hash: int, dictionary: Dictionary) -> None:
        super().__init__(
            f"the payload's dictionary (hash 0x{payload_hash:08X}) differs from this ground's "
            f"({dictionary.name} {dictionary.version}, hash 0x{dictionary.hash32:08X}): "
            "commands could be misread on board; use --force to send anyway"
        )
        self.payload_hash = payload_hash


def mismatch_warning(payload_hash: int, dictionary: Dictionary) -> str:
    return (
        f"DICTIONARY MISMATCH: payload 0x{payload_hash:08X}, ground 0x{dictionary.hash32:08X} "
        f"({dictionary.name} {dictionary.version}): values may be decoded wrongly"
    )


def payload_dictionary_hash(
    session: PayloadLink, dictionary: Dictionary, timeout: float, attempts: int = 3
) -> int:
    """Ask the payload for its dictionary hash (TC[20,1]) and wait for the answer; asked again
    (`attempts` times within `timeout` in all) when the answer is lost on the downlink."""
    for _ in range(attempts):
        found = _ask_hash(session, dictionary, timeout / attempts)
        if found is not None:
            return found
    raise LinkTimeout(
        f"no answer to the dictionary check (TC[20,1]): {attempts} requests in {timeout:g} s"
    )


def _ask_hash(session: PayloadLink, dictionary: Dictionary, timeout: float) -> int | None:
    """One TC[20,1] for the hash: its value, or None when nothing came within `timeout`."""
    command = dictionary.command("PARAM_REPORT")
    parameter = dictionary.parameter(HASH_PARAMETER)
    replies = session.subscribe()
    try:
        record = session.command(
            command.service, command.subtype, command.encode({"ids": [parameter.id]})
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if record.failure is not None:
                raise LinkTimeout(
                    "the payload refused the dictionary check (TC[20,1]): "
                    f"code {record.failure.failure_code}"
                )
            for item in drain(replies):
                if item.tm.destination_id != session.source_id:
                    continue
                try:
                    decoded = dictionary.decode_tm(
                        item.tm.service, item.tm.subtype, item.tm.source_data
                    )
                except (CodecError, UnknownName):
                    # Another dictionary may not even decode the reply: read the raw value.
                    found = _raw_hash(
                        item.tm.service, item.tm.subtype, item.tm.source_data, parameter.id
                    )
                    if found is not None:
                        return found
                    continue
                if HASH_PARAMETER in decoded.parameters:
                    return int(decoded.parameters[HASH_PARAMETER])
            time.sleep(0.02)
    finally:
        session.unsubscribe(replies)
    return None


def _raw_hash(service: int, subtype: int, data: bytes, pid: int) -> int | None:
    # TM[20,2] with the hash alone: N=1, ID u16, value u32 (ICD 8).
    if (
        (service, subtype) == (20, 2)
        and len(data) == 7
        and data[0] == 1
        and int.from_bytes(data[1:3], "big") == pid
    ):
        return int.from_bytes(data[3:7], "big")
    return None


def check_dictionary(
    session: PayloadLink, dictionary: Dictionary, timeout: float, known: int | None = None
) -> None:
    """DictionaryMismatch unless the payload's dictionary hash equals ours. `known`: the hash
    its housekeeping reported lately (a ground station's), which spares a round trip."""
    payload_hash = (
        known if known is not None else payload_dictionary_hash(session, dictionary, timeout)
    )
    if payload_hash != dictionary.hash32:
        raise DictionaryMismatch(payload_hash, dictionary)
