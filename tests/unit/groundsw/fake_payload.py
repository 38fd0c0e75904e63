"""An in-process payload for the ground's unit tests: service 128, as much of 129 as model
uploads need and the reports of 11, answering at once, with losses of chunks, reports and replies
on demand."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from typing import Any

from groundsw.session import CommandEvent, CommandRecord, EventKind
from groundsw.transfer import plan_chunks
from spacelink.icd import PAYLOAD_APID, TC_MAX_DATA_LENGTH
from spacelink.pus import Stage, VerificationReport
from spacelink.pus_schedule import SummaryEntry, TimeTaggedTc, encode_activities, encode_summary
from spacelink.ranges import RangeSet
from spacelink.spacepacket import AckFlags, PusTc, PusTm
from telemetry_defs.loader import default_dictionary
from tests.unit.groundsw.fakes import FakeTelemetry

D = default_dictionary()


class FakePayload(FakeTelemetry):
    """Service 128 in memory, answering at once, with chunk and report losses on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.source_id = 7
        self.error: BaseException | None = None
        self.files: dict[str, bytes] = {}
        self.uploads: dict[int, dict[str, Any]] = {}
        self.seq = 0
        self.order = 0
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.lose_chunk: Callable[[int], bool] = lambda offset: False
        self.corrupt_chunk: Callable[[int], bool] = lambda offset: False
        self.lose_download_chunk: Callable[[int], bool] = lambda offset: False
        self.corrupt_stored_once = False
        self.download_chunk = 700
        # Requests, by command, whose every answer (reports, replies, data) the downlink loses:
        # the payload still executes them (their frames were acknowledged).
        self.lost_answers: dict[str, int] = {}
        self._muted = False
        self.models: dict[tuple[str, int], bytes] = {}
        self.signature = "x float32[?,4] -> y float32[?,2]"
        # Job reports by ID (JOB_REPORT values) and parameter values by ID.
        self.jobs: dict[int, dict[str, Any]] = {}
        self.parameters: dict[int, Any] = {}
        # An unauthenticated link: a whole TC frame's data field per packet.
        self.max_packet_octets = TC_MAX_DATA_LENGTH
        # Message type counters, per (service, subtype), as the payload stamps its TM.
        self.type_counters: dict[tuple[int, int], int] = {}
        # Told the name of each TM packet sent (a progress report: "PROGRESS"): True loses it
        # on the downlink (the payload sent it: its counter moves on).
        self.lose_tm: Callable[[str], bool] = lambda name: False
        # The time-based schedule, in release order, reported this many activities a packet.
        self.scheduled: list[TimeTaggedTc] = []
        self.schedule_per_report = 3
        self._record: CommandRecord | None = None
        # Behind a ground station whose link is down: each request is queued there, unsent.
        self.held = False

    # PayloadLink (subscriptions: FakeTelemetry)
    def command(
        self, service: int, subtype: int, data: bytes = b"", ack: AckFlags = AckFlags.ALL
    ) -> CommandRecord:
        self.seq += 1
        tc = PusTc(PAYLOAD_APID, service, subtype, data, self.seq, self.source_id, ack)
        record = CommandRecord(tc, 0.0)
        cmd = D.command_for(service, subtype)
        assert cmd is not None
        values = cmd.decode(data)
        self.sent.append((cmd.name, values))
        if self.held:
            queued = CommandEvent(EventKind.QUEUED, 0.0, self._next(), reason="link down")
            self._event(record, queued)
            return record
        self._event(record, CommandEvent(EventKind.FRAME_ACKNOWLEDGED, 0.0, self._next()))
        self._muted = bool(self.lost_answers.get(cmd.name))
        if self._muted:
            self.lost_answers[cmd.name] -= 1
        self._record = record
        try:
            self._execute(record, cmd.name, values, ack)
        finally:
            self._muted = False
            self._record = None
        return record

    def _execute(
        self, record: CommandRecord, name: str, values: dict[str, Any], ack: AckFlags
    ) -> None:
        if ack & AckFlags.ACCEPTANCE:
            self._report(record, Stage.ACCEPTANCE)
        failure = getattr(self, "do_" + name.lower())(values)
        if failure is not None:
            code = D.failure_named(failure[0]).code
            self._report(record, Stage.COMPLETION, code, failure[1].encode())
        elif ack & AckFlags.COMPLETION:
            self._report(record, Stage.COMPLETION)

    def _next(self) -> int:
        self.order += 1
        return self.order

    def _event(self, record: CommandRecord, event: CommandEvent) -> None:
        record._add(event)

    def _report(
        self,
        record: CommandRecord,
        stage: Stage,
        code: int | None = None,
        data: bytes = b"",
        step: int | None = None,
    ) -> None:
        if self._muted:
            return
        report = VerificationReport(stage, code is None, record.request_id, step, code, data)
        self._event(record, CommandEvent(EventKind.REPORT, 0.0, self._next(), report))

    def progress(self, step: int) -> None:
        """A progress success report of the command being executed, if it asked for one."""
        record = self._record
        assert record is not None, "progress() of a command being executed"
        if record.tc.ack_flags & AckFlags.PROGRESS and not self.lose_tm("PROGRESS"):
            self._report(record, Stage.PROGRESS, step=step)

    def tm(self, packet: str, values: dict[str, Any]) -> None:
        p = D.packets[packet]
        key = (p.service, p.subtype)
        counter = self.type_counters.get(key, 0)
        self.type_counters[key] = (counter + 1) & 0xFFFF
        if self._muted or self.lose_tm(packet):
            return
        tm = PusTm(PAYLOAD_APID, p.service, p.subtype, p.layout.build(values), 0, counter, 7)
        self.publish(tm, self._next())

    # service 128
    def _upload_report(self, tid: int) -> None:
        u = self.uploads[tid]
        missing = u["got"].missing(len(u["data"]))
        self.tm(
            "FILE_UPLOAD_REPORT",
            {
                "transfer_id": tid,
                "state": 1 if not missing else 0,
                "size": len(u["data"]),
                "received": u["got"].covered_bytes,
                "missing_ranges": len(missing),
                "missing_offsets": [o for o, _ in missing[:64]],
                "missing_lengths": [n for _, n in missing[:64]],
            },
        )

    def do_file_upload_begin(self, v: dict[str, Any]) -> tuple[str, str] | None:
        if v["name"] in self.files:
            return "FILE_EXISTS", f"{v['name']} is stored already"
        tid = v["transfer_id"]
        if tid not in self.uploads:
            self.uploads[tid] = {
                "name": v["name"],
                "sha": v["sha256"],
                "data": bytearray(v["size"]),
                "got": RangeSet(),
            }
        self._upload_report(tid)
        return None

    def do_file_upload_chunk(self, v: dict[str, Any]) -> tuple[str, str] | None:
        if self.lose_chunk(v["offset"]):
            return None
        u = self.uploads[v["transfer_id"]]
        data = bytearray(v["data"])
        if self.corrupt_chunk(v["offset"]):
            data[0] ^= 0xFF
        u["data"][v["offset"] : v["offset"] + len(data)] = data
        u["got"].add(v["offset"], len(data))
        return None

    def do_file_upload_status(self, v: dict[str, Any]) -> tuple[str, str] | None:
        self._upload_report(v["transfer_id"])
        return None

    def do_file_upload_commit(self, v: dict[str, Any]) -> tuple[str, str] | None:
        u = self.uploads[v["transfer_id"]]
        if hashlib.sha256(u["data"]).digest() != u["sha"]:
            u["got"] = RangeSet()
            return "CHECKSUM_MISMATCH", "the octets received do not match"
        self.files[u["name"]] = bytes(u["data"])
        del self.uploads[v["transfer_id"]]
        return None

    # service 129, as far as registration goes
    def do_model_register(self, v: dict[str, Any]) -> tuple[str, str] | None:
        if (v["model"], v["version"]) in self.models:
            return "MODEL_EXISTS", f"model {v['model']} version {v['version']} exists"
        content = self.files.pop(v["file"], None)
        if content is None:
            return "NO_SUCH_FILE", f"no file {v['file']}"
        self.models[(v["model"], v["version"])] = content
        self._model_report(v["model"], v["version"])
        return None

    def do_model_info(self, v: dict[str, Any]) -> tuple[str, str] | None:
        versions = [n for m, n in self.models if m == v["model"]]
        version = v["version"] or max(versions, default=0)
        if (v["model"], version) not in self.models:
            return "UNKNOWN_MODEL", f"no model {v['model']} version {v['version']}"
        self._model_report(v["model"], version)
        return None

    def _model_report(self, model: str, version: int) -> None:
        content = self.models[(model, version)]
        self.tm("MODEL_REPORT", {
            "model": model, "version": version, "size": len(content),
            "sha256": hashlib.sha256(content).digest(), "opset": 13, "weights": 2,
            "tolerance": 0.0, "copies": 2, "signature": self.signature,
        })  # fmt: skip

    def do_file_download(self, v: dict[str, Any]) -> tuple[str, str] | None:
        data = self.files.get(v["name"])
        if data is None:
            return "NO_SUCH_FILE", f"no file {v['name']}"
        if self.corrupt_stored_once:
            self.corrupt_stored_once = False
            data = b"X" + data[1:]
        length = v["length"] or len(data) - v["offset"]
        self.tm(
            "FILE_DOWNLOAD_START",
            {
                "download_id": v["download_id"],
                "size": len(data),
                "sha256": hashlib.sha256(self.files[v["name"]]).digest(),
                "offset": v["offset"],
                "length": length,
                "name": v["name"],
            },
        )
        for offset, n in plan_chunks([(v["offset"], length)], self.download_chunk):
            piece = data[offset : offset + n]
            if self.lose_download_chunk(offset):
                continue
            self.tm(
                "FILE_DOWNLOAD_CHUNK",
                {
                    "download_id": v["download_id"],
                    "offset": offset,
                    "crc32": zlib.crc32(piece),
                    "data": piece,
                },
            )
        return None

    # services 130 and 20, as far as following a job goes
    def do_job_status(self, v: dict[str, Any]) -> tuple[str, str] | None:
        if v["job_id"] not in self.jobs:
            return "UNKNOWN_JOB", f"no job {v['job_id']}"
        self.tm("JOB_REPORT", self.jobs[v["job_id"]])
        return None

    def do_param_report(self, v: dict[str, Any]) -> tuple[str, str] | None:
        self.tm(
            "PARAM_VALUES", {"values": [{"id": i, "value": self.parameters[i]} for i in v["ids"]]}
        )
        return None

    # service 11, its reports of all activities: several packets, then how many (docs/schedule.md)
    def _schedule_parts(self) -> list[list[TimeTaggedTc]]:
        n = self.schedule_per_report
        return [self.scheduled[i : i + n] for i in range(0, len(self.scheduled), n)] or [[]]

    def do_schedule_detail_all(self, v: dict[str, Any]) -> tuple[str, str] | None:
        parts = self._schedule_parts()
        for part in parts:
            self.tm("SCHEDULE_DETAIL_REPORT", {"activities": encode_activities(part)})
        self.progress(len(parts) & 0xFF)
        return None

    def do_schedule_summary_all(self, v: dict[str, Any]) -> tuple[str, str] | None:
        parts = self._schedule_parts()
        for part in parts:
            entries = [SummaryEntry(a.release, a.request_id) for a in part]
            self.tm("SCHEDULE_SUMMARY_REPORT", {"activities": encode_summary(entries)})
        self.progress(len(parts) & 0xFF)
        return None
