"""COP-1: FARM-1 and FOP-1 on their own, and together over a simulated channel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacelink.cop1 import (
    AlertRaised,
    Clcw,
    DirectiveRejected,
    Farm1,
    FarmState,
    Fop1,
    FopAlert,
    FopConfig,
    FopState,
    FrameAcknowledged,
    FrameDropped,
    InitiateConfirmed,
    Suspended,
)
from spacelink.errors import DiscardReason
from spacelink.tcframe import SetVr, TcFrame, Unlock

SCID, VCID = 500, 0


def ad(seq: int, data: bytes = b"x") -> TcFrame:
    return TcFrame(SCID, VCID, seq, data)


def bc(command: Unlock | SetVr) -> TcFrame:
    return TcFrame(SCID, VCID, 0, command.pack(), bypass=True, control=True)


# -- CLCW ---------------------------------------------------------------------------------


@given(
    vcid=st.integers(0, 63),
    report=st.integers(0, 255),
    flags=st.tuples(*[st.booleans()] * 5),
    farm_b=st.integers(0, 3),
)
def test_clcw_round_trip(vcid: int, report: int, flags: tuple[bool, ...], farm_b: int) -> None:
    lockout, wait, retransmit, no_rf, no_lock = flags
    clcw = Clcw(vcid, report, lockout, wait, retransmit, farm_b, no_rf, no_lock)
    assert Clcw.unpack(clcw.pack()) == clcw
    assert Clcw.from_int(clcw.to_int()) == clcw


def test_clcw_bit_layout_matches_icd() -> None:
    # type 0, version 00, status 000, COP 01, VCID 5, spare, flags: lockout+retransmit,
    # FARM-B 2, spare, N(R) 0xA5
    word = Clcw(5, 0xA5, lockout=True, retransmit=True, farm_b_counter=2).to_int()
    assert word == (0b01 << 24) | (5 << 18) | (1 << 13) | (1 << 11) | (2 << 9) | 0xA5


# -- FARM-1 -----------------------------------------------------------------------------


def test_farm_accepts_in_sequence_and_reports_next_expected() -> None:
    farm = Farm1(VCID)
    for seq in range(300):
        assert farm.receive(ad(seq & 0xFF)).accepted
    assert farm.v_r == 300 & 0xFF
    assert farm.clcw() == Clcw(VCID, 300 & 0xFF)


def test_farm_gap_sets_retransmit_until_the_missing_frame_arrives() -> None:
    farm = Farm1(VCID, v_r=10)
    verdict = farm.receive(ad(12))
    assert not verdict.accepted and verdict.reason is DiscardReason.FARM_RETRANSMIT
    assert farm.clcw().retransmit and farm.v_r == 10
    assert farm.receive(ad(10)).accepted
    assert not farm.clcw().retransmit


def test_farm_discards_duplicates_in_the_negative_window() -> None:
    farm = Farm1(VCID, v_r=5)
    assert farm.receive(ad(4)).reason is DiscardReason.FARM_NEGATIVE_WINDOW
    assert farm.receive(ad((5 - 16) & 0xFF)).reason is DiscardReason.FARM_NEGATIVE_WINDOW
    assert farm.state is FarmState.OPEN and not farm.clcw().retransmit


@pytest.mark.parametrize("ahead", [16, 100, 239])
def test_farm_locks_out_beyond_both_windows(ahead: int) -> None:
    farm = Farm1(VCID, v_r=200)
    assert farm.receive(ad((200 + ahead) & 0xFF)).reason is DiscardReason.FARM_LOCKOUT
    assert farm.clcw().lockout
    # nothing type-A gets through while locked out, not even N(S) = V(R)
    assert farm.receive(ad(200)).reason is DiscardReason.FARM_LOCKOUT
    # type-B data still does, and counts
    assert farm.receive(TcFrame(SCID, VCID, 0, b"d", bypass=True)).accepted
    assert farm.clcw().farm_b_counter == 1


def test_farm_window_edges() -> None:
    farm = Farm1(VCID, v_r=0)
    assert farm.receive(ad(15)).reason is DiscardReason.FARM_RETRANSMIT  # last positive
    farm = Farm1(VCID, v_r=0)
    assert farm.receive(ad(240)).reason is DiscardReason.FARM_NEGATIVE_WINDOW  # last negative
    farm = Farm1(VCID, v_r=0)
    assert farm.receive(ad(16)).reason is DiscardReason.FARM_LOCKOUT  # first outside


def test_farm_unlock_clears_lockout_wait_and_retransmit() -> None:
    farm = Farm1(VCID, v_r=3)
    farm.receive(ad(4))  # retransmit
    farm.receive(ad(100))  # lockout
    assert farm.receive(bc(Unlock())).accepted
    clcw = farm.clcw()
    assert not (clcw.lockout or clcw.wait or clcw.retransmit)
    assert clcw.farm_b_counter == 1 and clcw.report_value == 3


def test_farm_set_vr_is_refused_in_lockout_but_counted() -> None:
    farm = Farm1(VCID, v_r=3)
    farm.receive(ad(100))
    verdict = farm.receive(bc(SetVr(50)))
    assert verdict.accepted and verdict.control == SetVr(50)
    assert farm.v_r == 3 and farm.clcw().lockout and farm.farm_b_counter == 1
    farm.receive(bc(Unlock()))
    farm.receive(bc(SetVr(50)))
    assert farm.v_r == 50 and farm.clcw().farm_b_counter == 3


def test_farm_wait_when_no_buffer_then_release() -> None:
    farm = Farm1(VCID, v_r=7)
    verdict = farm.receive(ad(7), buffer_available=False)
    assert verdict.reason is DiscardReason.FARM_WAIT
    clcw = farm.clcw()
    assert clcw.wait and clcw.retransmit and clcw.report_value == 7
    farm.buffer_released()
    assert not farm.clcw().wait
    assert farm.receive(ad(7)).accepted and not farm.clcw().retransmit


def test_farm_lockout_from_wait_keeps_wait_until_a_buffer_release() -> None:
    farm = Farm1(VCID, v_r=7)
    farm.receive(ad(7), buffer_available=False)  # E2: S1 -> S2
    assert farm.receive(ad(100), buffer_available=False).reason is DiscardReason.FARM_LOCKOUT
    clcw = farm.clcw()  # E5 in S2 sets only Lockout
    assert clcw.lockout and clcw.wait and clcw.retransmit and farm.state is FarmState.LOCKOUT
    farm.buffer_released()  # E10 in S3: Wait cleared, still locked out
    clcw = farm.clcw()
    assert clcw.lockout and not clcw.wait and farm.state is FarmState.LOCKOUT


def test_farm_unlock_from_lockout_over_wait_clears_every_flag() -> None:
    farm = Farm1(VCID, v_r=7)
    farm.receive(ad(7), buffer_available=False)
    farm.receive(ad(100), buffer_available=False)
    farm.receive(bc(Unlock()))
    assert farm.clcw() == Clcw(VCID, 7, farm_b_counter=1) and farm.state is FarmState.OPEN


# CCSDS 232.1-B-2 table 6-1, transcribed cell by cell: (event, state) -> (flags set, flags
# cleared, V(R) action, FARM-B counted, next state). States S1 Open, S2 Wait, S3 Lockout.
# E1 in S2 cannot occur (a buffer release, E10, comes first); E9 (invalid directive) only
# discards. The reference below applies these cells to CLCW flags and nothing else.
_FARM_TABLE: dict[tuple[str, int], tuple[set[str], set[str], str, bool, int]] = {
    ("E1", 1): (set(), {"retransmit"}, "increment", False, 1),
    ("E1", 3): (set(), set(), "", False, 3),
    ("E2", 1): ({"retransmit", "wait"}, set(), "", False, 2),
    ("E2", 2): (set(), set(), "", False, 2),
    ("E2", 3): (set(), set(), "", False, 3),
    ("E3", 1): ({"retransmit"}, set(), "", False, 1),
    ("E3", 2): (set(), set(), "", False, 2),
    ("E3", 3): (set(), set(), "", False, 3),
    ("E4", 1): (set(), set(), "", False, 1),
    ("E4", 2): (set(), set(), "", False, 2),
    ("E4", 3): (set(), set(), "", False, 3),
    ("E5", 1): ({"lockout"}, set(), "", False, 3),
    ("E5", 2): ({"lockout"}, set(), "", False, 3),
    ("E5", 3): (set(), set(), "", False, 3),
    ("E6", 1): (set(), set(), "", True, 1),
    ("E6", 2): (set(), set(), "", True, 2),
    ("E6", 3): (set(), set(), "", True, 3),
    ("E7", 1): (set(), {"retransmit"}, "", True, 1),
    ("E7", 2): (set(), {"retransmit", "wait"}, "", True, 1),
    ("E7", 3): (set(), {"retransmit", "wait", "lockout"}, "", True, 1),
    ("E8", 1): (set(), {"retransmit"}, "set", True, 1),
    ("E8", 2): (set(), {"retransmit", "wait"}, "set", True, 1),
    ("E8", 3): (set(), set(), "", True, 3),
    ("E10", 1): (set(), set(), "", False, 1),
    ("E10", 2): (set(), {"wait"}, "", False, 1),
    ("E10", 3): (set(), {"wait"}, "", False, 3),
}


@dataclass
class _TableFarm:
    """FARM-1 as the table says, for comparison with ours."""

    v_r: int
    state: int = 1
    flags: set[str] = field(default_factory=set)
    farm_b: int = 0

    def apply(self, event: str, new_vr: int = 0) -> None:
        on, off, vr_action, counted, self.state = _FARM_TABLE[(event, self.state)]
        self.flags = (self.flags | on) - off
        if vr_action == "increment":
            self.v_r = (self.v_r + 1) & 0xFF
        elif vr_action == "set":
            self.v_r = new_vr
        self.farm_b += counted

    def clcw(self) -> Clcw:
        f = self.flags
        return Clcw(VCID, self.v_r, "lockout" in f, "wait" in f, "retransmit" in f, self.farm_b & 3)


_farm_events = st.one_of(
    st.tuples(st.just("ad"), st.integers(0, 255), st.booleans()),
    st.tuples(st.just("bd"), st.just(0), st.just(True)),
    st.tuples(st.just("unlock"), st.just(0), st.just(True)),
    st.tuples(st.just("set_vr"), st.integers(0, 255), st.just(True)),
    st.tuples(st.just("release"), st.just(0), st.just(True)),
)


@settings(max_examples=300)
@given(start=st.integers(0, 255), events=st.lists(_farm_events, max_size=40))
def test_farm_follows_the_standards_state_table(
    start: int, events: list[tuple[str, int, bool]]
) -> None:
    ours, table = Farm1(VCID, v_r=start), _TableFarm(start)
    for kind, value, buffer in events:
        if kind == "ad":
            if buffer and "wait" in table.flags:
                # The buffer came back before the frame (E10, which clears Wait in Lockout too).
                table.apply("E10")
            ahead = (value - table.v_r) & 0xFF
            if ahead == 0:
                table.apply("E1" if buffer else "E2")
            elif ahead < ours.positive_window:
                table.apply("E3")
            elif 256 - ahead <= ours.negative_window:
                table.apply("E4")
            else:
                table.apply("E5")
            ours.receive(ad(value), buffer_available=buffer)
        elif kind == "bd":
            table.apply("E6")
            ours.receive(TcFrame(SCID, VCID, 0, b"d", bypass=True))
        elif kind == "unlock":
            table.apply("E7")
            ours.receive(bc(Unlock()))
        elif kind == "set_vr":
            table.apply("E8", value)
            ours.receive(bc(SetVr(value)))
        else:
            table.apply("E10")
            ours.buffer_released()
        assert ours.clcw() == table.clcw(), (kind, value, buffer)
        assert int(ours.state) == table.state


def test_farm_rejects_an_invalid_control_command() -> None:
    farm = Farm1(VCID)
    verdict = farm.receive(TcFrame(SCID, VCID, 0, b"\x82\x01\x05", bypass=True, control=True))
    assert verdict.reason is DiscardReason.CONTROL_COMMAND and farm.farm_b_counter == 0


# -- FOP-1 against a scripted CLCW --------------------------------------------------------


def active_fop(config: FopConfig | None = None, v_s: int = 0) -> Fop1:
    fop = Fop1(SCID, VCID, config or FopConfig(window=4, t1=1.0, transmission_limit=3))
    fop.set_v_s(v_s)
    fop.initiate_without_clcw(0.0)
    assert isinstance(fop.take_notifications()[-1], InitiateConfirmed)
    return fop


def test_fop_sliding_window_holds_frames_until_acknowledged() -> None:
    fop = active_fop()
    for i in range(4):
        fop.request_ad(bytes([i]), i, 0.0)
    assert [f.seq for f in fop.take_output()] == [0, 1, 2, 3]
    fop.request_ad(b"\x04", 4, 0.0)  # window K=4 is full: waits in the wait queue
    assert fop.take_output() == [] and not fop.wait_queue_empty
    with pytest.raises(DirectiveRejected):
        fop.request_ad(b"\x05", 5, 0.0)
    fop.on_clcw(Clcw(VCID, 2), 0.1)  # E6: two acknowledged, room for the waiting one
    assert [f.seq for f in fop.take_output()] == [4]
    acks = [n.tag for n in fop.take_notifications() if isinstance(n, FrameAcknowledged)]
    assert acks == [0, 1]


def test_fop_retransmits_on_timer_and_gives_up_at_the_limit() -> None:
    fop = active_fop(FopConfig(window=4, t1=1.0, transmission_limit=3))
    fop.request_ad(b"a", "a", 0.0)
    assert len(fop.take_output()) == 1
    fop.on_clcw(Clcw(VCID, 0), 0.5)  # E5 in S1: nothing yet
    fop.on_time(1.0)  # T1 expiry: second transmission, still S1
    assert [f.seq for f in fop.take_output()] == [0] and fop.state is FopState.ACTIVE
    fop.on_clcw(Clcw(VCID, 0), 1.5)  # still not received: ignored in S1
    assert fop.state is FopState.ACTIVE
    fop.on_time(2.0)  # third and last transmission
    assert len(fop.take_output()) == 1
    fop.on_time(3.0)  # E17: limit reached
    notes = fop.take_notifications()
    assert AlertRaised(FopAlert.T1) in notes and FrameDropped("a", 0) in notes
    assert fop.state is FopState.INITIAL and fop.frames_retransmitted == 2


def test_fop_retransmit_flag_resends_everything_unacknowledged() -> None:
    fop = active_fop()
    for i in range(3):
        fop.request_ad(bytes([i]), i, 0.0)
    fop.take_output()
    fop.on_clcw(Clcw(VCID, 1, retransmit=True), 0.2)  # E8: frame 1 lost, 2 discarded
    assert [f.seq for f in fop.take_output()] == [1, 2]
    assert fop.state is FopState.RETRANSMIT_WITHOUT_WAIT
    fop.on_clcw(Clcw(VCID, 1, retransmit=True), 0.25)  # E10 in S2: already retransmitting
    assert fop.take_output() == []
    fop.on_clcw(Clcw(VCID, 3), 0.4)  # E2: all acknowledged
    assert fop.state is FopState.ACTIVE and fop.timer_deadline is None


def test_fop_limit_one_alerts_on_retransmit_flag() -> None:
    fop = active_fop(FopConfig(window=4, t1=1.0, transmission_limit=1))
    fop.request_ad(b"a", "a", 0.0)
    fop.request_ad(b"b", "b", 0.0)
    fop.on_clcw(Clcw(VCID, 1, retransmit=True), 0.1)  # E101
    notes = fop.take_notifications()
    assert FrameAcknowledged("a") in notes and AlertRaised(FopAlert.LIMIT) in notes


@pytest.mark.parametrize(
    ("clcw", "alert"),
    [
        (Clcw(VCID, 0, lockout=True), FopAlert.LOCKOUT),  # E14
        (Clcw(VCID, 9), FopAlert.NN_R),  # E13: acknowledges frames never sent
        (Clcw(VCID, 1, wait=True), FopAlert.CLCW),  # E7: wait without retransmit
        (Clcw(VCID, 2, retransmit=True), FopAlert.SYNCH),  # E4
    ],
)
def test_fop_alerts_on_inconsistent_clcw(clcw: Clcw, alert: FopAlert) -> None:
    fop = active_fop()
    fop.request_ad(b"a", "a", 0.0)
    fop.request_ad(b"b", "b", 0.0)
    fop.on_clcw(clcw, 0.1)
    assert AlertRaised(alert) in fop.take_notifications()
    assert fop.state is FopState.INITIAL and fop.outstanding == 0


def test_fop_ignores_clcw_of_another_virtual_channel() -> None:
    fop = active_fop()
    fop.request_ad(b"a", "a", 0.0)
    fop.on_clcw(Clcw(VCID + 1, 9, lockout=True), 0.1)
    assert fop.state is FopState.ACTIVE


def test_fop_wait_flag_holds_retransmission_until_released() -> None:
    fop = active_fop()
    fop.request_ad(b"a", "a", 0.0)
    fop.take_output()
    fop.on_clcw(Clcw(VCID, 0, wait=True, retransmit=True), 0.1)  # E11
    assert fop.state is FopState.RETRANSMIT_WITH_WAIT
    fop.on_time(5.0)  # timer expiry is ignored while the FARM waits
    assert fop.take_output() == []
    fop.on_clcw(Clcw(VCID, 0, retransmit=True), 5.1)  # E10 from S3: retransmit
    assert [f.seq for f in fop.take_output()] == [0]


def test_fop_suspends_on_timeout_type_1_and_resumes() -> None:
    fop = active_fop(FopConfig(window=4, t1=1.0, transmission_limit=1, timeout_type=1))
    fop.request_ad(b"a", "a", 0.0)
    fop.take_output()
    fop.on_time(1.0)  # E18
    assert Suspended(int(FopState.ACTIVE)) in fop.take_notifications()
    assert fop.state is FopState.INITIAL and fop.outstanding == 1
    fop.resume(2.0)
    assert fop.state is FopState.ACTIVE and fop.timer_deadline == 3.0


def test_fop_initiation_with_clcw_check_waits_for_matching_clcw() -> None:
    fop = Fop1(SCID, VCID, FopConfig(t1=1.0))
    fop.set_v_s(42)
    fop.initiate_with_clcw(0.0)
    assert fop.state is FopState.INITIALISING_WITHOUT_BC
    with pytest.raises(DirectiveRejected):
        fop.request_ad(b"a", "a", 0.1)
    fop.on_clcw(Clcw(VCID, 42), 0.2)  # E1
    assert fop.state is FopState.ACTIVE
    assert InitiateConfirmed() in fop.take_notifications()


def test_fop_initiation_with_clcw_check_times_out() -> None:
    fop = Fop1(SCID, VCID, FopConfig(t1=1.0, transmission_limit=1))
    fop.initiate_with_clcw(0.0)
    fop.on_time(1.0)
    assert AlertRaised(FopAlert.T1) in fop.take_notifications()


def test_fop_initiation_with_set_vr_sends_bc_and_retransmits_it() -> None:
    fop = Fop1(SCID, VCID, FopConfig(t1=1.0, transmission_limit=3))
    fop.initiate_with_set_vr(77, 0.0)
    (frame,) = fop.take_output()
    assert frame.control and frame.bypass and frame.data == SetVr(77).pack()
    fop.on_clcw(Clcw(VCID, 12), 0.5)  # stale CLCW, before the FARM saw it: ignored (E13 S5)
    fop.on_time(1.0)  # BC retransmission
    assert fop.take_output() == [frame]
    fop.on_clcw(Clcw(VCID, 77, farm_b_counter=1), 1.2)
    assert fop.state is FopState.ACTIVE and fop.v_s == 77


def test_fop_directives_rejected_in_wrong_states() -> None:
    fop = active_fop()
    with pytest.raises(DirectiveRejected):
        fop.initiate_with_clcw(0.0)
    with pytest.raises(DirectiveRejected):
        fop.set_v_s(3)
    with pytest.raises(DirectiveRejected):
        fop.resume(0.0)
    fop.terminate()
    assert AlertRaised(FopAlert.TERM) in fop.take_notifications()


# -- FOP-1 and FARM-1 together over a simulated channel ------------------------------------


@dataclass
class Channel:
    """Uplink frames and downlink CLCWs between a FOP and a FARM, with a virtual clock.

    `uplink_fault(n, frame)` returns how many copies of the n-th uplink frame arrive (0 lost,
    1 normal, 2 duplicated); `clcw_lost(n)` says whether the n-th CLCW is lost.
    """

    fop: Fop1
    farm: Farm1
    uplink_fault: Callable[[int, TcFrame], int] = lambda n, f: 1
    clcw_lost: Callable[[int], bool] = lambda n: False
    delivered: list[bytes] = field(default_factory=list)
    now: float = 0.0
    sent: int = 0
    reports: int = 0

    def step(self, dt: float = 0.1) -> None:
        self.now += dt
        self.fop.on_time(self.now)
        for frame in self.fop.take_output():
            copies = self.uplink_fault(self.sent, frame)
            self.sent += 1
            for _ in range(copies):
                verdict = self.farm.receive(frame)
                if verdict.accepted and verdict.control is None:
                    self.delivered.append(frame.data)
        if not self.clcw_lost(self.reports):
            self.fop.on_clcw(self.farm.clcw(), self.now)
        self.reports += 1

    def run(self, fdus: list[bytes], max_steps: int = 2000) -> list[object]:
        notes: list[object] = []
        pending = list(fdus)
        for _ in range(max_steps):
            while (
                pending
                and self.fop.wait_queue_empty
                and self.fop.state
                in (
                    FopState.ACTIVE,
                    FopState.RETRANSMIT_WITHOUT_WAIT,
                )
            ):
                data = pending.pop(0)
                self.fop.request_ad(data, data, self.now)
            self.step()
            notes += self.fop.take_notifications()
            if not pending and self.fop.idle:
                break
        return notes


def fresh(config: FopConfig | None = None) -> Channel:
    fop = Fop1(SCID, VCID, config or FopConfig(window=8, t1=0.5, transmission_limit=5))
    farm = Farm1(VCID)
    fop.set_v_s(farm.v_r)
    fop.initiate_without_clcw(0.0)
    fop.take_notifications()
    return Channel(fop, farm)


def payloads(n: int) -> list[bytes]:
    return [i.to_bytes(2, "big") for i in range(n)]


def test_lost_frame_is_retransmitted_and_delivered_once_in_order() -> None:
    ch = fresh()
    ch.uplink_fault = lambda n, f: 0 if n == 3 else 1
    ch.run(payloads(20))
    assert ch.delivered == payloads(20)
    assert ch.fop.frames_retransmitted >= 1


def test_lost_last_frame_is_recovered_by_the_timer() -> None:
    ch = fresh()
    ch.uplink_fault = lambda n, f: 0 if n == 0 else 1
    notes = ch.run(payloads(1))
    assert ch.delivered == payloads(1)
    assert not [n for n in notes if isinstance(n, AlertRaised)]


def test_duplicated_frames_are_discarded_by_the_farm() -> None:
    ch = fresh()
    ch.uplink_fault = lambda n, f: 2
    ch.run(payloads(30))
    assert ch.delivered == payloads(30)


def test_lockout_then_unlock_restores_the_service() -> None:
    ch = fresh()
    ch.run(payloads(5))
    # A frame far outside the FARM's window (another ground, a corrupt counter): Lockout.
    assert ch.farm.receive(ad((ch.farm.v_r + 100) & 0xFF)).reason is DiscardReason.FARM_LOCKOUT
    ch.fop.request_ad(b"next", b"next", ch.now)
    ch.step()
    assert AlertRaised(FopAlert.LOCKOUT) in ch.fop.take_notifications()
    ch.fop.set_v_s(ch.farm.clcw().report_value)
    ch.fop.initiate_with_unlock(ch.now)
    for _ in range(5):
        ch.step()
    assert ch.fop.state is FopState.ACTIVE and not ch.farm.clcw().lockout
    ch.delivered.clear()
    ch.run(payloads(3))
    assert ch.delivered == payloads(3)


def test_window_full_fop_waits_for_acknowledgements() -> None:
    ch = fresh(FopConfig(window=4, t1=5.0, transmission_limit=3))
    ch.clcw_lost = lambda n: n == 0
    for data in payloads(4):
        ch.fop.request_ad(data, data, ch.now)
    ch.fop.request_ad(b"late", b"late", ch.now)  # K = 4 frames are out: this one waits
    ch.step()  # the four arrive, their acknowledgement is lost
    assert ch.fop.outstanding == 4 and not ch.fop.wait_queue_empty
    assert ch.delivered == payloads(4)
    ch.step()  # the acknowledgement arrives: the waiting frame goes out
    assert ch.fop.wait_queue_empty and ch.fop.outstanding == 1
    ch.step()
    assert ch.delivered == [*payloads(4), b"late"]


@settings(max_examples=60, deadline=None)
@given(
    loss=st.sets(st.integers(0, 120), max_size=25),
    dupes=st.sets(st.integers(0, 120), max_size=25),
    clcw_loss=st.sets(st.integers(0, 300), max_size=60),
    window=st.integers(1, 15),
)
def test_any_loss_and_duplication_pattern_delivers_exactly_once_in_order(
    loss: set[int], dupes: set[int], clcw_loss: set[int], window: int
) -> None:
    ch = fresh(FopConfig(window=window, t1=0.35, transmission_limit=30))
    ch.uplink_fault = lambda n, f: 0 if n in loss else (2 if n in dupes else 1)
    ch.clcw_lost = lambda n: n in clcw_loss
    notes = ch.run(payloads(40), max_steps=5000)
    assert not [n for n in notes if isinstance(n, AlertRaised)]
    assert ch.delivered == payloads(40)
