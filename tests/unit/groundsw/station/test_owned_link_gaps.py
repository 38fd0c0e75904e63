"""The owned link's hook for gap recovery: each packet archived with the virtual channel of the
frame that completed it, the station's links recovering gaps, one-off links not, and packets
retrieved from the payload's store (VC 1) leaving the latest values alone."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from groundsw.archive import Archive
from groundsw.session import LinkSession
from groundsw.station.owned_link import OwnedLink
from spacelink.cdstime import CdsTime
from spacelink.spacepacket import PusTm
from spacelink.tmframe import TmFrame
from telemetry_defs.loader import default_dictionary, load_dictionary

D = default_dictionary()
STATUS = D.housekeeping["PAYLOAD_STATUS"]
DICTIONARY_DIR = Path(__file__).resolve().parents[4] / "telemetry_defs" / "dictionary"


def hk(seq: int, uptime: int) -> PusTm:
    values: dict[str, Any] = {p.name: 0 for p in STATUS.parameters}
    values["UPTIME"] = uptime
    data = D.encode_housekeeping(STATUS.sid, values)
    return PusTm(D.apid, 3, 25, data, seq, time=CdsTime.from_unix(1_795_600_800.0 + seq))


def frame(vcid: int, count: int) -> TmFrame:
    return TmFrame(500, vcid, count, count, 0, bytes(1103), 0x01000000)


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    with Archive(tmp_path, D) as a:
        yield a


def owned(archive: Archive | None, **options: Any) -> OwnedLink:
    """A link not started (its port unread): the test feeds its sinks itself."""
    port = serial.serial_for_url("loop://", timeout=0.05)
    return OwnedLink("fm1", LinkSession(port), D, archive, **options)


def discard(link: OwnedLink) -> None:
    if link.gaps is not None:
        link.gaps.close()
    link.session.port.close()


def arrive(link: OwnedLink, vcid: int, tm: PusTm) -> None:
    """What the session does with a frame on `vcid` completing `tm`: frame sinks, then packet
    sinks."""
    link._on_frame(frame(vcid, 1), 1.0)
    for sink in link.session.delivery._packet_sinks:
        sink(tm, tm.pack(), 2.0)


def test_packets_are_archived_with_their_channel_and_retrieved_ones_are_not_latest(
    archive: Archive,
) -> None:
    link = owned(archive, ask_dictionary=True)
    assert link.gaps is not None
    arrive(link, 0, hk(5, uptime=500))
    arrive(link, 1, hk(2, uptime=200))  # retrieved: older
    assert [(r.vcid, PusTm.unpack(r.raw).seq_count) for r in archive.packets()] == [(0, 5), (1, 2)]
    assert link.value("UPTIME") == (500, 2.0)
    discard(link)


def test_one_off_links_find_no_gaps_the_stations_do_and_either_can_be_told(
    archive: Archive,
) -> None:
    for options, recovers in (
        ({}, False),
        ({"ask_dictionary": True}, True),
        ({"recover_gaps": True}, True),
        ({"ask_dictionary": True, "recover_gaps": False}, False),
    ):
        link = owned(archive, **options)
        assert (link.gaps is not None) is recovers, options
        discard(link)
    link = owned(None, ask_dictionary=True)  # no archive: nothing to repair
    assert link.gaps is None
    discard(link)


def test_the_recovery_sends_as_the_ground_station_through_the_queue(archive: Archive) -> None:
    link = owned(archive, recover_gaps=True)
    assert not link.takes_commands()  # no frame yet: the recovery would not send
    command = D.command("STORE_RETRIEVE_RANGE")
    record = link._send_as_station(
        command.service, command.subtype, command.encode({"store": 1, "start": 5, "end": 9})
    )
    assert [item.record for item in link.queued()] == [record]
    (history,) = archive.commands()
    assert (history.client, history.name) == ("ground station", "STORE_RETRIEVE_RANGE")
    assert history.arguments == "store=ALL start=1970-01-01T00:00:05Z end=1970-01-01T00:00:09Z"
    discard(link)


def test_a_dictionary_without_packet_stores_means_no_recovery(
    archive: Archive, tmp_path: Path
) -> None:
    """A payload configured with a dictionary from before ICD v2 keeps no packets to ask for:
    its link works as before."""
    old = tmp_path / "dictionary"
    shutil.copytree(DICTIONARY_DIR, old)
    (old / "storage.toml").unlink()
    dictionary = load_dictionary(old)
    port = serial.serial_for_url("loop://", timeout=0.05)
    link = OwnedLink("fm1", LinkSession(port), dictionary, archive, ask_dictionary=True)
    assert link.gaps is None
    port.close()
