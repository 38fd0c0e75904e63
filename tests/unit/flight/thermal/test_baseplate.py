"""The bench's baseplate: a profile over the payload's clock (the file the orbit driver writes),
read again when it changes, and the thermal model that follows it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from flight.config import ConfigError, load_config
from flight.thermal.baseplate import (
    BaseplateError,
    BaseplateFile,
    BaseplateProfile,
    parse_profile,
    write_profile,
)
from flight.thermal.duty import ComputeGate
from flight.thermal.rc_model import SimulatedThermal, ThermalModelParameters
from flight.thermal.readings import Sensor
from flight.thermal.setup import thermal_source
from tests.unit.flight.config_files import write


def test_the_profile_is_linear_between_breakpoints_and_held_beyond_them() -> None:
    profile = BaseplateProfile([(100.0, 10.0), (200.0, 30.0), (300.0, 0.0)])
    assert profile.at(50.0) == 10.0
    assert profile.at(150.0) == pytest.approx(20.0)
    assert profile.at(250.0) == pytest.approx(15.0)
    assert profile.at(1e12) == 0.0


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no breakpoint"),
        ("# only a comment\n", "no breakpoint"),
        ("100 20\n100 21\n", "line 2: time 100.0 is not after"),
        ("100 hot\n", "line 1: expected 'time celsius'"),
        ("100 20 30\n", "line 1"),
        ("100 900\n", "temperature in"),
        ("nan 20\n", "line 1"),
    ],
)
def test_a_profile_that_makes_no_sense_is_refused_naming_its_line(text: str, words: str) -> None:
    with pytest.raises(BaseplateError, match=words):
        parse_profile(text)


def test_the_file_is_the_fallback_until_written_then_read_again_when_it_changes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "baseplate.txt"
    baseplate = BaseplateFile(path, fallback_c=20.0)
    assert baseplate.at(0.0) == 20.0
    write_profile(path, [(0.0, 5.0), (10.0, 15.0)])
    assert baseplate.at(5.0) == pytest.approx(10.0)
    write_profile(path, [(0.0, -5.0), (10.0, -5.0), (20.0, 35.0)])
    os.utime(path, ns=(1, 1))  # a rewrite within the same tick of the clock still counts
    assert baseplate.at(15.0) == pytest.approx(15.0)


def test_a_bad_rewrite_keeps_the_last_good_profile(tmp_path: Path) -> None:
    path = tmp_path / "baseplate.txt"
    write_profile(path, [(0.0, 12.0)])
    baseplate = BaseplateFile(path, fallback_c=20.0)
    assert baseplate.at(0.0) == 12.0
    path.write_text("0 12\nthis is not a breakpoint\n")
    assert baseplate.at(0.0) == 12.0


class Clocks:
    """The bench's real time (monotonic and UNIX, moved together) and the busy counter."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.busy = 0.0

    def monotonic(self) -> float:
        return self.now - 1_699_000_000.0

    def wall(self) -> float:
        return self.now


def test_the_thermal_model_settles_on_the_baseplate_of_the_moment() -> None:
    clocks = Clocks()
    start = clocks.now
    # Cold for the first hour of model time, then warm (time scale 100: 36 s of bench time).
    profile = BaseplateProfile([(start + 36.0, 0.0), (start + 36.001, 40.0)])
    parameters = ThermalModelParameters(noise_c=0.0, time_scale=100.0, baseplate_c=99.0)
    source = SimulatedThermal(
        parameters, lambda: clocks.busy, clocks.monotonic, baseplate=profile, clock=clocks.wall
    )
    idle_rise = parameters.idle_power_w * parameters.board_to_baseplate_k_w  # 6 K
    first = source.read()[Sensor.BOARD].celsius
    assert first == pytest.approx(0.0 + idle_rise)  # at the start: idle on the cold baseplate
    clocks.now += 35.0
    assert source.read()[Sensor.BOARD].celsius == pytest.approx(idle_rise, abs=0.01)
    for _ in range(100):  # two hours of model time on the warm baseplate
        clocks.now += 1.0
        board = source.read()[Sensor.BOARD].celsius
    assert board == pytest.approx(40.0 + idle_rise, abs=0.05)
    assert source.model.baseplate_c == 40.0


def test_the_configuration_names_the_file_as_text(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[thermal_model]\nbaseplate_file = "orbit-baseplate.txt"\n')
    assert load_config(good).thermal_model.baseplate_file == "orbit-baseplate.txt"
    bad = tmp_path / "bad.toml"
    bad.write_text("[thermal_model]\nbaseplate_file = 3\n")
    with pytest.raises(ConfigError, match="baseplate_file"):
        load_config(bad)


def test_the_payloads_thermal_model_follows_a_file_named_from_the_state_directory(
    tmp_path: Path,
) -> None:
    config = load_config(
        write(
            tmp_path / "bench.toml",
            '[thermal]\nsource = "simulated"\n'
            '[thermal_model]\nbaseplate_file = "baseplate.txt"\nnoise_c = 0.0\n',
        )
    )
    write_profile(tmp_path / "baseplate.txt", [(0.0, -20.0)])
    source = thermal_source(config, ComputeGate(), time.monotonic, tmp_path, time.time)
    p = config.thermal_model
    idle_rise = p.idle_power_w * p.board_to_baseplate_k_w
    assert source.read()[Sensor.BOARD].celsius == pytest.approx(-20.0 + idle_rise)
