"""Packets of a real session through an XTCE consumer we did not write: every TM packet that the
payload process sends through the emulated link while it is pinged, asked for every
housekeeping structure and parameter, given a file, a model and two jobs (one cancelled), asked
for their lists and reports, made to refuse a command and to scrub an injected upset, is decoded
by space_packet_parser with docs/ai-payload.xtce.xml alone and compared value for value with
the dictionary's decode (tests/xtce_consumer.py: what the library lacks, how values compare).

The packets captured are listed in SESSION; the definitions a session does not produce are
checked from samples in tests/unit/tools/test_xtce_conformance.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hil.bench import Bench
from tests.harness import open_test_api
from tests.hil.onboard import TINY_WIDTHS, code, download, job_report, npy, register, submit, upload
from tests.xtce_consumer import Consumer
from tools.model_gen import mlp, model_bytes

pytestmark = pytest.mark.hil

EXPORT = Path(__file__).resolve().parents[2] / "docs" / "ai-payload.xtce.xml"

# The definitions this session must produce (some events depend on timing and are only
# checked when they come: EXECUTION_PROVIDER_SELECTED, PAYLOAD_STARTED...).
SESSION = {
    # verification: accepted, started, progress, completed, refused at acceptance and completion
    "ACCEPTANCE_SUCCESS", "START_SUCCESS", "PROGRESS_SUCCESS", "COMPLETION_SUCCESS",
    "ACCEPTANCE_FAILURE", "COMPLETION_FAILURE",
    "ARE_YOU_ALIVE_REPORT", "LINK_SEQUENCE_COUNTERS", "LINK_DOWNLINK_TEST_PACKET",
    "DICTIONARY_ECHO_REPLY", "PARAM_VALUES",
    "FILE_UPLOAD_REPORT", "FILE_LIST_REPORT", "FILE_DOWNLOAD_START", "FILE_DOWNLOAD_CHUNK",
    "MODEL_REPORT", "MODEL_LIST_REPORT", "JOB_ACCEPTED", "JOB_REPORT", "JOB_LIST_REPORT",
    "SCRUB_REPORT", "FAULT_INJECT_REPORT",
    # every housekeeping structure (HK_GENERATE)
    "PAYLOAD_STATUS", "LINK_STATUS", "LINK_DISCARDS", "JOBS_STATUS", "RADIATION_STATUS",
    "THERMAL_STATUS", "SECURITY_STATUS",
    # events
    "PARAMETER_SET", "HK_CHANGED", "FILE_STORED", "FILE_DELETED", "DOWNLOAD_FINISHED",
    "MODEL_REGISTERED", "MODEL_DELETED", "JOB_SUCCEEDED", "JOB_FAILED", "FAULT_INJECTED",
    "UPSET_CORRECTED", "SAFE_MODE_ENTERED", "SAFE_MODE_EXITED",
}  # fmt: skip


@pytest.fixture
def bench(make_bench: Any, tmp_path: Path) -> Bench:
    config = tmp_path / "test-commands.toml"
    config.write_text("[protection]\ntest_commands = true\n")  # FAULT_INJECT
    # The packets are the point, not the line: a session's 50-odd commands and their reports
    # take an eighth of the time at 921600 baud.
    bench: Bench = make_bench(baud=921600, flight_args=["--config", str(config)])
    return bench


def test_every_packet_of_a_session_decodes_through_space_packet_parser(bench: Bench) -> None:
    packets: list[bytes] = []
    with open_test_api(bench.ground_port, bench.baud) as api:
        api.session.add_packet_sink(lambda tm, raw, at: packets.append(bytes(raw)))
        d = api.dictionary
        kinds = d.enums["DefinitionKind"].values

        api.command_and_assert("ARE_YOU_ALIVE")
        api.command_and_assert("HK_GENERATE", sids=[h.sid for h in d.housekeeping.values()])
        api.command_and_assert("PARAM_REPORT", ids=[p.id for p in d.parameters.values()])
        idle = d.parameter("DOWNLINK_IDLE_INTERVAL")
        api.command_and_assert("PARAM_SET", values=[{"id": idle.id, "value": 500}])
        api.command_and_assert(
            "HK_SET_INTERVAL", sid=d.housekeeping["LINK_STATUS"].sid, interval_ms=20000
        )
        api.command_and_assert("LINK_SEQUENCE_REPORT", reset=False)
        api.command_and_assert("LINK_DOWNLINK_TEST", vcid="REALTIME", count=1, size=40)
        echoed = d.packets["JOB_ACCEPTED"]
        api.command_and_assert(
            "DICTIONARY_ECHO",
            kind=kinds["PACKET"],
            key=echoed.service * 256 + echoed.subtype,
            data=echoed.layout.build({"job_id": 7, "queued": 1}),
        )

        # A model, an input, a job that succeeds (its report: failure code 0, none) and one
        # cancelled in the queue (JOB_FAILED, its TC's completion failure).
        register(api, "tiny", model_bytes(mlp(seed=5, widths=TINY_WIDTHS)))
        x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
        upload(api, "x.npy", npy(x), transfer_id=8)
        job_id, record = submit(api, model="tiny", input="x.npy")
        record.finished.wait(30)
        assert record.failure is None
        report = job_report(api, job_id)
        assert report["failure_code"] == 0
        hold = d.parameter("JOB_QUEUE_HOLD")
        api.command_and_assert("PARAM_SET", values=[{"id": hold.id, "value": True}])
        held, record = submit(api, model="tiny", input="x.npy")
        api.command_and_assert("JOB_CANCEL", job_id=held)
        record.finished.wait(30)
        assert job_report(api, held)["state"] == d.enums["JobState"].values["CANCELLED"]
        api.command_and_assert("PARAM_SET", values=[{"id": hold.id, "value": False}])
        api.command_and_assert("JOB_LIST", limit=10)
        api.command_and_assert("FILE_LIST")
        api.command_and_assert("MODEL_LIST")
        download(api, report["result"])

        # An upset injected and scrubbed; a refusal; deletions; safe mode in and out.
        api.command_and_assert(
            "FAULT_INJECT", target="WEIGHTS", fault="BIT", model="tiny", version=0, seed=1
        )
        api.query_command("SCRUB_NOW", "SCRUB_REPORT", attempts=1, timeout=30)
        uptime = d.parameter("UPTIME")  # not settable: refused at acceptance
        refused = [{"id": uptime.id, "value": 5}]
        api.command_expect_failure("PARAM_SET", code("BAD_APPLICATION_DATA"), values=refused)
        api.command_expect_failure("FILE_DELETE", code("NO_SUCH_FILE"), name="nothing.npy")
        api.command_and_assert("FILE_DELETE", name=report["result"])
        api.command_and_assert("MODEL_DELETE", model="tiny", version=1)
        api.command_and_assert("SAFE_MODE_ENTER")
        api.command_and_assert("SAFE_MODE_EXIT")

        consumer = Consumer(EXPORT.read_text(), d)
        seen: dict[str, int] = {}

        def check_new() -> None:
            for packet in packets[sum(seen.values()) :]:
                checked = consumer.check(packet)  # AssertionError: what differs
                seen[checked.definition] = seen.get(checked.definition, 0) + 1

        deadline = time.monotonic() + 15  # the last events may trail the last command
        while not set(seen) >= SESSION and time.monotonic() < deadline:
            check_new()
            time.sleep(0.2)
    check_new()
    assert set(seen) >= SESSION, f"not produced: {sorted(SESSION - set(seen))}"
    assert sum(seen.values()) == len(packets) > 100
