"""The thermal monitor, polled by hand on a fake clock: level events, holds of the queue and the
gate, safe mode (entered at CRITICAL, refused and allowed exits, automatic exit, kept across a
restart), sensor events, power modes, fail-safe on a broken source, and what housekeeping shows."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

from flight.thermal.duty import ComputeGate
from flight.thermal.governor import Governor, Level, Thresholds
from flight.thermal.monitor import (
    DUTY_WINDOW_S,
    POWER_MODE_UNKNOWN,
    PowerModes,
    SafeModeReason,
    SafeModeRefused,
    ThermalMonitor,
)
from flight.thermal.power import PowerModeError
from flight.thermal.readings import Reading, Sensor, SensorFault
from tests.fake_clock import FakeClock

WAIT_S = 10.0  # for the monitor thread to do what it was asked: a bound on a hang
T0 = 500.0
MODES = PowerModes(nominal=0, throttled=2, safe=1)


class ScriptedSource:
    """Readings the test sets; `fail` makes read() raise (a bug in a source)."""

    time_scale = 1.0

    def __init__(self) -> None:
        self.values: dict[Sensor, Reading] = {}
        self.fail = False
        self.reads = 0
        self.read_event = threading.Event()
        self.set(40.0)

    def set(self, cpu: float | None, gpu: float | None = None, board: float | None = None) -> None:
        """CPU at `cpu`, GPU and BOARD at `gpu` and `board` or 10 C under the CPU."""
        cold = None if cpu is None else cpu - 10.0
        self.values = {
            Sensor.CPU: Reading(Sensor.CPU, cpu),
            Sensor.GPU: Reading(Sensor.GPU, gpu if gpu is not None else cold),
            Sensor.BOARD: Reading(Sensor.BOARD, board if board is not None else cold),
        }

    def break_sensor(self, sensor: Sensor, fault: SensorFault = SensorFault.UNREADABLE) -> None:
        self.values[sensor] = Reading(sensor, None, fault, f"zone of {sensor.name}: EIO")

    def sensors(self) -> tuple[Sensor, ...]:
        return tuple(self.values)

    def read(self) -> dict[Sensor, Reading]:
        self.reads += 1
        self.read_event.set()
        if self.fail:
            raise RuntimeError("source bug")
        return dict(self.values)


class FakeActions:
    """The job runner's side: records holds, requeues `started` jobs when asked."""

    def __init__(self, started: int = 0) -> None:
        self.holds: list[bool] = []
        self.started = started
        self.requeue_calls = 0

    def hold_jobs(self, hold: bool) -> None:
        self.holds.append(hold)

    def requeue_started(self) -> int:
        self.requeue_calls += 1
        requeued, self.started = self.started, 0
        return requeued

    @property
    def held(self) -> bool | None:
        return self.holds[-1] if self.holds else None


class Events:
    def __init__(self) -> None:
        self.raised: list[tuple[str, dict[str, Any]]] = []

    def raise_event(self, name: str, **values: object) -> None:
        self.raised.append((name, dict(values)))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [values for raised, values in self.raised if raised == name]

    def names(self) -> list[str]:
        return [name for name, _ in self.raised]

    def take(self) -> list[str]:
        """The names raised since the last take."""
        names = self.names()
        self.raised.clear()
        return names


class DictStore:
    """The protected state's safe-mode key, in a dict."""

    def __init__(self, reason: SafeModeReason | None = None) -> None:
        self.data: dict[str, SafeModeReason | None] = {"safe_mode": reason}
        self.writes = 0

    def safe_mode(self) -> SafeModeReason | None:
        return self.data["safe_mode"]

    def set_safe_mode(self, reason: SafeModeReason | None) -> None:
        self.writes += 1
        self.data["safe_mode"] = reason


class FakePower:
    def __init__(self, current: int | None = None, error: str | None = None) -> None:
        self.mode = current
        self.error = error
        self.sets: list[int] = []

    def current(self) -> int | None:
        return self.mode

    def set(self, mode: int) -> None:
        self.sets.append(mode)
        if self.error is not None:
            raise PowerModeError(self.error)
        self.mode = mode


class Rig:
    """A monitor and its fakes."""

    def __init__(
        self,
        *,
        store: DictStore | None = None,
        power: FakePower | None = None,
        modes: PowerModes | None = None,
        started: int = 0,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.clock = FakeClock(T0)
        self.source = ScriptedSource()
        self.gate = ComputeGate(self.clock)
        self.actions = FakeActions(started)
        self.events = Events()
        self.store = store or DictStore()
        self.power = power or FakePower()
        self.monitor = ThermalMonitor(
            self.source,
            self.gate,
            self.actions,
            self.events,
            self.store,
            self.power,
            modes,
            poll_s=0.5,
            monotonic=self.clock,
            governor=Governor(thresholds),
        )

    def poll(self, cpu: float | None = None, *, after_s: float = 1.0) -> None:
        """Move the clock `after_s`, set the CPU (the hottest) at `cpu` unless None, poll."""
        self.clock.advance(after_s)
        if cpu is not None:
            self.source.set(cpu)
        self.monitor.poll_once()

    def compute(self, seconds: float) -> None:
        """An inference through the gate, taking `seconds` on the clock."""
        with self.gate.running():
            self.clock.advance(seconds)


@pytest.fixture
def rig() -> Rig:
    return Rig()


# --- levels --------------------------------------------------------------------------------------


def test_no_event_while_the_level_stays(rig: Rig) -> None:
    for celsius in (40.0, 55.0, 69.0):
        rig.poll(celsius)
    assert rig.events.names() == []
    assert rig.monitor.level is Level.NOMINAL


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ([71.0], [("THERMAL_THROTTLED", 0)]),
        ([79.0], [("THERMAL_PAUSED", 0)]),
        ([71.0, 79.0], [("THERMAL_THROTTLED", 0), ("THERMAL_PAUSED", 1)]),
        (
            [71.0, 79.0, 74.0],
            [("THERMAL_THROTTLED", 0), ("THERMAL_PAUSED", 1), ("THERMAL_THROTTLED", 2)],
        ),
        ([71.0, 60.0], [("THERMAL_THROTTLED", 0), ("THERMAL_NOMINAL", 1)]),
        ([79.0, 60.0], [("THERMAL_PAUSED", 0), ("THERMAL_NOMINAL", 2)]),
    ],
)
def test_each_level_change_raises_its_event(
    rig: Rig, path: list[float], expected: list[tuple[str, int]]
) -> None:
    rig.poll(40.0)
    for celsius in path:
        rig.poll(celsius)
    raised = [(n, v) for n, v in rig.events.raised if n.startswith("THERMAL_")]
    assert [(name, values["previous"]) for name, values in raised] == expected
    _, values = raised[-1]
    assert values["sensor"] == int(Sensor.CPU)
    assert values["temperature"] == path[-1]


def test_the_event_names_the_hottest_sensor(rig: Rig) -> None:
    rig.source.set(50.0, gpu=60.0, board=72.5)
    rig.poll()
    assert rig.events.named("THERMAL_THROTTLED") == [
        {"previous": int(Level.NOMINAL), "sensor": int(Sensor.BOARD), "temperature": 72.5}
    ]


def test_paused_holds_jobs_and_the_gate_and_cooling_releases(rig: Rig) -> None:
    rig.poll(40.0)
    assert rig.actions.holds == [False]
    assert not rig.gate.held
    rig.poll(79.0)
    assert rig.actions.holds == [False, True]
    assert rig.gate.held
    assert rig.gate.duty == 0.0
    rig.poll(77.0)  # still PAUSED (above 75 C): no new hold call
    assert rig.actions.holds == [False, True]
    rig.poll(74.0)  # THROTTLED: released
    assert rig.monitor.level is Level.THROTTLED
    assert rig.actions.holds == [False, True, False]
    assert not rig.gate.held
    assert 0.0 < rig.gate.duty <= 1.0
    assert rig.monitor.safe is None
    assert rig.actions.requeue_calls == 0


def test_throttled_sets_the_gate_to_the_governors_duty(rig: Rig) -> None:
    rig.poll(40.0)
    for _ in range(20):
        rig.poll(74.0)
    assert rig.monitor.level is Level.THROTTLED
    assert rig.gate.duty == rig.monitor.governor.duty
    assert rig.gate.duty < 1.0
    rig.poll(50.0)
    assert rig.gate.duty == 1.0


# --- safe mode -----------------------------------------------------------------------------------


def test_critical_enters_safe_mode(rig: Rig) -> None:
    rig.actions.started = 2
    rig.poll(40.0)
    rig.events.take()
    rig.poll(86.0)
    assert rig.events.take() == ["THERMAL_CRITICAL", "SAFE_MODE_ENTERED"]
    assert rig.monitor.safe is SafeModeReason.THERMAL
    assert rig.store.safe_mode() is SafeModeReason.THERMAL
    assert rig.actions.requeue_calls == 1
    assert rig.actions.held is True
    assert rig.gate.held
    rig.poll(90.0)
    rig.poll(86.0)
    assert rig.actions.requeue_calls == 1  # once, on entering


def test_safe_mode_entered_reports_the_requeued_jobs() -> None:
    rig = Rig(started=2)
    rig.poll(40.0)
    rig.poll(86.0)
    assert rig.events.named("SAFE_MODE_ENTERED") == [
        {"reason": int(SafeModeReason.THERMAL), "jobs_requeued": 2}
    ]
    assert rig.events.named("THERMAL_CRITICAL") == [
        {"previous": int(Level.NOMINAL), "sensor": int(Sensor.CPU), "temperature": 86.0}
    ]


def test_safe_mode_stays_after_cooling(rig: Rig) -> None:
    rig.poll(86.0)
    for _ in range(5):
        rig.poll(40.0)
    assert rig.monitor.level is Level.NOMINAL
    assert rig.monitor.safe is SafeModeReason.THERMAL
    assert rig.actions.held is True
    assert rig.gate.held
    assert "SAFE_MODE_EXITED" not in rig.events.names()


@pytest.mark.parametrize("hot", [80.0, 86.0])
def test_exit_is_refused_while_paused_or_critical(rig: Rig, hot: float) -> None:
    rig.monitor.enter_safe(SafeModeReason.GROUND)
    rig.poll(hot)
    with pytest.raises(SafeModeRefused, match=r"thermal level (PAUSED|CRITICAL): CPU at"):
        rig.monitor.exit_safe(SafeModeReason.GROUND)
    assert rig.monitor.safe is SafeModeReason.GROUND
    assert rig.store.safe_mode() is SafeModeReason.GROUND
    assert rig.actions.held is True
    assert "SAFE_MODE_EXITED" not in rig.events.names()


def test_exit_is_refused_with_a_failed_sensor_in_use(rig: Rig) -> None:
    rig.monitor.enter_safe(SafeModeReason.GROUND)
    rig.source.break_sensor(Sensor.GPU)
    rig.poll()
    assert rig.monitor.level is Level.PAUSED  # the failed sensor counts as at the pause threshold
    with pytest.raises(SafeModeRefused):
        rig.monitor.exit_safe(SafeModeReason.GROUND)
    # Left out of use, the level drops; putting it back makes the failure count again.
    rig.monitor.set_used({Sensor.CPU, Sensor.BOARD})
    rig.poll()
    assert rig.monitor.level is Level.NOMINAL
    rig.monitor.set_used(set(Sensor))
    with pytest.raises(SafeModeRefused, match="no reading from GPU"):
        rig.monitor.exit_safe(SafeModeReason.GROUND)
    assert rig.monitor.safe is SafeModeReason.GROUND


def test_exit_is_refused_before_the_first_reading(rig: Rig) -> None:
    rig.monitor.enter_safe(SafeModeReason.GROUND)
    with pytest.raises(SafeModeRefused, match="no temperature read yet"):
        rig.monitor.exit_safe(SafeModeReason.GROUND)


@pytest.mark.parametrize("celsius", [40.0, 72.0])
def test_exit_is_allowed_at_nominal_or_throttled(rig: Rig, celsius: float) -> None:
    rig.poll(40.0)
    rig.monitor.enter_safe(SafeModeReason.GROUND)
    rig.poll(celsius)
    assert rig.actions.held is True
    rig.events.take()
    rig.monitor.exit_safe(SafeModeReason.GROUND)
    assert rig.events.raised == [("SAFE_MODE_EXITED", {"reason": int(SafeModeReason.GROUND)})]
    assert rig.monitor.safe is None
    assert rig.store.safe_mode() is None
    assert rig.actions.held is False
    assert not rig.gate.held


def test_exit_allowed_with_a_failed_sensor_out_of_use(rig: Rig) -> None:
    rig.monitor.set_used({Sensor.CPU, Sensor.GPU})
    rig.monitor.enter_safe(SafeModeReason.GROUND)
    rig.source.break_sensor(Sensor.BOARD)
    rig.poll()
    assert rig.monitor.fault_mask == 1 << Sensor.BOARD
    rig.monitor.exit_safe(SafeModeReason.GROUND)
    assert rig.monitor.safe is None


def test_exit_when_not_in_safe_mode_does_nothing(rig: Rig) -> None:
    rig.poll(40.0)
    rig.monitor.exit_safe(SafeModeReason.GROUND)
    assert "SAFE_MODE_EXITED" not in rig.events.names()
    assert rig.store.writes == 0


def test_ground_safe_mode_requeues_and_holds(rig: Rig) -> None:
    rig.actions.started = 1
    rig.poll(40.0)
    assert rig.monitor.enter_safe(SafeModeReason.GROUND) == 1
    assert rig.events.named("SAFE_MODE_ENTERED") == [
        {"reason": int(SafeModeReason.GROUND), "jobs_requeued": 1}
    ]
    assert rig.actions.held is True
    assert rig.gate.held
    assert rig.monitor.enter_safe(SafeModeReason.GROUND) == 0  # already in it: nothing more
    assert rig.actions.requeue_calls == 1
    assert len(rig.events.named("SAFE_MODE_ENTERED")) == 1


def test_critical_in_ground_safe_mode_keeps_the_ground_reason(rig: Rig) -> None:
    rig.monitor.enter_safe(SafeModeReason.GROUND)
    rig.poll(90.0)
    assert rig.monitor.safe is SafeModeReason.GROUND
    assert rig.actions.requeue_calls == 1
    assert len(rig.events.named("SAFE_MODE_ENTERED")) == 1


def test_auto_exit_leaves_a_thermal_safe_mode_after_cooling(rig: Rig) -> None:
    rig.monitor.auto_exit = True
    rig.poll(86.0)
    rig.poll(70.0)  # THROTTLED, not yet below 70 - 3 C
    rig.poll(67.5)
    assert rig.monitor.safe is SafeModeReason.THERMAL
    assert rig.actions.held is True
    rig.events.take()
    rig.poll(66.5)
    assert rig.events.names() == ["THERMAL_NOMINAL", "SAFE_MODE_EXITED"]
    assert rig.events.named("SAFE_MODE_EXITED") == [{"reason": int(SafeModeReason.THERMAL)}]
    assert rig.monitor.safe is None
    assert rig.store.safe_mode() is None
    assert rig.actions.held is False
    assert not rig.gate.held


def test_auto_exit_off_keeps_a_thermal_safe_mode(rig: Rig) -> None:
    rig.poll(86.0)
    rig.poll(40.0)
    assert rig.monitor.safe is SafeModeReason.THERMAL


def test_auto_exit_never_leaves_a_ground_safe_mode(rig: Rig) -> None:
    rig.monitor.auto_exit = True
    rig.monitor.enter_safe(SafeModeReason.GROUND)
    for _ in range(3):
        rig.poll(30.0)
    assert rig.monitor.safe is SafeModeReason.GROUND
    assert rig.actions.held is True


def test_auto_exit_waits_for_failed_sensors_in_use(rig: Rig) -> None:
    rig.monitor.auto_exit = True
    rig.poll(86.0)
    rig.source.set(40.0)
    rig.source.break_sensor(Sensor.BOARD)
    rig.poll()
    assert rig.monitor.safe is SafeModeReason.THERMAL
    rig.source.set(40.0)
    rig.poll()
    assert rig.monitor.safe is None


def test_a_store_in_safe_mode_holds_jobs_from_the_first_poll_and_the_thread_runs() -> None:
    rig = Rig(store=DictStore(SafeModeReason.GROUND), power=FakePower(current=0), modes=MODES)
    rig.monitor.poll_s = 0.01
    rig.monitor.start()
    try:
        # start() polled once before starting the thread: held before any job could start.
        assert rig.actions.holds[0] is True
        assert rig.gate.held
        assert rig.monitor.safe is SafeModeReason.GROUND
        assert rig.power.sets[0] == MODES.safe
        # The thread polls by itself.
        for _ in range(3):
            rig.source.read_event.clear()
            assert rig.source.read_event.wait(WAIT_S)
        assert rig.source.reads >= 4
    finally:
        rig.monitor.stop()
    thread = rig.monitor.thread
    assert thread is not None
    assert not thread.is_alive()
    assert all(rig.actions.holds)  # never released: a GROUND safe mode waits for the command
    assert rig.monitor.safe is SafeModeReason.GROUND


def test_a_store_not_in_safe_mode_does_not_hold() -> None:
    rig = Rig()
    rig.poll(40.0)
    assert rig.actions.holds == [False]
    assert rig.monitor.safe is None


# --- sensors -------------------------------------------------------------------------------------


def test_sensor_failed_and_recovered_events(rig: Rig) -> None:
    rig.poll(40.0)
    rig.source.break_sensor(Sensor.GPU, SensorFault.MISSING)
    rig.poll()
    rig.poll()
    assert rig.events.named("THERMAL_SENSOR_FAILED") == [
        {"sensor": int(Sensor.GPU), "fault": int(SensorFault.MISSING), "detail": "zone of GPU: EIO"}
    ]
    assert rig.events.named("THERMAL_PAUSED") == [
        {"previous": 0, "sensor": int(Sensor.GPU), "temperature": 78.0}
    ]
    assert rig.monitor.fault_mask == 1 << Sensor.GPU
    assert math.isnan(rig.monitor.temperature(Sensor.GPU))
    assert rig.monitor.temperature(Sensor.CPU) == 40.0
    rig.source.set(41.0)
    rig.poll()
    rig.poll()
    assert rig.events.named("THERMAL_SENSOR_RECOVERED") == [
        {"sensor": int(Sensor.GPU), "temperature": 31.0}
    ]
    assert rig.monitor.fault_mask == 0
    assert rig.monitor.temperature(Sensor.GPU) == 31.0


def test_a_long_fault_detail_is_cut_to_255_octets(rig: Rig) -> None:
    rig.source.values[Sensor.CPU] = Reading(Sensor.CPU, None, SensorFault.UNREADABLE, "é" * 200)
    rig.poll()
    (event,) = rig.events.named("THERMAL_SENSOR_FAILED")
    assert len(event["detail"].encode()) <= 255
    assert event["detail"] == "é" * 127


def test_fault_mask_has_one_bit_per_failed_sensor(rig: Rig) -> None:
    assert rig.monitor.fault_mask == 0  # before any poll
    rig.source.break_sensor(Sensor.CPU)
    rig.source.break_sensor(Sensor.BOARD)
    rig.poll()
    assert rig.monitor.fault_mask == 0b101


def test_temperature_is_nan_before_any_reading_and_for_missing_sensors(rig: Rig) -> None:
    assert math.isnan(rig.monitor.temperature(Sensor.CPU))
    del rig.source.values[Sensor.BOARD]
    rig.poll()
    assert math.isnan(rig.monitor.temperature(Sensor.BOARD))
    assert rig.monitor.temperature(Sensor.CPU) == 40.0


# --- power modes ---------------------------------------------------------------------------------


def test_power_modes_follow_the_state_once_per_change() -> None:
    rig = Rig(power=FakePower(current=3), modes=MODES)
    rig.monitor.power_mode = rig.power.current()
    rig.poll(40.0)
    rig.poll(45.0)
    assert rig.power.sets == [0]
    rig.poll(72.0)
    rig.poll(73.0)
    assert rig.power.sets == [0, 2]
    rig.poll(80.0)  # PAUSED: still the throttled mode
    assert rig.power.sets == [0, 2]
    rig.poll(86.0)  # CRITICAL and safe mode
    rig.poll(40.0)
    assert rig.power.sets == [0, 2, 1]  # safe mode keeps its mode after cooling
    rig.monitor.exit_safe(SafeModeReason.GROUND)
    assert rig.power.sets == [0, 2, 1, 0]
    assert rig.monitor.power_mode == 0
    assert rig.events.named("POWER_MODE_CHANGED") == [
        {"previous": 3, "mode": 0},
        {"previous": 0, "mode": 2},
        {"previous": 2, "mode": 1},
        {"previous": 1, "mode": 0},
    ]


def test_an_unknown_power_mode_is_reported_as_255() -> None:
    rig = Rig(power=FakePower(current=None), modes=MODES)
    rig.poll(40.0)
    assert rig.events.named("POWER_MODE_CHANGED") == [{"previous": POWER_MODE_UNKNOWN, "mode": 0}]


def test_ground_safe_mode_sets_the_safe_power_mode_at_once() -> None:
    rig = Rig(modes=MODES)
    rig.poll(40.0)
    rig.monitor.enter_safe(SafeModeReason.GROUND)
    assert rig.power.sets == [0, 1]


def test_modes_left_alone_are_not_set() -> None:
    rig = Rig(modes=PowerModes(throttled=2))
    rig.poll(40.0)
    assert rig.power.sets == []
    rig.poll(72.0)
    rig.poll(40.0)
    assert rig.power.sets == [2]  # NOMINAL leaves the mode as it is


def test_a_failing_power_control_is_reported_and_not_retried_every_poll() -> None:
    rig = Rig(power=FakePower(current=3, error="nvpmodel -m 0: exit status 1: denied"), modes=MODES)
    rig.monitor.power_mode = 3
    for _ in range(4):
        rig.poll(40.0)
    assert rig.power.sets == [0]
    assert rig.events.named("POWER_MODE_FAILED") == [
        {"mode": 0, "detail": "nvpmodel -m 0: exit status 1: denied"}
    ]
    assert rig.events.named("POWER_MODE_CHANGED") == []
    assert rig.monitor.power_mode == 3
    rig.poll(72.0)  # a new state: one more attempt
    rig.poll(72.5)
    assert rig.power.sets == [0, 2]
    assert len(rig.events.named("POWER_MODE_FAILED")) == 2
    # The governor keeps working without the power mode: the gate still spaces.
    assert rig.monitor.level is Level.THROTTLED
    assert not rig.gate.held


# --- a failing source ----------------------------------------------------------------------------


def test_a_source_that_raises_holds_the_jobs_until_a_good_poll(rig: Rig) -> None:
    rig.poll(40.0)
    assert rig.actions.holds == [False]
    rig.source.fail = True
    rig.poll()  # must not raise
    assert rig.actions.holds == [False, True]
    assert rig.gate.held
    rig.poll()
    assert rig.gate.held
    rig.source.fail = False
    rig.poll(40.0)
    assert rig.actions.holds[-1] is False
    assert not rig.gate.held


def test_a_source_that_raises_keeps_safe_mode(rig: Rig) -> None:
    rig.poll(86.0)
    rig.source.fail = True
    rig.poll()
    rig.source.fail = False
    rig.poll(40.0)
    assert rig.monitor.safe is SafeModeReason.THERMAL
    assert rig.actions.held is True
    assert rig.gate.held


# --- what housekeeping shows ---------------------------------------------------------------------


def test_time_in_levels(rig: Rig) -> None:
    rig.poll(40.0)  # t = 0: NOMINAL
    rig.poll(40.0, after_s=2.0)  # t = 2
    rig.poll(72.0, after_s=3.0)  # t = 5: THROTTLED (0-5 counted at NOMINAL)
    rig.poll(79.0, after_s=4.0)  # t = 9: PAUSED
    rig.poll(60.0, after_s=1.5)  # t = 10.5: NOMINAL
    assert rig.monitor.time_in == {
        Level.NOMINAL: 5.0,
        Level.THROTTLED: 4.0,
        Level.PAUSED: 1.5,
        Level.CRITICAL: 0.0,
    }
    rig.clock.advance(2.5)  # the current stay counts, between polls too
    assert rig.monitor.seconds_in(Level.NOMINAL) == 7.5
    assert rig.monitor.seconds_in(Level.PAUSED) == 1.5


def test_time_in_levels_before_the_first_poll(rig: Rig) -> None:
    rig.clock.advance(100.0)
    assert all(rig.monitor.seconds_in(level) == 0.0 for level in Level)


def test_time_in_levels_keeps_the_time_before_a_failed_poll(rig: Rig) -> None:
    rig.poll(40.0)  # t = 0
    rig.source.fail = True
    rig.poll(after_s=2.0)  # t = 2: fails
    rig.source.fail = False
    rig.poll(40.0, after_s=3.0)  # t = 5
    assert sum(rig.monitor.time_in.values()) == 5.0


def test_duty_measured_over_the_window(rig: Rig) -> None:
    assert rig.monitor.duty_measured() == 0.0
    rig.poll(40.0)
    for _ in range(20):  # 25 % busy, polled every second
        rig.compute(0.25)
        rig.poll(after_s=0.75)
    assert rig.monitor.duty_measured() == pytest.approx(0.25)
    for _ in range(int(DUTY_WINDOW_S) // 2):  # half the window idle
        rig.poll()
    assert rig.monitor.duty_measured() == pytest.approx(0.125)
    for _ in range(int(DUTY_WINDOW_S) // 2):
        rig.poll()
    assert rig.monitor.duty_measured() == 0.0
    rig.compute(0.5)
    rig.poll(after_s=0.5)
    assert rig.monitor.duty_measured() == pytest.approx(0.5 / DUTY_WINDOW_S)


def test_peak_is_the_highest_reading_of_the_sensors_in_use(rig: Rig) -> None:
    assert rig.monitor.peak_c == -math.inf
    rig.monitor.set_used({Sensor.CPU, Sensor.GPU})
    rig.source.set(60.0, gpu=65.0, board=99.0)  # BOARD out of use
    rig.poll()
    assert rig.monitor.peak_c == 65.0
    rig.source.set(71.0)
    rig.poll()
    rig.source.set(50.0)
    rig.poll()
    rig.source.break_sensor(Sensor.CPU)  # a failure is not a temperature
    rig.poll()
    assert rig.monitor.peak_c == 71.0


def test_new_thresholds_apply_at_the_next_poll(rig: Rig) -> None:
    rig.poll(65.0)
    assert rig.monitor.level is Level.NOMINAL
    rig.monitor.set_thresholds(Thresholds(60.0, 70.0, 80.0, 2.0))
    rig.poll(65.0)
    assert rig.monitor.level is Level.THROTTLED


class PausingGate(ComputeGate):
    """A gate whose next release (allow with held False) stops until the test says go."""

    def __init__(self, monotonic: FakeClock) -> None:
        super().__init__(monotonic)
        self.armed = False
        self.in_allow = threading.Event()
        self.go = threading.Event()

    def allow(self, duty: float, *, held: bool = False) -> None:
        if self.armed and not held:
            self.armed = False
            self.in_allow.set()
            self.go.wait(WAIT_S)
        super().allow(duty, held=held)


def test_safe_mode_entered_during_a_poll_stays_held(rig: Rig) -> None:
    gate = PausingGate(rig.clock)
    rig.monitor.gate = rig.gate = gate
    rig.actions.started = 1
    rig.poll(40.0)
    gate.armed = True
    rig.clock.advance(1.0)
    poller = threading.Thread(target=rig.monitor.poll_once, daemon=True)
    poller.start()
    assert gate.in_allow.wait(WAIT_S)  # the poll decided to release and is about to
    ground = threading.Thread(
        target=rig.monitor.enter_safe, args=(SafeModeReason.GROUND,), daemon=True
    )
    ground.start()
    # With the poll holding the monitor's lock the command waits for it; without, it is done.
    ground.join(2.0)
    gate.go.set()
    poller.join(WAIT_S)
    ground.join(WAIT_S)
    assert not poller.is_alive() and not ground.is_alive()
    assert rig.monitor.safe is SafeModeReason.GROUND
    assert rig.actions.requeue_calls == 1
    assert rig.actions.held is True
    assert gate.held
