"""The authenticated uplink through the emulated link and the payload process: every frame an
attacker can make from what it records (replays, forgeries, truncations, other keys, plain ICD v1
frames) is refused and counted, none executes or moves FARM-1; the ground and the payload stay
in step across restarts of either end (no honest frame refused), a lost anti-replay state (no
recorded frame accepted again, even after a low answer) and a key rotation; each security
association keeps its own state."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from groundsw.session import InitMode
from groundsw.uplink_security import KEYS_ENV, UplinkSecurity, counter_path
from hil.bench import PAYLOAD_KEY_FILE, Bench
from hil.testapi import GroundTestApi
from spacelink.cltu import encode_cltu
from spacelink.icd import line_seconds
from spacelink.keystore import create_keys, read_keys, write_keys
from spacelink.sdls import (
    ARSN_LENGTH,
    MAC_LENGTH,
    MAX_ARSN,
    Algorithm,
    SecurityAssociation,
    apply_security,
)
from spacelink.spacepacket import AckFlags, PusTc
from spacelink.tcframe import TcFrame
from tests.harness import BIN, open_test_api, run_tool, sequence_report
from tests.hil.onboard import D, code, with_quick_idle

pytestmark = pytest.mark.hil

FAULTS = ("TOO_SHORT", "UNKNOWN_SPI", "BAD_MAC", "REPLAY")
COUNTERS = tuple(f"DISCARDED_AUTH_{fault}" for fault in FAULTS)
CHECKS = 4
# The line rate: what is checked here does not depend on it, and the many round trips of the
# longer tests (restarts, pings, parameter reads) take an eighth of their time at 115200.
BAUD = 921600


class RecordingSecurity(UplinkSecurity):
    """The ground's security, keeping every frame it secured: what an eavesdropper records."""

    def __init__(self, key_file: Path) -> None:
        base = UplinkSecurity.from_key_file(key_file)
        super().__init__(base.sa, base.counter)
        self.frames: list[TcFrame] = []
        self._frames_lock = threading.Lock()

    def secure(self, frame: TcFrame) -> TcFrame:
        secured = super().secure(frame)
        with self._frames_lock:
            self.frames.append(secured)
        return secured

    def recorded(self) -> list[TcFrame]:
        with self._frames_lock:
            return list(self.frames)


def arsn_of(frame: TcFrame, sa: SecurityAssociation) -> int:
    at = sa.header_length - ARSN_LENGTH
    return int.from_bytes(frame.data[at : at + ARSN_LENGTH], "big")


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def attacks(recorded: list[TcFrame], sa: SecurityAssociation) -> dict[str, list[TcFrame]]:
    """Frames an attacker who recorded `recorded` can send, by the fault each must meet. Every
    one has a valid FECF, so it reaches the security processing."""
    ad = [f for f in recorded if not f.control]
    assert ad, "nothing recorded"
    sample = max(ad, key=lambda f: len(f.data))
    assert len(sample.data) > 2 * sa.overhead
    plain_tc = PusTc(D.apid, 17, 1, b"", seq_count=99, ack_flags=AckFlags.ALL).pack()
    attacker = SecurityAssociation(sa.spi, sa.algorithm, os.urandom(len(sa.key)))
    stranger = SecurityAssociation(sa.spi + 8, Algorithm.HMAC_SHA256, os.urandom(32))
    ahead = 2**31
    header = sa.header_length
    return {
        # Every frame sent so far, control frames (Unlock, Set V(R)) included.
        "REPLAY": list(recorded),
        "BAD_MAC": [
            *(dataclasses.replace(f, data=flip(f.data, len(f.data) - 1)) for f in ad),  # MAC
            *(dataclasses.replace(f, data=flip(f.data, header)) for f in ad),  # data
            # A far-ahead ARSN on a recorded frame: refused, and the counter does not move.
            dataclasses.replace(
                sample, data=sample.data[:2] + ahead.to_bytes(4, "big") + sample.data[6:]
            ),
            # The MAC cut off (the frame's last octets taken as its MAC).
            dataclasses.replace(sample, data=sample.data[:-MAC_LENGTH]),
            # Made with a guessed key, a fresh ARSN: the same layout, the wrong MAC.
            apply_security(dataclasses.replace(sample, seq=sample.seq + 1), attacker, ahead),
            apply_security(
                TcFrame(sample.scid, sample.vcid, 0, plain_tc, bypass=True), attacker, 7
            ),
        ],
        "TOO_SHORT": [
            dataclasses.replace(sample, data=sample.data[:1]),
            dataclasses.replace(sample, data=sample.data[:2]),
            dataclasses.replace(sample, data=sample.data[: header + 3]),
            dataclasses.replace(sample, data=sample.data[: sa.overhead]),
        ],
        "UNKNOWN_SPI": [
            apply_security(dataclasses.replace(sample, seq=sample.seq + 1), stranger, ahead),
            # Unauthenticated ICD v1 frames: a sequence-controlled one and a bypass one.
            TcFrame(sample.scid, sample.vcid, (sample.seq + 1) & 0xFF, plain_tc),
            TcFrame(sample.scid, sample.vcid, 0, plain_tc, bypass=True),
        ],
    }


def inject(api: GroundTestApi, frames: list[TcFrame]) -> None:
    """Write `frames` as CLTUs straight onto the ground's port (the session is idle) and wait
    for the line to deliver them. Whatever the ground sends next goes on the line behind them,
    so the payload has handled them before it answers that."""
    cltus = b"".join(encode_cltu(f.pack()) for f in frames)
    api.session.port.write(cltus)
    time.sleep(line_seconds(len(cltus), api.session.port.baudrate) + 0.3)


def groundsw(bench: Bench, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """groundsw on the bench's link, at its line rate."""
    return run_tool("groundsw", "--port", bench.ground_port, "--baud", str(bench.baud), *args,
                    timeout=timeout)  # fmt: skip


def counters(api: GroundTestApi) -> dict[str, int]:
    return api.get_parameters(*COUNTERS, "AUTH_FRAMES_VERIFIED", "AUTH_CHALLENGES")


def clcw_after_quiet(api: GroundTestApi) -> tuple[int, bool, bool]:
    """V(R), lockout, wait of a CLCW sent after the injected frames were handled: the payload
    sends a TM frame (an idle one at least) every 0.14 s here (with_quick_idle)."""
    time.sleep(0.5)
    clcw = api.session.last_clcw
    assert clcw is not None
    return clcw.report_value, clcw.lockout, clcw.wait


def send_checks(api: GroundTestApi, first: int, count: int) -> None:
    check = D.command("LINK_SEQUENCE_CHECK")
    records = [
        api.send(check.service, check.subtype, check.encode({"number": n, "filler": bytes(64)}))
        for n in range(first, first + count)
    ]
    api.assert_delivered(records, timeout=30)


def events_named(api: GroundTestApi, name: str) -> list[dict[str, Any]]:
    out = []
    for item in api.tm_history(5):
        decoded = api.decode(item)
        if decoded.name == name:
            out.append(decoded.values)
    return out


def test_forged_truncated_replayed_and_foreign_frames_are_all_refused(
    make_bench: Any, tmp_path: Path
) -> None:
    bench: Bench = make_bench(baud=BAUD, flight_args=with_quick_idle(tmp_path, BAUD))
    assert bench.key_file is not None
    recorder = RecordingSecurity(bench.key_file)
    sa = recorder.sa
    with open_test_api(bench.ground_port, BAUD, security=recorder) as api:
        sequence_report(api, reset=True)
        send_checks(api, 0, CHECKS)
        before = counters(api)
        sent_before = len(recorder.recorded())
        executed, out_of_order, _ = sequence_report(api)
        assert (executed, out_of_order) == (CHECKS, 0)
        plan = attacks(recorder.recorded(), sa)
        vr_before = clcw_after_quiet(api)
        inject(api, [frame for fault in FAULTS for frame in plan[fault]])
        # Nothing the attacker sent moved FARM-1 (a replayed Set V(R) would have).
        assert clcw_after_quiet(api) == vr_before
        after = counters(api)
        refused = {f: after[f"DISCARDED_AUTH_{f}"] - before[f"DISCARDED_AUTH_{f}"] for f in FAULTS}
        assert refused == {f: len(plan[f]) for f in FAULTS}, plan
        # Verified in between: only the ground's own frames (a sequence report, a parameter report).
        verified = after["AUTH_FRAMES_VERIFIED"] - before["AUTH_FRAMES_VERIFIED"]
        assert verified == len(recorder.recorded()) - sent_before
        # No replayed check ran again; the ground's own commands still do.
        executed, out_of_order, _ = sequence_report(api)
        assert (executed, out_of_order) == (CHECKS, 0)
        send_checks(api, CHECKS, 1)
        assert sequence_report(api)[:2] == (CHECKS + 1, 0)
        faults = D.enums["AuthFault"]
        reported = {faults.to_text(e["fault"]) for e in events_named(api, "AUTH_REFUSED")}
        assert reported == set(FAULTS)
        total = len(events_named(api, "AUTH_REFUSED")) + sum(
            e["suppressed"] for e in events_named(api, "AUTH_REFUSED")
        )
        assert total <= sum(len(v) for v in plan.values())
        recorded = recorder.recorded()

    # A restart: the payload goes on exactly after the last ARSN it accepted, so the ground (a
    # new process, in a new block of its counter file) is heard at once.
    assert bench.stop_flight() == 0
    bench.start_flight()
    ping = groundsw(bench, "ping", timeout=90)
    assert ping.returncode == 0, ping.stderr
    with open_test_api(bench.ground_port, BAUD) as api:
        before = counters(api)
        assert before["DISCARDED_AUTH_REPLAY"] == 0  # no honest frame refused
        inject(api, recorded)
        after = counters(api)
        assert after["DISCARDED_AUTH_REPLAY"] - before["DISCARDED_AUTH_REPLAY"] == len(recorded)
        assert sequence_report(api)[0] == 0  # nothing replayed ran after the restart

    # Every copy of the anti-replay ledger corrupted: the payload cannot tell a replay from a
    # new frame, so it challenges. A recorded frame cannot answer. The ground lost its counter
    # file too, so it answers with a low ARSN, below those of the recorded frames: they stay
    # refused all the same, then and after another restart (the SA's MACs cover the nonce).
    assert bench.stop_flight() == 0
    for copy in (bench.state_dir / "security").iterdir():
        copy.write_bytes(os.urandom(64))
    bench.start_flight()
    with open_test_api(bench.ground_port, BAUD, init=None) as api:
        api.await_named_event("AUTH_CHALLENGE", timeout=20)
        inject(api, recorded)
    counter_path(bench.key_file).write_text("1\n")
    ping = groundsw(bench, "ping", timeout=90)
    assert ping.returncode == 0, ping.stderr
    highest = max(arsn_of(f, sa) for f in recorded)
    for restart in (False, True):
        if restart:
            assert bench.stop_flight() == 0
            bench.start_flight()
        with open_test_api(bench.ground_port, BAUD) as api:
            before = counters(api)
            assert before["AUTH_CHALLENGES"] == 0
            inject(api, recorded)
            after = counters(api)
            assert after["DISCARDED_AUTH_BAD_MAC"] - before["DISCARDED_AUTH_BAD_MAC"] == len(
                recorded
            )
            assert sequence_report(api)[0] == 0
    log = bench.flight_log_text()
    assert "anti-replay state lost" in log
    answer = int(re.search(r"SPI 1: challenge answered at ARSN (\d+)", log)[1])  # type: ignore[index]
    assert answer < highest  # a low answer, below frames that were then refused

    # Key rotation by command: the old key (all an attacker may have stolen) is useless after.
    old_keys = read_keys(bench.key_file)
    rotated = groundsw(bench, "key", "rotate", timeout=90)
    assert rotated.returncode == 0, rotated.stderr
    new_keys = read_keys(bench.key_file)
    assert new_keys[0].key != old_keys[0].key
    assert read_keys(bench.state_dir / PAYLOAD_KEY_FILE) == new_keys  # saved by the payload
    with open_test_api(bench.ground_port, BAUD) as api:
        before = counters(api)
        forged = [
            apply_security(dataclasses.replace(f, seq=(f.seq + 1) & 0xFF), old_keys[0], 2**30 + n)
            for n, f in enumerate(recorded)
            if not f.control
        ]
        inject(api, forged)
        after = counters(api)
        assert after["DISCARDED_AUTH_BAD_MAC"] - before["DISCARDED_AUTH_BAD_MAC"] == len(forged)
        rotations = api.get_parameters("KEY_ROTATIONS")["KEY_ROTATIONS"]
        assert rotations == 1
    # The new key survives a restart (the payload saved it before using it).
    assert bench.stop_flight() == 0
    bench.start_flight()
    ping = groundsw(bench, "ping", timeout=90)
    assert ping.returncode == 0, ping.stderr


def test_an_unauthenticated_payload_says_so_and_refuses_key_rotation(make_bench: Any) -> None:
    bench: Bench = make_bench(baud=115200, authentication=False)
    with open_test_api(bench.ground_port) as api:
        values = api.get_parameters("AUTH_MODE")
        assert D.enums["AuthMode"].to_text(values["AUTH_MODE"]) == "OFF"
        api.command_expect_failure(
            "KEY_ROTATE", code("AUTHENTICATION_IS_OFF"), spi=1, wrapped=bytes(40)
        )
    assert "uplink authentication is off" in bench.flight_log_text()


def test_a_ground_without_the_key_is_told_what_the_payload_said(
    make_bench: Any, tmp_path: Path
) -> None:
    bench: Bench = make_bench(baud=BAUD, flight_args=with_quick_idle(tmp_path, BAUD))
    wrong = tmp_path / "wrong-keys.toml"
    made = run_tool("groundsw", "key", "generate", str(wrong))
    assert made.returncode == 0, made.stderr
    assert (wrong.stat().st_mode & 0o777) == 0o600
    # Each refused ping waits out its --timeout: the payload's refusal comes back in a frame
    # time (a millisecond at BAUD), so 2 s is ample.
    ping = groundsw(bench, "--keys", str(wrong), "--timeout", "2", "ping")
    # Refused, not unanswered: the payload's AUTH_REFUSED events say why.
    assert ping.returncode == 1, ping.stderr
    assert "Traceback" not in ping.stderr and len(ping.stderr.strip().splitlines()) == 1
    assert "MAC does not verify under its key for SPI 1" in ping.stderr
    unauthenticated = subprocess.run(
        [
            str(BIN / "groundsw"),
            "--port",
            bench.ground_port,
            "--baud",
            str(BAUD),
            "--timeout",
            "2",
            "ping",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != KEYS_ENV},
    )
    assert unauthenticated.returncode == 1, unauthenticated.stderr
    assert "of our frames as unauthenticated" in unauthenticated.stderr
    with open_test_api(bench.ground_port, BAUD) as api:
        refused = api.get_parameters("DISCARDED_AUTH_BAD_MAC")["DISCARDED_AUTH_BAD_MAC"]
        assert refused >= 1


def test_each_sa_keeps_its_own_state_and_no_restart_refuses_an_honest_frame(
    make_bench: Any, tmp_path: Path
) -> None:
    bench: Bench = make_bench(baud=BAUD, flight_args=with_quick_idle(tmp_path, BAUD))
    assert bench.key_file is not None
    # A second ground station with its own SA, provisioned in the payload's key file.
    second = SecurityAssociation(2, Algorithm.AES_GCM, os.urandom(32))
    station2 = tmp_path / "station2.toml"
    create_keys(station2, [second])
    board_keys = bench.state_dir / PAYLOAD_KEY_FILE
    write_keys(board_keys, [*read_keys(board_keys), second], "two stations")
    assert bench.stop_flight() == 0
    bench.start_flight()
    # The payload never saw SA 2: it challenges it, and station 2's first command answers.
    ping2 = ["--keys", str(station2), "ping"]
    done = groundsw(bench, *ping2, timeout=90)
    assert done.returncode == 0, done.stderr

    # Station 1 keeps one session open across a payload restart: it goes on in the same block
    # of its counter file, and not one of its frames is refused (Unlock included).
    with open_test_api(bench.ground_port, BAUD) as api:
        sequence_report(api, reset=True)
        send_checks(api, 0, 3)
        assert bench.stop_flight() == 0
        bench.start_flight()
        time.sleep(1.5)  # a CLCW of the restarted payload (V(R) 0), one a second at least
        api.session.initiate(InitMode.UNLOCK, timeout=20)
        send_checks(api, 3, 3)
        assert sequence_report(api)[0] == 3  # the counters restarted with the payload
        after = counters(api)
        assert (after["DISCARDED_AUTH_REPLAY"], after["DISCARDED_AUTH_BAD_MAC"]) == (0, 0)
        # Station 1 spends the last ARSN of its SA (a frame made with its key).
        sa1 = read_keys(bench.key_file)[0]
        ping = PusTc(D.apid, 17, 1, b"", seq_count=1, ack_flags=AckFlags.ALL).pack()
        last = apply_security(TcFrame(500, 0, 0, ping, bypass=True), sa1, MAX_ARSN)
        inject(api, [last])
    station2_api = {"security": UplinkSecurity.from_key_file(station2)}
    with open_test_api(bench.ground_port, BAUD, **station2_api) as api:
        assert api.get_parameters("AUTH_LAST_ARSN")["AUTH_LAST_ARSN"] == MAX_ARSN

    # After a restart SA 1 is used up (and groundsw says so), but station 2 commands as
    # before, without a refusal.
    assert bench.stop_flight() == 0
    bench.start_flight()
    used_up = groundsw(bench, "--timeout", "2", "ping")
    assert used_up.returncode == 1 and "used up" in used_up.stderr, used_up.stderr
    done = groundsw(bench, *ping2, timeout=90)
    assert done.returncode == 0, done.stderr
    with open_test_api(bench.ground_port, BAUD, **station2_api) as api:
        now = counters(api)
        assert now["DISCARDED_AUTH_BAD_MAC"] == 0 and now["AUTH_CHALLENGES"] == 0
        assert now["DISCARDED_AUTH_REPLAY"] >= 1  # station 1's, none of station 2's
