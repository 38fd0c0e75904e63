"""ST[11] through the real processes: time-tagged TCs built by an independent library
(tmtccmd) accepted and released on time by the payload's clock, with the released command's
own verification reports; the schedule surviving kill -9 between insertion and release; the
reports of the schedule read with an independent packet decoder (spacepackets); the released
command's reports kept by the packet store when nobody hears them; `groundsw schedule`."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ecss import PusTelecommand, PusTelemetry
from tmtccmd.pus.s11_tc_sched import TcSchedReqId
from tmtccmd.pus.tc.s11_tc_sched import create_time_tagged_cmd

from hil.bench import Bench
from hil.impairments import Impairments
from hil.testapi import GroundTestApi
from spacelink.cdstime import CdsTime
from spacelink.pus import VERIFICATION_SERVICE, VerificationReport
from spacelink.pus_schedule import (
    TimeTaggedTc,
    decode_detail_report,
    decode_summary,
    encode_activities,
)
from spacelink.spacepacket import PusTc, PusTm, RequestId
from telemetry_defs.loader import default_dictionary
from tests.harness import open_test_api, run_tool
from tests.hil.onboard import with_quick_idle

D = default_dictionary()
# Release accuracy asked for: within 100 ms of the release time, by the payload's clock.
ACCURACY_S = 0.100
# How far ahead activities are put: the TC[11,4] must arrive (one frame at 115200 baud) and
# clear the payload's time margin (1 s by default) first.
LEAD_S = 2.5


def cds(at: float) -> CdsShortTimestamp:
    """spacepackets' CDS short time of a UNIX time, to the millisecond (its own conversion from
    a datetime can land a millisecond short)."""
    ours = CdsTime.from_unix(at)
    return CdsShortTimestamp(ccsds_days=ours.days, ms_of_day=ours.ms_of_day)


def tagged(at: float, seq_count: int, source_id: int, service: int = 17, subtype: int = 1) -> bytes:
    """TC[11,4] application data as tmtccmd 8.2 builds it: release time, then the whole TC."""
    inner = PusTelecommand(
        service=service,
        message_subtype=subtype,
        apid=D.apid,
        seq_count=seq_count,
        source_id=source_id,
    )
    return bytes(create_time_tagged_cmd(cds(at).pack(), inner, apid=D.apid).app_data)


class Reports:
    """Every verification report on the downlink, whichever request it answers (the ground's
    session keeps only those of the commands it sent itself)."""

    def __init__(self, api: GroundTestApi) -> None:
        self.seen: list[tuple[VerificationReport, PusTm]] = []
        self._cond = threading.Condition()
        api.session.add_packet_sink(self._take)

    def _take(self, tm: PusTm, raw: bytes, wall: float) -> None:
        if tm.service == VERIFICATION_SERVICE:
            with self._cond:
                self.seen.append((VerificationReport.unpack(tm.subtype, tm.source_data), tm))
                self._cond.notify_all()

    def of(self, request: RequestId, count: int, timeout: float) -> list[tuple[int, float]]:
        """(subtype, payload time) of the first `count` reports for `request`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    (tm.subtype, tm.time.to_unix())
                    for report, tm in self.seen
                    if report.request_id == request
                ]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._cond.wait(left)


def parse_utc(text: str) -> float:
    """A time as groundsw shows it (2026-12-07T10:00:00.250Z)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def released(api: GroundTestApi, request_id: int, since: float, timeout: float) -> Any:
    return api.await_named_event(
        "SCHEDULE_ACTIVITY_RELEASED",
        lambda v: v["request_id"] == request_id,
        since=since,
        timeout=timeout,
    )


def test_a_tmtccmd_time_tagged_ping_is_released_on_time_with_its_reports(bench: Bench) -> None:
    with open_test_api(bench.ground_port, bench.baud) as api:
        reports = Reports(api)
        source = api.session.source_id
        since = time.monotonic()
        at = time.time() + LEAD_S
        api.send_and_assert(11, 4, tagged(at, 1000, source))
        request_id = TcSchedReqId(apid=D.apid, seq_cnt=1000, src_id=source).id_u64
        event = released(api, request_id, since, timeout=LEAD_S + 10)
        reply = api.await_tm(
            lambda tm: (tm.service, tm.subtype) == (17, 2) and tm.destination_id == source,
            since=since,
            timeout=5,
        )
        stages = reports.of(RequestId(0x1800 | D.apid, 0xC000 | 1000), 3, timeout=5)
    # The released ping ran as a ground TC does: acceptance, start, completion and its reply.
    assert [subtype for subtype, _ in stages] == [1, 3, 7], stages
    late = [t - CdsTime.from_unix(at).to_unix() for _, t in stages] + [
        reply.tm.time.to_unix() - CdsTime.from_unix(at).to_unix()
    ]
    print(f"\nrelease: event late_ms={event.values['late_ms']}, reports {late} s after")
    assert event.values["late_ms"] <= ACCURACY_S * 1000
    assert all(0 <= x <= ACCURACY_S for x in late), late


def test_the_schedule_survives_kill_9_between_insert_and_release(
    make_bench: Any, tmp_path: Path
) -> None:
    bench: Bench = make_bench(baud=115200)
    with open_test_api(bench.ground_port, bench.baud) as api:
        source = api.session.source_id
        at = time.time() + 8.0
        # The counted form (N = 2), the second activity's time beyond the test's end.
        later = at + 3600
        first = tagged(at, 2001, source)
        second = tagged(later, 2002, source)
        data = (2).to_bytes(2, "big") + first + second
        api.send_and_assert(11, 4, data)
        assert bench.flight is not None
        killed_pid = bench.flight.pid
        killed = time.monotonic()
        os.kill(killed_pid, signal.SIGKILL)
        api.await_named_event("PAYLOAD_STARTED", since=killed, timeout=30)
        api.session.initiate()
        assert bench.flight is not None and bench.flight.pid != killed_pid
        request_id = TcSchedReqId(apid=D.apid, seq_cnt=2001, src_id=source).id_u64
        event = released(api, request_id, killed, timeout=20)
        assert event.values["late_ms"] <= ACCURACY_S * 1000
        # What is left, read with the reports: the second activity, as inserted.
        summary = api.query(11, 17, b"", (11, 13))
        detail = api.query(11, 16, b"", (11, 10))
    entries = decode_summary(PusTelemetry.unpack(summary.raw, timestamp_len=7).source_data)
    assert [e.request_id.seq_count for e in entries] == [2002]
    assert entries[0].release.to_unix() == pytest.approx(
        CdsTime.from_unix(later).to_unix(), abs=0.001
    )
    activities = decode_detail_report(PusTelemetry.unpack(detail.raw, timestamp_len=7).source_data)
    assert [a.packet for a in activities] == [second[7:]]


def ping(seq_count: int, octets: int) -> bytes:
    """A TC[17,1] carrying `octets` of data (refused when released: never released here)."""
    return PusTc(D.apid, 17, 1, bytes(octets), seq_count=seq_count, source_id=9).pack()


def groundsw(bench: Bench, data: Path, *args: str) -> tuple[int, str, str]:
    result = run_tool(
        "groundsw", "--port", bench.ground_port, "--baud", str(bench.baud),
        "--data-dir", str(data), *args,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    said = [line for line in result.stdout.splitlines() if not line.startswith("link up on ")]
    return result.returncode, "\n".join(said), result.stderr.strip()


def test_groundsw_schedule_inserts_lists_shifts_deletes_and_refuses_in_one_sentence(
    make_bench: Any, tmp_path: Path
) -> None:
    # Ten groundsw commands, each a new session that waits for the payload's CLCW: an idle frame
    # every 0.14 s (with_quick_idle) instead of every second, and the line at 921600 baud.
    bench: Bench = make_bench(baud=921600, flight_args=with_quick_idle(tmp_path, 921600))
    data = tmp_path / "ground"
    code, out, _ = groundsw(
        bench, data, "schedule", "insert", "--at", "+1h", "HK_GENERATE", "sids=SCHEDULE_STATUS"
    )
    assert code == 0, out
    request_id = out.splitlines()[-1]
    assert request_id.startswith("0x") and "HK_GENERATE TC[3,27] scheduled for" in out
    # Five more of some 970 octets each, an hour later: the detail report comes in two TM[11,10]
    # (4096 octets of source data at most each), and list shows every activity of both.
    later = [
        TimeTaggedTc(CdsTime.from_unix(time.time() + 7200 + i), ping(6000 + i, 950))
        for i in range(5)
    ]
    with open_test_api(bench.ground_port, bench.baud) as api:
        for activity in later:
            api.command_and_assert("SCHEDULE_INSERT", activities=encode_activities([activity]))
    code, out, _ = groundsw(bench, data, "schedule", "list")
    assert code == 0 and out.splitlines()[0] == "6 scheduled", out
    assert f"{request_id}  TC[3,27] HK_GENERATE sids=[14]" in out.splitlines()[1], out
    assert [line.split()[1] for line in out.splitlines()[2:]] == [
        str(a.request_id) for a in later
    ], out
    before = out.split()[2]
    code, out, _ = groundsw(bench, data, "schedule", "shift", request_id, "-60")
    assert code == 0, out
    code, out, _ = groundsw(bench, data, "schedule", "summary")
    assert code == 0 and request_id in out
    after = out.splitlines()[1].split()[0]
    assert parse_utc(before) - parse_utc(after) == pytest.approx(60, abs=0.001)
    # Refusals: one sentence, a non-zero exit, nothing sent for a typo.
    code, _, err = groundsw(bench, data, "schedule", "shift", "--all", "-7200")
    assert code != 0 and "SCHEDULE_TOO_EARLY" in err and len(err.splitlines()) == 1, err
    code, _, err = groundsw(bench, data, "schedule", "delete", "1:100:9")
    assert code != 0 and "SCHEDULE_UNKNOWN_REQUEST" in err and len(err.splitlines()) == 1, err
    code, _, err = groundsw(bench, data, "schedule", "insert", "--at", "+5s", "NO_SUCH", "x=1")
    assert code == 2 and err == "groundsw: no command 'NO_SUCH' in the dictionary", err
    code, out, _ = groundsw(bench, data, "schedule", "delete", request_id)
    assert code == 0, out
    code, out, _ = groundsw(bench, data, "schedule", "reset")
    assert code == 0 and out.strip() == "schedule reset", out


def test_reports_of_a_release_nobody_heard_come_back_from_the_packet_store(bench: Bench) -> None:
    with open_test_api(bench.ground_port, bench.baud) as api:
        reports = Reports(api)
        source = api.session.source_id
        at = time.time() + LEAD_S
        api.send_and_assert(11, 4, tagged(at, 3000, source))
        # The downlink is lost around the release: the payload sends to nobody.
        bench.link.set_impairments("downlink", Impairments(drop_rate=0.999999))
        time.sleep(max(0.0, at - time.time()) + 1.0)
        bench.link.set_impairments("downlink", Impairments())
        request = RequestId(0x1800 | D.apid, 0xC000 | 3000)
        assert reports.of(request, 1, timeout=0.5) == []
        events = D.enums["PacketStoreId"].values["EVENTS"]
        api.command_and_assert(
            "STORE_RETRIEVE_RANGE", store=events, start=int(at) - 1, end=int(at) + 2
        )
        stages = reports.of(request, 3, timeout=15)
    assert [subtype for subtype, _ in stages] == [1, 3, 7], stages
    assert all(0 <= t - CdsTime.from_unix(at).to_unix() <= ACCURACY_S for _, t in stages)


@pytest.mark.slow
def test_a_burst_of_activities_each_released_within_100_ms(bench: Bench) -> None:
    """Forty-five pings 50 ms apart, in one counted TC[11,4] (a frame's worth) of tmtccmd-built
    activities."""
    count, spacing = 45, 0.05
    with open_test_api(bench.ground_port, bench.baud) as api:
        source = api.session.source_id
        since = time.monotonic()
        start = time.time() + LEAD_S + 1
        times = [CdsTime.from_unix(start + i * spacing).to_unix() for i in range(count)]
        parts = [tagged(t, 4000 + i, source) for i, t in enumerate(times)]
        api.send_and_assert(11, 4, count.to_bytes(2, "big") + b"".join(parts))
        deadline = time.monotonic() + LEAD_S + 20
        replies: list[PusTm] = []
        while len(replies) < count and time.monotonic() < deadline:
            time.sleep(0.2)
            replies = [
                r.tm
                for r in api.tm_history(17, 2)
                if r.received_at >= since and r.tm.destination_id == source
            ]
    assert len(replies) == count, len(replies)
    # One reply each; they arrive in the order of release.
    late = [tm.time.to_unix() - t for tm, t in zip(replies, times, strict=True)]
    print(f"\n{count} releases: replies {min(late) * 1000:.0f} to {max(late) * 1000:.0f} ms late")
    assert all(0 <= x <= ACCURACY_S for x in late), late
