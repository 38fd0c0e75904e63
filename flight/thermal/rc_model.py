"""The bench's temperatures: a lumped RC thermal model of the compute module, heated by inference
duty and cooled by conduction to a baseplate, run faster than real time behind `ThermalSource`.

Two nodes in series to the baseplate (temperatures in C, capacities in J/K, resistances in K/W):

    C_j dT_j/dt = P(duty) - (T_j - T_b) / R_jb
    C_b dT_b/dt = (T_j - T_b) / R_jb - (T_b - T_base) / R_ba
    P(duty) = idle_power_w + duty * busy_power_w

The model is linear with a constant input between steps, so a step is the exact closed form
(the 2x2 matrix exponential), whatever its length.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from flight.model_parameters import check_numbers
from flight.thermal.baseplate import Baseplate
from flight.thermal.duty import DutyMeter
from flight.thermal.readings import Reading, Sensor, checked

SENSORS = (Sensor.CPU, Sensor.GPU, Sensor.BOARD)

_POSITIVE = (
    "junction_capacity_j_k",
    "board_capacity_j_k",
    "junction_to_board_k_w",
    "board_to_baseplate_k_w",
    "time_scale",
)
_NON_NEGATIVE = ("idle_power_w", "busy_power_w", "noise_c")


@dataclass(frozen=True, slots=True)
class ThermalModelParameters:
    """The model's parameters: the bench's [thermal_model] config keys (SI; temperatures in C).

    baseplate_c: the baseplate's temperature (C): held constant, or until a baseplate file is
      first read.
    baseplate_file: a profile of the baseplate over time the bench writes from an orbit
      (flight/thermal/baseplate.py; relative: from the state directory); "": none.
    junction_capacity_j_k: heat capacity of the die, lid and thermal pad (J/K).
    board_capacity_j_k: heat capacity of the thermal plate and board, ~0.7 kg of aluminium (J/K).
    junction_to_board_k_w: thermal resistance from the junction to the plate (K/W).
    board_to_baseplate_k_w: thermal resistance from the plate to the baseplate (K/W).
    idle_power_w: power dissipated with no inference running (W).
    busy_power_w: power added while inferences run, scaled by the duty (W).
    cpu_offset_c, gpu_offset_c: what the CPU and GPU zones read relative to the junction (K).
    noise_c: standard deviation of the Gaussian noise on every reading (K).
    seed: seed of the noise generator (non-negative).
    time_scale: model seconds per real second (the bench's speed-up).
    """

    baseplate_c: float = 20.0
    junction_capacity_j_k: float = 30.0
    board_capacity_j_k: float = 600.0
    junction_to_board_k_w: float = 0.3
    board_to_baseplate_k_w: float = 0.6
    idle_power_w: float = 10.0
    # Duty 1 dissipates 50 W in all: it settles near 65 C on a 20 C baseplate, near 95 C on 50 C.
    busy_power_w: float = 40.0
    # The CPU zone reads a little under the hottest spot; the GPU zone reads the junction.
    cpu_offset_c: float = -1.5
    gpu_offset_c: float = 0.0
    noise_c: float = 0.1
    seed: int = 0
    time_scale: float = 1.0
    baseplate_file: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.baseplate_file, str):
            raise ValueError(f"baseplate_file must be a string, got {self.baseplate_file!r}")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        check_numbers(
            self,
            positive=_POSITIVE,
            non_negative=_NON_NEGATIVE,
            others=("baseplate_file", "seed"),
        )


def _check_duty(duty: float) -> None:
    if not 0.0 <= duty <= 1.0:  # also refuses NaN
        raise ValueError(f"duty must be in [0, 1], got {duty!r}")


class RcThermalModel:
    """The two-node model's state (junction and board, in C), advanced exactly by `step`."""

    def __init__(self, parameters: ThermalModelParameters) -> None:
        self.parameters = parameters
        p = parameters
        # The baseplate may move (an orbit's sunlight and eclipse): the caller sets it between
        # steps; each step holds it constant.
        self.baseplate_c = p.baseplate_c
        # System matrix A of d[T_j, T_b]/dt = A [T_j, T_b] + input.
        self._a11 = -1.0 / (p.junction_capacity_j_k * p.junction_to_board_k_w)
        self._a12 = 1.0 / (p.junction_capacity_j_k * p.junction_to_board_k_w)
        self._a21 = 1.0 / (p.board_capacity_j_k * p.junction_to_board_k_w)
        self._a22 = -self._a21 - 1.0 / (p.board_capacity_j_k * p.board_to_baseplate_k_w)
        # A is similar to a symmetric negative-definite matrix (an RC network), and a12 * a21 > 0
        # makes the discriminant strictly positive: two distinct negative real eigenvalues.
        half_trace = (self._a11 + self._a22) / 2.0
        root = math.sqrt(((self._a11 - self._a22) / 2.0) ** 2 + self._a12 * self._a21)
        self._fast = half_trace - root
        self._slow = half_trace + root
        self.junction_c, self.board_c = self.steady_state(0.0)

    def power_w(self, duty: float) -> float:
        """The heat dissipated at `duty` (W)."""
        _check_duty(duty)
        return self.parameters.idle_power_w + duty * self.parameters.busy_power_w

    def steady_state(self, duty: float) -> tuple[float, float]:
        """(junction, board) temperatures at equilibrium under a constant `duty` (C)."""
        p = self.parameters
        power = self.power_w(duty)
        board = self.baseplate_c + power * p.board_to_baseplate_k_w
        return board + power * p.junction_to_board_k_w, board

    def time_constants(self) -> tuple[float, float]:
        """The fast (junction) and slow (board) time constants, in model seconds."""
        return -1.0 / self._fast, -1.0 / self._slow

    def step(self, dt_s: float, duty: float) -> None:
        """Advance `dt_s` model seconds at a constant `duty` in [0, 1], exactly."""
        if not 0.0 <= dt_s < math.inf:
            raise ValueError(f"dt_s must be finite and >= 0, got {dt_s!r}")
        target_j, target_b = self.steady_state(duty)
        dj, db = self.junction_c - target_j, self.board_c - target_b
        # Sylvester's formula for exp(A t) with eigenvalues l1 != l2, written with e = expm1(l t)
        # so that short steps keep their precision:
        #     exp(A t) = I + (e1 (A - l2 I) - e2 (A - l1 I)) / (l1 - l2)
        # Long steps only make exp(l t) underflow to 0: the state lands on the steady state.
        l1, l2 = self._fast, self._slow
        e1, e2 = math.expm1(l1 * dt_s), math.expm1(l2 * dt_s)
        span = l1 - l2
        m11 = 1.0 + (e1 * (self._a11 - l2) - e2 * (self._a11 - l1)) / span
        m12 = (e1 - e2) * self._a12 / span
        m21 = (e1 - e2) * self._a21 / span
        m22 = 1.0 + (e1 * (self._a22 - l2) - e2 * (self._a22 - l1)) / span
        self.junction_c = target_j + m11 * dj + m12 * db
        self.board_c = target_b + m21 * dj + m22 * db

    def temperatures(self) -> dict[Sensor, float]:
        """Noise-free sensor values: CPU and GPU zones from the junction, BOARD the board node."""
        p = self.parameters
        return {
            Sensor.CPU: self.junction_c + p.cpu_offset_c,
            Sensor.GPU: self.junction_c + p.gpu_offset_c,
            Sensor.BOARD: self.board_c,
        }

    def duty_limit(self, limit_c: float) -> float:
        """The highest steady duty at which the hottest sensor (noise-free) settles at `limit_c`,
        clamped to [0, 1]."""
        p = self.parameters
        # Every sensor's steady value is base + slope * power with a positive slope; the board is
        # included for offsets so negative that it would read above the CPU and GPU zones.
        offset = max(p.cpu_offset_c, p.gpu_offset_c)
        lines = (
            (self.baseplate_c + offset, p.board_to_baseplate_k_w + p.junction_to_board_k_w),
            (self.baseplate_c, p.board_to_baseplate_k_w),
        )
        power = min((limit_c - base) / slope for base, slope in lines)
        if p.busy_power_w == 0.0:
            return 1.0 if power >= p.idle_power_w else 0.0
        return min(max((power - p.idle_power_w) / p.busy_power_w, 0.0), 1.0)


class SimulatedThermal:
    """The bench's `ThermalSource`: the RC model driven by the payload's inference duty, on a
    baseplate held constant or following `baseplate` (at times of `clock`, the payload's UNIX
    clock)."""

    def __init__(
        self,
        parameters: ThermalModelParameters,
        busy_seconds: Callable[[], float],
        monotonic: Callable[[], float] = time.monotonic,
        *,
        baseplate: Baseplate | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.time_scale = parameters.time_scale
        self.model = RcThermalModel(parameters)
        self._meter = DutyMeter(busy_seconds)
        self._monotonic = monotonic
        self._baseplate = baseplate
        self._clock = clock
        if baseplate is not None:
            self.model.baseplate_c = baseplate.at(clock())
            # Start where the payload would be after idling on that baseplate, as without one.
            self.model.junction_c, self.model.board_c = self.model.steady_state(0.0)
        self._rng = np.random.default_rng(parameters.seed)

    def sensors(self) -> tuple[Sensor, ...]:
        """CPU, GPU and BOARD."""
        return SENSORS

    def read(self) -> dict[Sensor, Reading]:
        """Advance the model over the real time since the last read at the duty measured over it,
        and read every sensor with noise; the first read only starts the clock."""
        now = self._monotonic()
        step = self._meter.advance(now)
        if step is not None:
            then, duty = step
            real_dt = now - then
            if self._baseplate is not None:
                # The step's middle: the poll is short against the baseplate's changes.
                self.model.baseplate_c = self._baseplate.at(self._clock() - real_dt / 2)
            self.model.step(real_dt * self.time_scale, duty)
        values = self.model.temperatures()
        noise = self._rng.normal(0.0, self.model.parameters.noise_c, len(SENSORS))
        return {
            sensor: checked(sensor, values[sensor] + float(n), "thermal model")
            for sensor, n in zip(SENSORS, noise, strict=True)
        }
