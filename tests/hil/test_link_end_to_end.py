"""payload-flight and groundsw through the pty link: the whole ICD path, as an operator runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from groundsw.session import EventKind, InitMode
from hil.bench import Bench
from hil.impairments import Impairments
from hil.ptylink import PtyLink
from spacelink.pus import FailureCode
from spacelink.spacepacket import AckFlags
from telemetry_defs.loader import default_dictionary
from tests.harness import BIN, ground_session, run_tool


def one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_groundsw_ping_shows_every_stage_and_goes_on_after_a_lost_one(bench: Bench) -> None:
    # Unbuffered: the test reads each line as groundsw prints it, to lose the second ping's
    # answers on the downlink and then bring the line back.
    command = [
        str(BIN / "groundsw"), "--port", bench.ground_port, "--timeout", "2",
        "ping", "--count", "3", "--interval", "0.3",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ping = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    try:
        assert ping.stdout is not None
        for line in ping.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("  round trip "):
                if sum(x.startswith("  round trip ") for x in lines) == 1:
                    bench.link.set_impairments("downlink", Impairments(drop_rate=0.99))
            elif line.startswith("ping 2: lost: "):
                bench.link.set_impairments("downlink", Impairments())
        assert ping.wait(30) == 0, lines  # one answer is enough, as with ping(8)
    finally:
        ping.kill()
        ping.wait()
    out = "\n".join(lines)
    assert lines[0].startswith(f"link up on {bench.ground_port}: CLCW V(R)=0")
    for stage in ("frame acknowledged", "accepted", "started", "TM[17,2] reply", "completed"):
        assert sum(line.startswith(f"  {stage} ") for line in lines) >= 2, out
    rtts = [float(x) for x in re.findall(r"round trip ([\d.]+) ms", out)]
    assert len(rtts) == 2 and all(r > 0 for r in rtts)
    assert [line[:7] for line in lines if ": lost: " in line] == ["ping 2:"], out
    assert lines[-1].startswith("3 pings sent, 2 answered, 1 lost (33%); round trip"), out


def test_a_second_session_continues_the_frame_sequence(bench: Bench) -> None:
    assert run_tool("groundsw", "--port", bench.ground_port, "ping").returncode == 0
    second = run_tool("groundsw", "--port", bench.ground_port, "ping")
    assert second.returncode == 0, second.stderr
    assert "CLCW V(R)=1" in second.stdout


def test_failure_reports_come_back_through_the_link(bench: Bench) -> None:
    with ground_session(bench.ground_port, InitMode.CLCW) as session:
        unknown_service = session.command(99, 1)
        unknown_subtype = session.command(17, 9)
        bad_data = session.command(17, 1, b"\x00", ack=AckFlags.NONE)
        for record in (unknown_service, unknown_subtype, bad_data):
            assert record.finished.wait(10), record.history
    codes = [
        r.failure.failure_code if r.failure else None
        for r in (unknown_service, unknown_subtype, bad_data)
    ]
    assert codes == [
        FailureCode.UNKNOWN_SERVICE,
        FailureCode.UNKNOWN_SUBTYPE,
        FailureCode.BAD_APPLICATION_DATA,
    ]
    kinds = [e.kind for e in unknown_service.history]
    assert kinds[0] is EventKind.FRAME_ACKNOWLEDGED or EventKind.REPORT in kinds


def test_garbage_on_the_uplink_is_counted_and_the_link_survives(bench: Bench) -> None:
    junk = os.urandom(20_000).replace(b"\xeb\x90", b"\x00\x00")
    with ground_session(bench.ground_port, init=None) as session:
        session.port.write(junk)
    time.sleep(len(junk) * 10 / 115200 + 0.5)  # the relay delivers at line rate
    result = run_tool("groundsw", "--port", bench.ground_port, "ping")
    assert result.returncode == 0, result.stderr
    assert bench.stop_flight() == 0
    counters = re.search(r"(\d+) octets outside CLTUs", bench.flight_log_text())
    assert counters and int(counters.group(1)) >= len(junk) - 1


def test_ping_with_the_lockout_cleared_by_unlock(bench: Bench) -> None:
    with ground_session(bench.ground_port) as session:
        # Quiet the downlink first: a frame already queued with the old CLCW would arrive after
        # the jump below and be an invalid acknowledgement rather than the lockout.
        dictionary = default_dictionary()
        hk_disable = dictionary.command("HK_DISABLE")
        every = sorted(h.sid for h in dictionary.housekeeping.values())
        arrivals = [time.monotonic()]
        session.add_packet_sink(lambda tm, raw, at: arrivals.append(time.monotonic()))
        quiet = session.command(3, hk_disable.subtype, hk_disable.encode({"sids": every}))
        assert quiet.finished.wait(15) and quiet.failure is None
        # Until nothing has come for 1.5 s (the worker's start events come by themselves).
        deadline = time.monotonic() + 20
        while time.monotonic() - arrivals[-1] < 1.5:
            assert time.monotonic() < deadline, "the downlink never went quiet"
            time.sleep(0.1)
        # Jump V(S) far ahead of the FARM's V(R): the next frame locks the FARM out.
        session.fop.terminate()
        session.fop.set_v_s(100)
        session.fop.initiate_without_clcw(time.monotonic())
        record = session.command(17, 1)
        assert record.finished.wait(15)
        assert record.history[-1].kind is EventKind.DROPPED
        assert "Lockout" in record.history[-1].reason
        deadline = time.monotonic() + 5
        while not (session.last_clcw and session.last_clcw.lockout):
            assert time.monotonic() < deadline, session.last_clcw
            time.sleep(0.05)
    result = run_tool("groundsw", "--port", bench.ground_port, "ping")
    assert result.returncode == 0, result.stderr
    assert "LOCKOUT" in result.stdout.splitlines()[0]


def test_wrong_port_is_one_sentence() -> None:
    result = run_tool("groundsw", "--port", "/dev/no-such-port", "ping")
    assert result.returncode == 2
    assert one_sentence(result.stderr) == (
        "groundsw: cannot open serial port /dev/no-such-port: no such device"
    )


def test_no_port_given_is_one_sentence() -> None:
    env_free = run_tool("groundsw", "ping")
    assert env_free.returncode == 2
    assert "no serial port given" in one_sentence(env_free.stderr)


def test_silent_link_times_out_with_one_sentence() -> None:
    with PtyLink(115200) as link:  # no payload on the other end
        started = time.monotonic()
        result = run_tool("groundsw", "--port", link.ground_port, "--timeout", "2", "ping")
        elapsed = time.monotonic() - started
    assert result.returncode == 3
    assert one_sentence(result.stderr) == (
        f"groundsw: no frame from the payload within 2 s on {link.ground_port}"
    )
    assert elapsed < 10


def test_payload_that_stops_answering_mid_session(tmp_path: Path) -> None:
    # At 921600 baud T1 is 0.6 s (1.3 s at 115200): FOP-1 gives up within 6 s, not 13.
    baud = 921600
    with (
        Bench(tmp_path / "state", baud=baud, flight_log=tmp_path / "flight.log") as b,
        ground_session(b.ground_port, baud=baud, recovery_timeout=2) as session,
    ):
        b.stop_flight(signal.SIGKILL)
        record = session.command(17, 1)
        assert record.finished.wait(60)
    # FOP-1 gives up after T1 x 10; the session then holds the command for the outage
    # timeout, in case the link comes back, before dropping it.
    assert record.history[-1].kind is EventKind.DROPPED
    assert record.history[-1].reason == "no acknowledgement from the payload for 2 s"


def test_payload_stops_cleanly_on_sigterm_and_sigint(tmp_path: Path) -> None:
    with Bench(tmp_path / "state", flight_log=tmp_path / "flight.log") as b:
        assert b.flight is not None
        pid = b.flight.pid
        assert b.stop_flight(signal.SIGTERM) == 0
        b.start_flight()
        assert b.stop_flight(signal.SIGINT) == 0
        log = b.flight_log_text()
    assert "SIGTERM received, stopping" in log and "SIGINT received, stopping" in log
    assert log.count("link counters:") == 2
    assert "Traceback" not in log
    assert not Path(f"/proc/{pid}").exists()


def test_payload_flight_refuses_bad_arguments_with_one_sentence(tmp_path: Path) -> None:
    bad_port = run_tool(
        "payload-flight", "--port", "/dev/no-such-port", "--state-dir", str(tmp_path / "s1")
    )
    assert bad_port.returncode == 2
    assert one_sentence(bad_port.stderr) == (
        "payload-flight: cannot open serial port /dev/no-such-port: no such device"
    )
    config = tmp_path / "mission.toml"
    config.write_text("[link]\nscid = 'five hundred'\n")
    bad_config = run_tool(
        "payload-flight",
        "--port",
        "loop://",
        "--config",
        str(config),
        "--state-dir",
        str(tmp_path / "s2"),
    )
    assert bad_config.returncode == 2
    assert "expected a int" in one_sentence(bad_config.stderr)


def test_payload_flight_will_not_start_without_a_private_uplink_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    missing = run_tool("payload-flight", "--port", "loop://", "--state-dir", str(state))
    assert missing.returncode == 2
    sentence = one_sentence(missing.stderr)
    assert str(state / "uplink-keys.toml") in sentence and "[security]" in sentence
    assert sorted(p.name for p in state.iterdir()) == [".lock"]  # no boot counted, no store
    made = run_tool("groundsw", "key", "generate", str(state / "uplink-keys.toml"))
    assert made.returncode == 0, made.stderr
    (state / "uplink-keys.toml").chmod(0o644)
    readable = run_tool("payload-flight", "--port", "loop://", "--state-dir", str(state))
    assert readable.returncode == 2
    assert "uplink-keys.toml" in one_sentence(readable.stderr)


def test_one_state_directory_serves_one_payload(bench: Bench) -> None:
    second = run_tool("payload-flight", "--port", "loop://", "--state-dir", str(bench.state_dir))
    assert second.returncode == 2
    assert "is in use by another payload-flight process" in one_sentence(second.stderr)


def test_mission_configuration_changes_the_link(tmp_path: Path) -> None:
    config = tmp_path / "mission.toml"
    config.write_text("[link]\nscid = 321\n")
    with Bench(
        tmp_path / "state",
        flight_log=tmp_path / "flight.log",
        flight_args=["--config", str(config)],
    ) as b:
        result = run_tool("groundsw", "--port", b.ground_port, "--timeout", "3", "ping")
    # The ground expects the ICD's SCID 500: frames of SCID 321 are not for it.
    assert result.returncode == 3
    assert "no frame from the payload" in result.stderr
