"""COP-1 (CCSDS 232.1-B-2, ICD section 4): the CLCW, FARM-1 (payload) and FOP-1 (ground).

Both are pure state machines. FARM-1 takes frames and returns verdicts. FOP-1 takes directives,
transfer requests, CLCWs and the current time, and queues frames to transmit and notifications
for its user; it never reads a clock or touches a port. Event numbers (E1..E46, E101..E104) and
state numbers (S1..S6) are those of the standard's FOP-1 state table, Revision B.

The lower layer (CLTU encoder and serial port) accepts every frame at once, so the FOP's
AD/BC/BD "out ready" flags are always ready and the events E41..E46 collapse into the transmit
actions; a failure to write to the port surfaces as an error of the session, not an alert.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from spacelink.errors import DiscardReason, FrameError
from spacelink.icd import FARM_WINDOW_WIDTH
from spacelink.tcframe import (
    ControlCommand,
    FrameType,
    SetVr,
    TcFrame,
    Unlock,
    parse_control_command,
)

# --------------------------------------------------------------------------------------------
# CLCW


@dataclass(frozen=True, slots=True)
class Clcw:
    """Communications Link Control Word: FARM-1's report in the OCF of every TM frame."""

    vcid: int
    report_value: int
    lockout: bool = False
    wait: bool = False
    retransmit: bool = False
    farm_b_counter: int = 0
    no_rf_available: bool = False
    no_bit_lock: bool = False
    cop_in_effect: int = 1
    status_field: int = 0
    version: int = 0
    control_word_type: int = 0

    def to_int(self) -> int:
        return (
            (self.control_word_type << 31)
            | (self.version << 29)
            | (self.status_field << 26)
            | (self.cop_in_effect << 24)
            | (self.vcid << 18)
            | (self.no_rf_available << 15)
            | (self.no_bit_lock << 14)
            | (self.lockout << 13)
            | (self.wait << 12)
            | (self.retransmit << 11)
            | ((self.farm_b_counter & 0b11) << 9)
            | self.report_value
        )

    def pack(self) -> bytes:
        return self.to_int().to_bytes(4, "big")

    @classmethod
    def from_int(cls, word: int) -> Clcw:
        return cls(
            vcid=(word >> 18) & 0x3F,
            report_value=word & 0xFF,
            lockout=bool((word >> 13) & 1),
            wait=bool((word >> 12) & 1),
            retransmit=bool((word >> 11) & 1),
            farm_b_counter=(word >> 9) & 0b11,
            no_rf_available=bool((word >> 15) & 1),
            no_bit_lock=bool((word >> 14) & 1),
            cop_in_effect=(word >> 24) & 0b11,
            status_field=(word >> 26) & 0b111,
            version=(word >> 29) & 0b11,
            control_word_type=word >> 31,
        )

    @classmethod
    def unpack(cls, data: bytes) -> Clcw:
        return cls.from_int(int.from_bytes(data[:4], "big"))

    def __str__(self) -> str:
        flags = [
            n
            for n, v in (
                ("LOCKOUT", self.lockout),
                ("WAIT", self.wait),
                ("RETRANSMIT", self.retransmit),
            )
            if v
        ]
        return (
            f"V(R)={self.report_value} {' '.join(flags) or 'no flags'} FARM-B={self.farm_b_counter}"
        )


# --------------------------------------------------------------------------------------------
# FARM-1


class FarmState(enum.IntEnum):
    """The state 232.1-B-2's FARM-1 table names (S1..S3); derived from the flags, since Wait
    stays set underneath Lockout."""

    OPEN = 1
    WAIT = 2
    LOCKOUT = 3


@dataclass(frozen=True, slots=True)
class FarmVerdict:
    """What FARM-1 did with a frame: accepted (data to pass up, or a control command run)."""

    accepted: bool
    reason: DiscardReason | None = None
    control: ControlCommand | None = None


_ACCEPT = FarmVerdict(True)


class Farm1:
    """Frame Acceptance and Reporting Mechanism for one virtual channel (ICD 4).

    Kept as the CLCW's three flags, as the standard's state table (232.1-B-2, table 6-1) acts on
    them: Lockout (E5) leaves Wait set, and only a buffer release (E10), Unlock (E7) or Set V(R)
    (E8, outside Lockout) clears it."""

    def __init__(self, vcid: int, window: int = FARM_WINDOW_WIDTH, v_r: int = 0) -> None:
        if window < 2 or window > 254 or window % 2:
            raise ValueError(f"FARM window width {window}: an even number 2..254")
        self.vcid = vcid
        self.positive_window = window // 2
        self.negative_window = window // 2
        self.v_r = v_r
        self.lockout = False
        self.wait = False
        self.retransmit = False
        self.farm_b_counter = 0

    @property
    def state(self) -> FarmState:
        if self.lockout:
            return FarmState.LOCKOUT
        return FarmState.WAIT if self.wait else FarmState.OPEN

    def clcw(self) -> Clcw:
        return Clcw(
            vcid=self.vcid,
            report_value=self.v_r,
            lockout=self.lockout,
            wait=self.wait,
            retransmit=self.retransmit,
            farm_b_counter=self.farm_b_counter & 0b11,
        )

    def buffer_released(self) -> None:
        """E10: the receiving buffer has room again (in Lockout too: Lockout stays)."""
        self.wait = False

    def receive(self, frame: TcFrame, *, buffer_available: bool = True) -> FarmVerdict:
        """Apply FARM-1 to a frame whose SCID, VCID and FECF have been checked."""
        kind = frame.frame_type
        if kind is FrameType.BD:  # E6
            self.farm_b_counter += 1
            return _ACCEPT
        if kind is FrameType.BC:
            return self._control(frame)
        if buffer_available:
            self.buffer_released()
        return self._sequence_controlled(frame.seq, buffer_available)

    def _sequence_controlled(self, n_s: int, buffer_available: bool) -> FarmVerdict:
        ahead = (n_s - self.v_r) & 0xFF
        if self.lockout:  # S3: every type-A frame is discarded
            return FarmVerdict(False, DiscardReason.FARM_LOCKOUT)
        if ahead == 0:
            if buffer_available and not self.wait:  # E1
                self.v_r = (self.v_r + 1) & 0xFF
                self.retransmit = False
                return _ACCEPT
            # E2: no buffer for it
            if not self.wait:
                self.retransmit = True
                self.wait = True
            return FarmVerdict(False, DiscardReason.FARM_WAIT)
        if ahead < self.positive_window:  # E3: a frame was lost before this one
            if not self.wait:
                self.retransmit = True
            return FarmVerdict(False, DiscardReason.FARM_RETRANSMIT)
        if 256 - ahead <= self.negative_window:  # E4: a duplicate
            return FarmVerdict(False, DiscardReason.FARM_NEGATIVE_WINDOW)
        self.lockout = True  # E5, from S1 or S2: Wait is left as it is
        return FarmVerdict(False, DiscardReason.FARM_LOCKOUT)

    def _control(self, frame: TcFrame) -> FarmVerdict:
        try:
            command = parse_control_command(frame.data)
        except FrameError as exc:  # E9: an invalid frame
            return FarmVerdict(False, exc.reason)
        self.farm_b_counter += 1
        if isinstance(command, Unlock):  # E7
            self.retransmit = self.wait = self.lockout = False
        elif not self.lockout:  # E8; no effect in Lockout
            self.retransmit = self.wait = False
            self.v_r = command.value
        return FarmVerdict(True, control=command)


# --------------------------------------------------------------------------------------------
# FOP-1


class FopState(enum.IntEnum):
    ACTIVE = 1
    RETRANSMIT_WITHOUT_WAIT = 2
    RETRANSMIT_WITH_WAIT = 3
    INITIALISING_WITHOUT_BC = 4
    INITIALISING_WITH_BC = 5
    INITIAL = 6


class FopAlert(enum.Enum):
    """Why FOP-1 stopped the AD service (232.1-B-2 section 5.2.15)."""

    LIMIT = "retransmission limit reached while the payload asked for retransmission"
    T1 = "no acknowledgement after the last allowed transmission (timer T1)"
    LOCKOUT = "the payload's FARM is in Lockout"
    SYNCH = "the CLCW contradicts the frames sent (synchronisation lost)"
    CLCW = "the CLCW shows Wait without Retransmit"
    NN_R = "the CLCW acknowledges frames that were never sent"
    TERM = "the AD service was terminated"


@dataclass(frozen=True, slots=True)
class FrameAcknowledged:
    """A type-AD frame the FARM has accepted (positive confirm)."""

    tag: object


@dataclass(frozen=True, slots=True)
class FrameDropped:
    """A queued or sent FDU that FOP-1 gave up on (negative confirm, or rejected).

    `seq` is the N(S) it was sent with, or None if it never left the wait queue: a higher
    procedure compares it with a later CLCW to learn whether the FARM took the frame after all.
    """

    tag: object
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class AlertRaised:
    alert: FopAlert


@dataclass(frozen=True, slots=True)
class Suspended:
    suspend_state: int


@dataclass(frozen=True, slots=True)
class InitiateConfirmed:
    """The Initiate AD Service directive completed: the AD service is active (S1)."""


@dataclass(frozen=True, slots=True)
class InitiateFailed:
    alert: FopAlert | None


FopNotification = (
    FrameAcknowledged | FrameDropped | AlertRaised | Suspended | InitiateConfirmed | InitiateFailed
)


class DirectiveRejected(Exception):
    """A directive or transfer request FOP-1 refuses in its current state."""


@dataclass(slots=True)
class _SentFrame:
    frame: TcFrame
    tag: object
    to_be_retransmitted: bool = False


@dataclass(slots=True)
class _Fdu:
    data: bytes
    tag: object


@dataclass
class FopConfig:
    """FOP-1 management parameters (232.1-B-2 section 5.1)."""

    window: int = 15
    """K: type-AD frames outstanding at most; within the FARM's positive window of 16."""
    t1: float = 2.0
    """T1 initial value in seconds."""
    transmission_limit: int = 10
    timeout_type: int = 0


class Fop1:
    """Frame Operation Procedure for one TC virtual channel."""

    def __init__(self, scid: int, vcid: int, config: FopConfig | None = None) -> None:
        self.scid = scid
        self.vcid = vcid
        self.config = config or FopConfig()
        self.state = FopState.INITIAL
        self.v_s = 0
        self.nn_r = 0
        self.transmission_count = 1
        self.suspend_state = 0
        self.timer_deadline: float | None = None
        self._sent: deque[_SentFrame] = deque()
        self._wait_queue: _Fdu | None = None
        self._bc: _SentFrame | None = None
        self._initiate_pending = False
        self._output: list[TcFrame] = []
        self._notifications: list[FopNotification] = []
        self.frames_transmitted = 0
        self.frames_retransmitted = 0
        self.last_alert: FopAlert | None = None

    # -- what the user takes out ----------------------------------------------------------

    def take_output(self) -> list[TcFrame]:
        """Frames to hand to the lower layer, in order."""
        out, self._output = self._output, []
        return out

    def take_notifications(self) -> list[FopNotification]:
        out, self._notifications = self._notifications, []
        return out

    @property
    def wait_queue_empty(self) -> bool:
        return self._wait_queue is None

    @property
    def outstanding(self) -> int:
        """Type-AD frames sent and not yet acknowledged."""
        return len(self._sent)

    @property
    def idle(self) -> bool:
        """Active with nothing queued or unacknowledged."""
        return self.state is FopState.ACTIVE and not self._sent and self._wait_queue is None

    # -- directives (E23..E40) --------------------------------------------------------------

    def initiate_without_clcw(self, now: float) -> None:  # E23
        self._require_initial()
        self._initialise()
        self._change(FopState.ACTIVE)
        self._notifications.append(InitiateConfirmed())

    def initiate_with_clcw(self, now: float) -> None:  # E24
        self._require_initial()
        self._initialise()
        self._initiate_pending = True
        self._start_timer(now)
        self._change(FopState.INITIALISING_WITHOUT_BC)

    def initiate_with_unlock(self, now: float) -> None:  # E25
        self._require_initial()
        self._initialise()
        self._initiate_pending = True
        self._transmit_bc(Unlock(), now)
        self._change(FopState.INITIALISING_WITH_BC)

    def initiate_with_set_vr(self, v_r: int, now: float) -> None:  # E27
        self._require_initial()
        self._initialise()
        self._initiate_pending = True
        self.v_s = self.nn_r = v_r & 0xFF
        self._transmit_bc(SetVr(v_r & 0xFF), now)
        self._change(FopState.INITIALISING_WITH_BC)

    def terminate(self) -> None:  # E29
        if self.state is not FopState.INITIAL:
            self._alert(FopAlert.TERM)

    def resume(self, now: float) -> None:  # E30..E34
        if self.state is not FopState.INITIAL or self.suspend_state == 0:
            raise DirectiveRejected("the AD service is not suspended")
        state = FopState(self.suspend_state)
        self._start_timer(now)
        self.suspend_state = 0
        self._change(state)
        if state in (FopState.ACTIVE, FopState.RETRANSMIT_WITHOUT_WAIT):
            self._look_for_frame(now)

    def set_v_s(self, v_s: int) -> None:  # E35
        if self.state is not FopState.INITIAL or self.suspend_state:
            raise DirectiveRejected("V(S) can only be set while the AD service is not running")
        self.v_s = self.nn_r = v_s & 0xFF

    # -- transfer requests (E19..E22) ---------------------------------------------------------

    def request_ad(self, data: bytes, tag: object, now: float) -> None:
        """Queue one FDU (a frame data field) for sequence-controlled transfer."""
        if self.state is FopState.INITIAL or self.state in (
            FopState.INITIALISING_WITHOUT_BC,
            FopState.INITIALISING_WITH_BC,
        ):
            raise DirectiveRejected(f"the AD service is not active (state S{int(self.state)})")
        if self._wait_queue is not None:  # E20
            raise DirectiveRejected("the wait queue is full")
        self._wait_queue = _Fdu(data, tag)  # E19
        if self.state in (FopState.ACTIVE, FopState.RETRANSMIT_WITHOUT_WAIT):
            self._look_for_frame(now)

    def request_bd(self, data: bytes) -> None:  # E21
        """Send one FDU expedited (type-BD), outside the sequence control."""
        self._emit(TcFrame(self.scid, self.vcid, 0, data, bypass=True))

    # -- CLCW (E1..E14, E101..E103) -----------------------------------------------------------

    def on_clcw(self, clcw: Clcw, now: float) -> None:
        if clcw.cop_in_effect != 1 or clcw.vcid != self.vcid:
            return
        state = self.state
        if state is FopState.INITIAL:
            return
        n_r = clcw.report_value
        if clcw.lockout:  # E14
            if state is not FopState.INITIALISING_WITH_BC:
                self._alert(FopAlert.LOCKOUT)
            return
        if n_r == self.v_s:
            if clcw.retransmit:  # E4
                if state is not FopState.INITIALISING_WITH_BC:
                    self._alert(FopAlert.SYNCH)
                return
            if clcw.wait:  # E3
                self._alert(FopAlert.CLCW)
                return
            if state in (FopState.INITIALISING_WITHOUT_BC, FopState.INITIALISING_WITH_BC):  # E1
                self._cancel_timer()
                self._bc = None
                self._complete_initiate()
                return
            if n_r == self.nn_r:  # E1
                if state is not FopState.ACTIVE:
                    self._alert(FopAlert.SYNCH)
                return
            self._remove_acknowledged(n_r)  # E2
            self._cancel_timer()
            self._change(FopState.ACTIVE)
            self._look_for_frame(now)
            return
        if not self._between_nnr_and_vs(n_r):  # E13
            if state is not FopState.INITIALISING_WITH_BC:
                self._alert(FopAlert.NN_R)
            return
        if state in (FopState.INITIALISING_WITHOUT_BC, FopState.INITIALISING_WITH_BC):
            return  # nothing is outstanding while initialising: N(R) can only equal V(S)
        if not clcw.retransmit:
            if clcw.wait:  # E7
                self._alert(FopAlert.CLCW)
            elif n_r == self.nn_r:  # E5
                if state is not FopState.ACTIVE:
                    self._alert(FopAlert.SYNCH)
            else:  # E6
                self._remove_acknowledged(n_r)
                self._change(FopState.ACTIVE)
                self._look_for_frame(now)
            return
        if self.config.transmission_limit == 1:  # E101, E102
            if n_r != self.nn_r:
                self._remove_acknowledged(n_r)
            self._alert(FopAlert.LIMIT)
            return
        if n_r != self.nn_r:
            self._remove_acknowledged(n_r)
            if not clcw.wait:  # E8
                self._initiate_ad_retransmission(now)
                self._change(FopState.RETRANSMIT_WITHOUT_WAIT)
                self._look_for_frame(now)
            else:  # E9
                self._change(FopState.RETRANSMIT_WITH_WAIT)
            return
        if self.transmission_count < self.config.transmission_limit:
            if not clcw.wait:  # E10
                if state is not FopState.RETRANSMIT_WITHOUT_WAIT:
                    self._initiate_ad_retransmission(now)
                    self._change(FopState.RETRANSMIT_WITHOUT_WAIT)
                    self._look_for_frame(now)
            elif state is not FopState.RETRANSMIT_WITH_WAIT:  # E11
                self._change(FopState.RETRANSMIT_WITH_WAIT)
            return
        # Transmission limit reached: let the timer decide (E12, E103).
        if not clcw.wait:
            if state is not FopState.RETRANSMIT_WITHOUT_WAIT:
                self._change(FopState.RETRANSMIT_WITHOUT_WAIT)
        elif state is not FopState.RETRANSMIT_WITH_WAIT:
            self._change(FopState.RETRANSMIT_WITH_WAIT)

    # -- timer (E16..E18, E104) ---------------------------------------------------------------

    def on_time(self, now: float) -> None:
        """Advance the timer to `now`; an expiry retransmits, or gives up at the limit."""
        if self.timer_deadline is None or now < self.timer_deadline:
            return
        self.timer_deadline = None
        state = self.state
        if self.transmission_count < self.config.transmission_limit:
            if state in (FopState.ACTIVE, FopState.RETRANSMIT_WITHOUT_WAIT):  # E16, E104
                self._initiate_ad_retransmission(now)
                self._look_for_frame(now)
            elif state is FopState.INITIALISING_WITHOUT_BC:
                if self.config.timeout_type == 0:
                    self._alert(FopAlert.T1)
                else:
                    self._suspend(state)
            elif state is FopState.INITIALISING_WITH_BC and self._bc is not None:
                self.transmission_count += 1
                self._start_timer(now)
                self._retransmit(self._bc.frame)
            return
        if self.config.timeout_type == 0 or state is FopState.INITIALISING_WITH_BC:  # E17
            self._alert(FopAlert.T1)
        elif state is not FopState.INITIAL:  # E18
            self._suspend(state)

    # -- actions (232.1-B-2 section 5.2) ------------------------------------------------------

    def _require_initial(self) -> None:
        if self.state is not FopState.INITIAL:
            raise DirectiveRejected(
                f"initiating the AD service needs state S6, FOP-1 is in S{int(self.state)}"
            )

    def _change(self, state: FopState) -> None:
        self.state = state

    def _initialise(self) -> None:
        self._purge_sent_queue()
        self._purge_wait_queue()
        self.transmission_count = 1
        self.suspend_state = 0
        self.last_alert = None

    def _purge_sent_queue(self) -> None:
        for sent in self._sent:
            self._notifications.append(FrameDropped(sent.tag, sent.frame.seq))
        self._sent.clear()
        self.nn_r = self.v_s

    def _purge_wait_queue(self) -> None:
        if self._wait_queue is not None:
            self._notifications.append(FrameDropped(self._wait_queue.tag))
            self._wait_queue = None

    def _alert(self, alert: FopAlert) -> None:
        self._cancel_timer()
        self._purge_sent_queue()
        self._purge_wait_queue()
        self._bc = None
        if self._initiate_pending:
            self._initiate_pending = False
            self._notifications.append(InitiateFailed(alert))
        self.last_alert = alert
        self._notifications.append(AlertRaised(alert))
        self._change(FopState.INITIAL)

    def _suspend(self, state: FopState) -> None:
        self.suspend_state = int(state)
        self._notifications.append(Suspended(self.suspend_state))
        self._change(FopState.INITIAL)

    def _complete_initiate(self) -> None:
        self._initiate_pending = False
        self._change(FopState.ACTIVE)
        self._notifications.append(InitiateConfirmed())

    def _start_timer(self, now: float) -> None:
        self.timer_deadline = now + self.config.t1

    def _cancel_timer(self) -> None:
        self.timer_deadline = None

    def _between_nnr_and_vs(self, n_r: int) -> bool:
        """NN(R) <= N(R) <= V(S), modulo 256."""
        return (n_r - self.nn_r) & 0xFF <= (self.v_s - self.nn_r) & 0xFF

    def _remove_acknowledged(self, n_r: int) -> None:
        while self.nn_r != n_r and self._sent:
            sent = self._sent.popleft()
            self._notifications.append(FrameAcknowledged(sent.tag))
            self.nn_r = (self.nn_r + 1) & 0xFF
        self.transmission_count = 1

    def _initiate_ad_retransmission(self, now: float) -> None:
        self.transmission_count += 1
        self._start_timer(now)
        for sent in self._sent:
            sent.to_be_retransmitted = True

    def _look_for_frame(self, now: float) -> None:
        # The lower layer is always ready, so keep going until nothing more may be sent.
        for sent in self._sent:
            if sent.to_be_retransmitted:
                sent.to_be_retransmitted = False
                self._retransmit(sent.frame)
        if self._wait_queue is not None and len(self._sent) < self.config.window:
            fdu, self._wait_queue = self._wait_queue, None
            self._transmit_ad(fdu, now)

    def _transmit_ad(self, fdu: _Fdu, now: float) -> None:
        frame = TcFrame(self.scid, self.vcid, self.v_s, fdu.data)
        self.v_s = (self.v_s + 1) & 0xFF
        if not self._sent:
            self.transmission_count = 1
        self._sent.append(_SentFrame(frame, fdu.tag))
        self._start_timer(now)
        self._emit(frame)

    def _transmit_bc(self, command: ControlCommand, now: float) -> None:
        frame = TcFrame(self.scid, self.vcid, 0, command.pack(), bypass=True, control=True)
        self._bc = _SentFrame(frame, None)
        self.transmission_count = 1
        self._start_timer(now)
        self._emit(frame)

    def _emit(self, frame: TcFrame) -> None:
        self.frames_transmitted += 1
        self._output.append(frame)

    def _retransmit(self, frame: TcFrame) -> None:
        self.frames_retransmitted += 1
        self._emit(frame)
