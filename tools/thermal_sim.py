"""Thermal governor simulation: a stream of inferences on the bench's RC thermal model, under the
payload's governor and under a naive stop-and-go policy, in model time (hours in a second).

It runs the flight code itself: the simulated sensors (`SimulatedThermal`, fed the busy time as
the compute gate counts it), the `Governor`, and the gate's spacing rule (`spacing_s`); only the
clock is simulated. Throughput is compared with the steady-state bound: the duty at which heat in
equals heat out with the hottest sensor at the throttle threshold (`RcThermalModel.duty_limit`),
times the rate of back-to-back inferences.

CLI:
    python -m tools.thermal_sim [--baseplate C ...] [--hours H] [--run-ms MS] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flight.thermal.duty import spacing_s
from flight.thermal.governor import Gains, Governor, Level, Thresholds
from flight.thermal.rc_model import RcThermalModel, SimulatedThermal, ThermalModelParameters
from flight.thermal.readings import Sensor

REPORT_NAME = "thermal_sim.md"
CHART_NAME = "thermal_sim.png"


class Policy(enum.Enum):
    """GOVERNOR: the payload's; STOP_AND_GO: full speed until the limit, stop until cooled."""

    GOVERNOR = "governor"
    STOP_AND_GO = "stop-and-go"


@dataclass(frozen=True)
class Scenario:
    """One simulated run: the plant, the work, the policy."""

    model: ThermalModelParameters = field(
        default_factory=lambda: ThermalModelParameters(baseplate_c=50.0)
    )
    thresholds: Thresholds = field(default_factory=Thresholds)
    gains: Gains = field(default_factory=Gains)
    policy: Policy = Policy.GOVERNOR
    # One inference, model seconds (the demo CNN on a Jetson: tens of ms).
    run_s: float = 0.05
    # The governor's poll period, model seconds (the payload's default poll_interval_s).
    poll_s: float = 0.5
    duration_s: float = 4 * 3600.0
    # Throughput is measured after this share of the run (the board settles in ~30 min).
    settle_share: float = 0.5


@dataclass
class Outcome:
    """What a run did: throughput against the bound, temperatures, time at each level."""

    scenario: Scenario
    inferences: int
    steady_inferences: int
    bound_duty: float
    peak_c: float  # highest noise-free sensor value
    peak_reading_c: float  # highest reading the policy saw
    time_at: dict[Level, float]
    # (time s, hottest noise-free C, allowed duty, level, inferences so far) at every poll.
    trace: list[tuple[float, float, float, int, int]]

    @property
    def steady_rate(self) -> float:
        """Inferences per second after the settling share."""
        s = self.scenario
        return self.steady_inferences / (s.duration_s * (1.0 - s.settle_share))

    @property
    def bound_rate(self) -> float:
        return self.bound_duty / self.scenario.run_s

    @property
    def ratio(self) -> float:
        """Steady throughput as a share of the thermal limit's steady-state rate."""
        return self.steady_rate / self.bound_rate if self.bound_rate > 0 else math.inf


class StopAndGo:
    """The naive policy: compute flat out until the hottest sensor reaches the limit, stop until
    it is the hysteresis below it."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.stopped = False

    def update(self, hottest_c: float) -> bool:
        """Whether computing is stopped after this reading."""
        t = self.thresholds
        if hottest_c >= t.throttle_c:
            self.stopped = True
        elif hottest_c < t.throttle_c - t.hysteresis_c:
            self.stopped = False
        return self.stopped


def simulate(scenario: Scenario) -> Outcome:
    """Run one scenario to its end; deterministic for its seed."""
    s = scenario
    clock = 0.0
    busy_done = 0.0
    run_started: float | None = None

    def busy_seconds() -> float:
        running = clock - run_started if run_started is not None else 0.0
        return busy_done + running

    source = SimulatedThermal(
        dataclasses.replace(s.model, time_scale=1.0), busy_seconds, lambda: clock
    )
    model: RcThermalModel = source.model
    governor = Governor(s.thresholds, s.gains)
    naive = StopAndGo(s.thresholds)
    used = frozenset(Sensor)
    duty, held = 1.0, False
    last_end, last_run = -math.inf, 0.0
    next_poll = 0.0
    inferences = steady = 0
    settle_at = s.duration_s * s.settle_share
    time_at = dict.fromkeys(Level, 0.0)
    level = Level.NOMINAL
    peak = peak_reading = -math.inf
    trace: list[tuple[float, float, float, int, int]] = []
    while clock < s.duration_s:
        if run_started is not None:
            run_end = run_started + s.run_s
            next_event = min(run_end, next_poll)
        else:
            start = math.inf if held else max(clock, last_end + spacing_s(last_run, duty))
            next_event = min(start, next_poll)
        clock = next_event
        if run_started is not None and clock >= run_started + s.run_s:
            busy_done += s.run_s
            last_end, last_run, run_started = clock, s.run_s, None
            inferences += 1
            steady += clock > settle_at
        if clock >= next_poll:
            readings = source.read()  # advances the model to now at the duty since the last read
            hottest = max(r.celsius for r in readings.values() if r.celsius is not None)
            peak_reading = max(peak_reading, hottest)
            peak = max(peak, max(model.temperatures().values()))
            time_at[level] += s.poll_s if trace else 0.0
            if s.policy is Policy.GOVERNOR:
                decision = governor.update(readings, s.poll_s if trace else 0.0, used)
                level, duty, held = decision.level, governor.duty, decision.held
            else:
                held = naive.update(hottest)
                level = Level.PAUSED if held else Level.NOMINAL
            hottest_c = max(model.temperatures().values())
            trace.append((clock, hottest_c, 0.0 if held else duty, level, inferences))
            next_poll += s.poll_s
        if run_started is None and not held and clock >= last_end + spacing_s(last_run, duty):
            run_started = clock
    return Outcome(
        scenario=s,
        inferences=inferences,
        steady_inferences=steady,
        bound_duty=RcThermalModel(s.model).duty_limit(s.thresholds.throttle_c),
        peak_c=peak,
        peak_reading_c=peak_reading,
        time_at=time_at,
        trace=trace,
    )


def compare(scenario: Scenario) -> tuple[Outcome, Outcome]:
    """The governor and stop-and-go on the same scenario."""
    return (
        simulate(dataclasses.replace(scenario, policy=Policy.GOVERNOR)),
        simulate(dataclasses.replace(scenario, policy=Policy.STOP_AND_GO)),
    )


def _row(outcome: Outcome) -> str:
    s = outcome.scenario
    hours = {level: outcome.time_at[level] / 3600 for level in Level}
    return (
        f"| {s.model.baseplate_c:g} | {s.run_s * 1000:g} | {s.policy.value} | "
        f"{outcome.bound_rate:.2f} | {outcome.steady_rate:.2f} | {outcome.ratio * 100:.1f} % | "
        f"{outcome.peak_c:.1f} | {outcome.peak_reading_c:.1f} | "
        f"{hours[Level.THROTTLED]:.2f} / {hours[Level.PAUSED]:.2f} / {hours[Level.CRITICAL]:.2f} |"
    )


def report(outcomes: Sequence[Outcome]) -> str:
    """The Markdown report of a set of runs."""
    first = outcomes[0].scenario
    t = first.thresholds
    lines = [
        "# Thermal governor simulation",
        "",
        "Generated by `python -m tools.thermal_sim`: a stream of back-to-back inference requests",
        "on the bench's RC thermal model (flight/thermal/rc_model.py, default parameters, the",
        "baseplate as listed), under the payload's governor and under a naive stop-and-go",
        "policy (full speed until the hottest sensor reaches the throttle threshold, stop until",
        f"it is the hysteresis below). Both see the same noisy sensors every {first.poll_s:g} s.",
        f"Thresholds: throttle {t.throttle_c:g} C, pause {t.pause_c:g} C, critical "
        f"{t.critical_c:g} C, hysteresis {t.hysteresis_c:g} C. Each run lasts "
        f"{first.duration_s / 3600:g} h of model time; throughput is measured over the last "
        f"{(1 - first.settle_share) * 100:g} %.",
        "",
        "Bound: the steady-state rate the thermal limit allows, the duty at which heat in equals",
        "heat out with the hottest sensor at the throttle threshold, over the inference time.",
        "",
        "| baseplate C | inference ms | policy | bound /s | achieved /s | of bound | peak C "
        "| peak read C | h throttled / paused / critical |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_row(outcome) for outcome in outcomes),
        "",
        f"![temperature and duty]({CHART_NAME})",
        "",
    ]
    return "\n".join(lines)


# The chart shows the first hour of one baseplate's runs; the rate is averaged over a minute.
CHART_MINUTES = 60.0
RATE_WINDOW_S = 60.0


def _rate_share(outcome: Outcome) -> tuple[list[float], list[float]]:
    """(minutes, inference rate over the last RATE_WINDOW_S as a share of the bound)."""
    trace = outcome.trace
    minutes, shares = [], []
    back = 0
    for time_s, _, _, _, count in trace:
        if time_s > CHART_MINUTES * 60:
            break
        while trace[back][0] < time_s - RATE_WINDOW_S:
            back += 1
        span = time_s - trace[back][0]
        if span >= RATE_WINDOW_S / 2:
            minutes.append(time_s / 60)
            shares.append((count - trace[back][4]) / span / outcome.bound_rate)
    return minutes, shares


def chart(outcomes: Sequence[Outcome], path: Path) -> None:
    """The first hour of both policies at the hottest baseplate where stop-and-go still runs
    (or the hottest one): hottest temperature and throughput against the bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    working = [o for o in outcomes if o.scenario.policy is Policy.STOP_AND_GO and o.ratio > 0.5]
    baseplate = max(o.scenario.model.baseplate_c for o in (working or outcomes))
    shown = [o for o in outcomes if o.scenario.model.baseplate_c == baseplate]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for outcome in shown:
        label = outcome.scenario.policy.value
        points = [p for p in outcome.trace if p[0] <= CHART_MINUTES * 60]
        top.plot([p[0] / 60 for p in points], [p[1] for p in points], label=label, lw=0.8)
        bottom.plot(*_rate_share(outcome), label=label, linewidth=0.8)
    t = outcomes[0].scenario.thresholds
    for value, name in ((t.throttle_c, "throttle"), (t.pause_c, "pause")):
        top.axhline(value, color="grey", linestyle=":", linewidth=0.8)
        top.text(0, value, name, fontsize=7, va="bottom")
    bottom.axhline(1.0, color="grey", linestyle=":", linewidth=0.8)
    top.set_title(f"baseplate {baseplate:g} C", fontsize=9)
    top.set_ylabel("hottest sensor, C (noise-free)")
    bottom.set_ylabel(f"rate over {RATE_WINDOW_S:g} s / bound")
    bottom.set_xlabel("model time, min")
    top.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="thermal_sim", description=__doc__.splitlines()[0])
    parser.add_argument("--baseplate", type=float, nargs="+", default=[40.0, 50.0, 60.0])
    parser.add_argument("--hours", type=float, default=4.0, help="model time of each run")
    parser.add_argument("--run-ms", type=float, default=50.0, help="one inference, ms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write thermal_sim.md and .png here")
    args = parser.parse_args(argv)
    if args.hours <= 0 or args.run_ms <= 0:
        parser.error("--hours and --run-ms must be above 0")
    outcomes: list[Outcome] = []
    for baseplate in args.baseplate:
        scenario = Scenario(
            model=ThermalModelParameters(baseplate_c=baseplate, seed=args.seed),
            run_s=args.run_ms / 1000,
            duration_s=args.hours * 3600,
        )
        outcomes.extend(compare(scenario))
    text = report(outcomes)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / REPORT_NAME).write_text(text)
        chart(outcomes, args.out / CHART_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
