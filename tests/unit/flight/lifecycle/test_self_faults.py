"""The payload's own functional faults strike at the main loop's pass after the injection's
report went down: a crash by SIGSEGV, a hang that never returns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from flight.lifecycle.self_faults import REPORT_DRAIN_S, PayloadFault, SelfFaults


def test_nothing_strikes_unless_armed_and_an_armed_fault_strikes_once() -> None:
    calls: list[object] = []
    faults = SelfFaults(
        drain=lambda seconds: calls.append(("drain", seconds)),
        kill=lambda pid, sig: calls.append(("kill", pid, sig)),
        block=lambda: calls.append("block"),
    )
    faults.strike()
    assert calls == []
    faults.arm(PayloadFault.CRASH)
    faults.strike()
    faults.strike()
    assert calls == [("drain", REPORT_DRAIN_S), ("kill", os.getpid(), signal.SIGSEGV), "block"]
    calls.clear()
    faults.arm(PayloadFault.HANG)
    faults.strike()
    assert calls == [("drain", REPORT_DRAIN_S), "block"]


def test_a_crash_ends_the_process_by_sigsegv() -> None:
    code = textwrap.dedent(
        """
        from flight.lifecycle.self_faults import PayloadFault, SelfFaults
        faults = SelfFaults(drain=lambda seconds: None)
        faults.arm(PayloadFault.CRASH)
        faults.strike()
        print("still alive")
        """
    )
    ended = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert ended.returncode == -signal.SIGSEGV
    assert b"still alive" not in ended.stdout
