"""The telemetry archive: real TM packets built with the shipped dictionary, stored, read back."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from groundsw import archive as archive_module
from groundsw.archive import ARCHIVE_FILE, Archive, ArchiveError
from spacelink.cdstime import CdsTime
from spacelink.spacepacket import PusTm
from spacelink.tmframe import TmFrame
from telemetry_defs.loader import default_dictionary
from telemetry_defs.model import Severity, UnknownName

D = default_dictionary()
STATUS = D.housekeeping["PAYLOAD_STATUS"]
ONBOARD = 1_795_600_800.25  # 2026-11-25T10:00:00.250Z, exact in CDS milliseconds
# PAYLOAD_STARTED's lifecycle arguments: the run before ended cleanly.
RESET = {"reset_reason": 1, "board_uptime": 120, "previous": ""}


def hk(seq: int = 0, onboard: float = ONBOARD, **values: int) -> PusTm:
    fields: dict[str, Any] = {p.name: 0 for p in STATUS.parameters}
    fields.update(UPTIME=1234, MODE=0, BOOT_COUNT=3, DISK_FREE=4000, CPU_PROCESS=500)
    fields.update(values)
    data = D.encode_housekeeping(STATUS.sid, fields)
    return PusTm(D.apid, 3, 25, data, seq_count=seq, time=CdsTime.from_unix(onboard))


def event(name: str, seq: int = 0, **values: Any) -> PusTm:
    severity, data = D.encode_event(name, values)
    return PusTm(D.apid, 5, int(severity), data, seq_count=seq, time=CdsTime.from_unix(ONBOARD))


def packet(name: str, seq: int = 0, **values: Any) -> PusTm:
    definition = D.packets[name]
    data = definition.layout.build(values)
    return PusTm(D.apid, definition.service, definition.subtype, data, seq_count=seq)


def put(archive: Archive, tm: PusTm, received_at: float) -> bytes:
    raw = tm.pack()
    archive.store(tm, raw, received_at)
    return raw


def committed_packets(data_dir: Path) -> int:
    """Packets another process would see now: a read-only connection of its own."""
    uri = f"file:{data_dir / ARCHIVE_FILE}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM packets").fetchone()[0])


@pytest.fixture
def archive(tmp_path: Path) -> Any:
    with Archive(tmp_path, D) as a:
        yield a


@pytest.fixture
def no_timed_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commit only on flush, close, a query or a full batch: no dependence on the clock."""
    monkeypatch.setattr(archive_module, "COMMIT_INTERVAL_S", 3600.0)


# -- packets ------------------------------------------------------------------------------------


def test_packets_come_back_with_identical_raw_octets_and_decoded_values(archive: Archive) -> None:
    sent = [
        hk(seq=1, CPU_PROCESS=960, MODE=1),
        event("PAYLOAD_STARTED", seq=2, boot_count=3, dictionary_hash=D.hash32, **RESET),
        packet("COMPLETION_SUCCESS", seq=3, tc_packet_id=0x1864, tc_sequence=7),
        packet(
            "ACCEPTANCE_FAILURE",
            seq=4,
            tc_packet_id=0x1864,
            tc_sequence=8,
            code=3,
            data=b"\x01\xff",
        ),
    ]
    raws = [put(archive, tm, 100.0 + i) for i, tm in enumerate(sent)]

    records = archive.packets()

    assert [r.raw for r in records] == raws
    assert [PusTm.unpack(r.raw) for r in records] == sent
    assert [r.received_at for r in records] == [100.0, 101.0, 102.0, 103.0]
    assert [(r.service, r.subtype) for r in records] == [(3, 25), (5, 1), (1, 7), (1, 2)]
    assert [r.name for r in records] == [
        "PAYLOAD_STATUS",
        "PAYLOAD_STARTED",
        "COMPLETION_SUCCESS",
        "ACCEPTANCE_FAILURE",
    ]
    assert all(r.error is None for r in records)
    assert records[0].decoded is not None and records[0].decoded["CPU_PROCESS"] == 960
    assert records[0].decoded["MODE"] == 1
    assert records[1].decoded == {"boot_count": 3, "dictionary_hash": D.hash32, **RESET}
    assert records[2].decoded == {"tc_packet_id": 0x1864, "tc_sequence": 7}
    # Octet strings are kept as hex in the decoded JSON.
    assert records[3].decoded == {
        "tc_packet_id": 0x1864,
        "tc_sequence": 8,
        "code": 3,
        "data": "01ff",
    }
    assert len({r.id for r in records}) == 4


def test_packets_filter_by_time_service_and_subtype(archive: Archive) -> None:
    put(archive, hk(), 100.0)
    put(archive, packet("COMPLETION_SUCCESS", tc_packet_id=1, tc_sequence=1), 101.0)
    put(archive, packet("ACCEPTANCE_SUCCESS", tc_packet_id=1, tc_sequence=2), 102.0)
    put(archive, packet("COMPLETION_SUCCESS", tc_packet_id=1, tc_sequence=3), 103.0)

    assert [r.received_at for r in archive.packets(since=102.0)] == [102.0, 103.0]
    assert [r.received_at for r in archive.packets(service=1)] == [101.0, 102.0, 103.0]
    completions = archive.packets(service=1, subtype=7)
    assert [r.decoded["tc_sequence"] for r in completions if r.decoded] == [1, 3]
    assert archive.packets(service=3, subtype=25, since=100.5) == []


def test_a_packet_the_dictionary_cannot_decode_is_kept_raw_with_the_reason(
    archive: Archive,
) -> None:
    unknown_sid = PusTm(D.apid, 3, 25, b"\x00\x63" + bytes(8), seq_count=1)
    unknown_type = PusTm(D.apid, 99, 1, b"zz", seq_count=2)
    too_short = PusTm(D.apid, 1, 7, b"\x18\x64\x00", seq_count=3)  # one octet missing
    raws = [
        put(archive, tm, 10.0 + i) for i, tm in enumerate((unknown_sid, unknown_type, too_short))
    ]

    records = archive.packets()

    assert [r.raw for r in records] == raws
    assert all(r.name is None and r.decoded is None for r in records)
    errors = [r.error or "" for r in records]
    assert "unknown structure ID 99" in errors[0]
    assert "TM[99,1] is not in the dictionary" in errors[1]
    assert errors[2].startswith("COMPLETION_SUCCESS") and "too few octets" in errors[2]
    # Nothing undecodable turns into samples or events.
    assert archive.parameter_samples("UPTIME") == []
    assert archive.events() == []


# -- parameter samples --------------------------------------------------------------------------


def test_samples_carry_engineering_values_limit_states_and_onboard_time(archive: Archive) -> None:
    put(archive, hk(CPU_PROCESS=960, CPU_SYSTEM=900, MEMORY_USED=500, DISK_FREE=100, MODE=2), 50.0)

    def only(name: str) -> archive_module.Sample:
        (sample,) = archive.parameter_samples(name)
        return sample

    cpu = only("CPU_PROCESS")
    assert (cpu.raw, cpu.engineering, cpu.limit_state) == (960, pytest.approx(96.0), "red")
    assert (cpu.received_at, cpu.onboard_time) == (50.0, ONBOARD)
    system = only("CPU_SYSTEM")
    assert (system.engineering, system.limit_state) == (pytest.approx(90.0), "yellow")
    memory = only("MEMORY_USED")
    assert (memory.engineering, memory.limit_state) == (pytest.approx(50.0), "nominal")
    disk = only("DISK_FREE")  # uncalibrated, low limits
    assert (disk.raw, disk.engineering, disk.limit_state) == (100, 100.0, "red")
    mode = only("MODE")
    assert (mode.raw, mode.engineering, mode.limit_state) == (2, 2.0, "nominal")
    # Names are looked up as operators type them.
    assert archive.parameter_samples("cpu_process") == [cpu]


def test_samples_are_filtered_by_since_and_until_inclusive_and_ordered(archive: Archive) -> None:
    for i in range(10):
        put(archive, hk(seq=i, UPTIME=i), 100.0 + i)

    def uptimes(**span: float) -> list[int]:
        return [s.raw for s in archive.parameter_samples("UPTIME", **span)]

    assert uptimes() == list(range(10))
    assert uptimes(since=103.0) == [3, 4, 5, 6, 7, 8, 9]
    assert uptimes(until=102.0) == [0, 1, 2]
    assert uptimes(since=103.0, until=106.0) == [3, 4, 5, 6]
    assert uptimes(since=103.5, until=103.9) == []


def test_parameter_values_report_gives_samples(archive: Archive) -> None:
    report = packet("PARAM_VALUES", values=[{"id": 5, "value": 970}, {"id": 100, "value": 30}])
    put(archive, report, 7.0)

    (cpu,) = archive.parameter_samples("CPU_PROCESS")
    assert (cpu.raw, cpu.engineering, cpu.limit_state) == (970, pytest.approx(97.0), "red")
    (level,) = archive.parameter_samples("LOG_LEVEL")
    assert level.raw == 30
    assert archive.parameter_samples("UPTIME") == []


def test_samples_of_an_unknown_parameter_name_the_parameter(archive: Archive) -> None:
    with pytest.raises(UnknownName, match=r"no parameter 'CPU_PROCES' .*did you mean CPU_PROCESS"):
        archive.parameter_samples("CPU_PROCES")


# -- events -------------------------------------------------------------------------------------


def store_events(archive: Archive) -> None:
    put(archive, event("PAYLOAD_STARTED", boot_count=3, dictionary_hash=0x12AB, **RESET), 10.0)
    put(archive, event("FARM_LOCKOUT", vr=4, ns=99), 20.0)  # HIGH
    put(archive, hk(), 25.0)
    put(archive, event("PARAMETER_SET", id=100), 30.0)  # LOW
    put(archive, event("PAYLOAD_STOPPING", reason=1), 40.0)  # MEDIUM


def test_events_with_severity_and_time_filters(archive: Archive) -> None:
    store_events(archive)

    every = archive.events()
    assert [(e.name, e.severity) for e in every] == [
        ("PAYLOAD_STARTED", Severity.INFO),
        ("FARM_LOCKOUT", Severity.HIGH),
        ("PARAMETER_SET", Severity.LOW),
        ("PAYLOAD_STOPPING", Severity.MEDIUM),
    ]
    assert every[0].text == (
        "boot_count=3 dictionary_hash=0x000012AB reset_reason=CLEAN board_uptime=120 previous="
    )
    assert every[1].text == "vr=4 ns=99"
    assert every[3].text == "reason=SIGNAL"
    assert every[0].received_at == 10.0 and every[0].onboard_time == ONBOARD

    serious = archive.events(min_severity=int(Severity.MEDIUM))
    assert [e.name for e in serious] == ["FARM_LOCKOUT", "PAYLOAD_STOPPING"]
    assert [e.name for e in archive.events(since=20.0)] == [
        "FARM_LOCKOUT",
        "PARAMETER_SET",
        "PAYLOAD_STOPPING",
    ]
    assert [e.name for e in archive.events(since=20.0, min_severity=4)] == ["FARM_LOCKOUT"]


def test_events_after_gives_newer_events_in_arrival_order(archive: Archive) -> None:
    assert archive.last_event_id() == 0
    assert archive.events_after(0) == []
    store_events(archive)

    every = archive.events_after(0)
    assert [e.name for e in every] == [
        "PAYLOAD_STARTED",
        "FARM_LOCKOUT",
        "PARAMETER_SET",
        "PAYLOAD_STOPPING",
    ]
    assert [e.id for e in every] == sorted(e.id for e in every)
    assert archive.last_event_id() == every[-1].id
    assert [e.name for e in archive.events_after(every[1].id)] == [
        "PARAMETER_SET",
        "PAYLOAD_STOPPING",
    ]
    assert archive.events_after(archive.last_event_id()) == []
    put(archive, event("FARM_UNLOCKED", vr=5), 50.0)
    assert [e.name for e in archive.events_after(every[-1].id)] == ["FARM_UNLOCKED"]


# -- commits, files and several processes -------------------------------------------------------


@pytest.mark.usefixtures("no_timed_commit")
def test_a_batch_is_invisible_to_others_until_flushed(tmp_path: Path) -> None:
    with Archive(tmp_path, D) as writer:
        for i in range(5):
            put(writer, hk(seq=i), 100.0 + i)
        assert committed_packets(tmp_path) == 0
        writer.flush()
        assert committed_packets(tmp_path) == 5


@pytest.mark.usefixtures("no_timed_commit")
def test_a_full_batch_commits_by_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_module, "COMMIT_PACKETS", 3)
    with Archive(tmp_path, D) as writer:
        put(writer, hk(seq=0), 1.0)
        put(writer, hk(seq=1), 2.0)
        assert committed_packets(tmp_path) == 0
        put(writer, hk(seq=2), 3.0)
        assert committed_packets(tmp_path) == 3


@pytest.mark.usefixtures("no_timed_commit")
def test_close_commits_and_a_reopened_archive_has_everything(tmp_path: Path) -> None:
    writer = Archive(tmp_path, D)
    raws = [put(writer, hk(seq=i, UPTIME=i), 100.0 + i) for i in range(3)]
    raws.append(put(writer, event("FARM_LOCKOUT", vr=1, ns=2), 103.0))
    writer.close()
    assert committed_packets(tmp_path) == 4

    with Archive(tmp_path, D) as reopened:
        assert [r.raw for r in reopened.packets()] == raws
        assert [s.raw for s in reopened.parameter_samples("UPTIME")] == [0, 1, 2]
        assert [e.name for e in reopened.events()] == ["FARM_LOCKOUT"]
        first_ids = [r.id for r in reopened.packets()]
        put(reopened, hk(seq=9), 200.0)
        assert reopened.packets(since=200.0)[0].id > max(first_ids)


def test_writer_and_reader_on_one_file_in_wal_mode(tmp_path: Path) -> None:
    """`tm live` archiving while `tm query` reads the same directory."""
    with Archive(tmp_path, D) as writer:
        put(writer, hk(seq=0, UPTIME=10), 100.0)
        put(writer, event("PAYLOAD_STARTED", boot_count=1, dictionary_hash=1, **RESET), 101.0)
        writer.flush()
        with Archive(tmp_path, D) as reader:
            assert [s.raw for s in reader.parameter_samples("UPTIME")] == [10]
            seen = reader.last_event_id()
            assert seen > 0

            put(writer, hk(seq=1, UPTIME=11), 102.0)
            put(writer, event("FARM_LOCKOUT", vr=1, ns=2), 103.0)
            writer.flush()

            assert [s.raw for s in reader.parameter_samples("UPTIME")] == [10, 11]
            assert [e.name for e in reader.events_after(seen)] == ["FARM_LOCKOUT"]
            assert len(reader.packets()) == 4
            # The reader does not stop the writer from going on.
            put(writer, hk(seq=2, UPTIME=12), 104.0)
            writer.flush()
            assert [s.raw for s in reader.parameter_samples("UPTIME", since=104.0)] == [12]
    with sqlite3.connect(tmp_path / ARCHIVE_FILE) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.usefixtures("no_timed_commit")
def test_a_reader_opens_while_the_writer_holds_an_uncommitted_batch(tmp_path: Path) -> None:
    with Archive(tmp_path, D) as writer:
        put(writer, hk(seq=0, UPTIME=10), 100.0)
        writer.flush()
        # The tail of a burst: stored, then the link goes quiet (end of pass).
        put(writer, hk(seq=1, UPTIME=11), 101.0)
        with Archive(tmp_path, D) as reader:
            assert [s.raw for s in reader.parameter_samples("UPTIME")][:1] == [10]


def test_a_batch_left_open_by_a_quiet_link_is_committed_by_the_flusher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_module, "COMMIT_INTERVAL_S", 0.1)
    with Archive(tmp_path, D) as writer:
        put(writer, hk(seq=0, UPTIME=10), 100.0)
        writer.flush()
        put(writer, hk(seq=1, UPTIME=11), 101.0)  # the last packet before the link goes quiet
        deadline = time.monotonic() + 5
        seen: list[Any] = []
        while time.monotonic() < deadline and len(seen) < 2:
            with sqlite3.connect(tmp_path / ARCHIVE_FILE) as db:
                seen = db.execute("SELECT raw FROM samples WHERE name = 'UPTIME'").fetchall()
            time.sleep(0.05)
        assert [json.loads(r[0]) for r in seen] == [10, 11]


# -- files that are not archives ----------------------------------------------------------------


def test_a_file_that_is_not_sqlite_gives_archive_error(tmp_path: Path) -> None:
    (tmp_path / ARCHIVE_FILE).write_bytes(b"this is not a database\n" * 400)

    with pytest.raises(ArchiveError) as caught:
        Archive(tmp_path, D)

    message = str(caught.value)
    assert message.startswith(f"cannot use the archive {tmp_path / ARCHIVE_FILE}: ")
    assert "not a database" in message
    assert caught.value.__suppress_context__  # no chained sqlite3 traceback


def test_a_data_directory_that_is_a_file_gives_archive_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("x")

    with pytest.raises(ArchiveError, match=r"cannot use the archive .*data/archive\.sqlite"):
        Archive(not_a_dir, D)


def test_a_damaged_archive_gives_archive_error_when_read(tmp_path: Path) -> None:
    with Archive(tmp_path, D) as a:
        for i in range(300):
            put(a, hk(seq=i % 0x4000), float(i))
    path = tmp_path / ARCHIVE_FILE
    content = bytearray(path.read_bytes())
    assert len(content) > 4 * 4096
    # Keep the header and schema page, wreck the table pages.
    content[3 * 4096 :] = b"\xa5" * (len(content) - 3 * 4096)
    path.write_bytes(bytes(content))

    def open_and_read() -> None:
        damaged = Archive(tmp_path, D)  # may open: it reads only the schema page
        try:
            damaged.packets()
        finally:
            damaged.close()

    with pytest.raises(ArchiveError, match="malformed"):
        open_and_read()


def test_frames_are_archived_with_their_octets_but_idle_ones_without(archive: Archive) -> None:
    data = TmFrame(500, 0, 3, 9, 0, bytes(1103), 0x01000500)
    idle = TmFrame(500, 7, 4, 1, 0x7FE, bytes(1103), 0x01000501)
    archive.store_frame(data, 100.0)
    archive.store_frame(idle, 101.0)
    frames = archive.frames()
    assert [(f.received_at, f.vcid, f.mc_count, f.vc_count, f.clcw) for f in frames] == [
        (100.0, 0, 3, 9, 0x01000500),
        (101.0, 7, 4, 1, 0x01000501),
    ]
    assert frames[0].raw == data.pack() and frames[1].raw is None
    assert [f.vcid for f in archive.frames(since=100.5)] == [7]
