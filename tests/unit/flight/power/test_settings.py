"""Where the power settings come from and where they go: the [power] and [power_model]
configuration, the ST[20] parameters (ranges, the rule on the levels, PARAM_SET as a whole),
the protected state across a re-open, the monitor each source builds, and the housekeeping
values with and without a power budget."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from flight.commanding import BadApplicationData
from flight.config import load_config
from flight.parameters import ParameterError, ParameterPool
from flight.power.battery_model import PowerModelParameters, SimulatedPower
from flight.power.config import PowerConfig
from flight.power.governor import PowerSettings
from flight.power.setup import (
    SETTINGS,
    build_power,
    follow_settings,
    power_getters,
    settings_of,
    settings_rule,
    sunlight_of,
)
from flight.power.sunlight import AlwaysSunlit, OrbitSunlight, SunlightFile
from flight.power.sysfs import SysfsPower
from flight.protection.protected_state import PERSISTED_PARAMETERS, ProtectedState
from flight.protection.upsets import UpsetLog
from flight.services.parameters import ParameterService
from flight.thermal.duty import ComputeGate
from telemetry_defs.loader import default_dictionary
from tests.unit.flight.config_files import config_error, write

D = default_dictionary()


# --- configuration -------------------------------------------------------------------------------


def test_no_file_means_no_power_budget() -> None:
    config = load_config(None)
    assert config.power == PowerConfig() and config.power.source == "none"
    assert config.power_model == PowerModelParameters()


def test_power_keys_are_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bench.toml",
        '[power]\nsource = "model"\npoll_interval_s = 0.2\nbattery_capacity_wh = 40\n'
        "compute_power_w = 25.5\nunknown_run_s = 2\n"
        '[power_model]\ninitial_soc_pct = 30\nsunlight = "orbit"\norbit_period_s = 5400\n'
        "sunlit_fraction = 0.62\ntime_scale = 60\n",
    )
    config = load_config(path)
    assert (config.power.source, config.power.poll_interval_s) == ("model", 0.2)
    assert (config.power.battery_capacity_wh, config.power.compute_power_w) == (40, 25.5)
    model = config.power_model
    assert (model.initial_soc_pct, model.sunlight, model.orbit_period_s) == (30, "orbit", 5400)
    assert (model.sunlit_fraction, model.time_scale) == (0.62, 60)


def test_sysfs_files_are_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "board.toml",
        '[power]\nsource = "sysfs"\nsysfs_root = "/fake"\nsoc_file = "run/eps/soc"\n'
        'payload_voltage_file = "hwmon*/in1_input"\npayload_current_file = "hwmon*/curr1_input"\n'
        "current_sign = -1\n",
    )
    files = load_config(path).power.files()
    assert (files.soc, files.payload_voltage, files.current_sign) == (
        "run/eps/soc",
        "hwmon*/in1_input",
        -1,
    )


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('[power]\nsource = "battery"\n', "source = 'battery'"),
        ("[power]\npoll_interval_s = 0\n", "poll_interval_s"),
        ("[power]\nbattery_capacity_wh = -5\n", "battery_capacity_wh"),
        ("[power]\ncompute_power_w = -1\n", "compute_power_w"),
        ("[power]\nreading_lag_s = -1\n", "reading_lag_s"),
        ('[power]\nsource = "sysfs"\nsoc_file = ""\n', "soc_file is empty"),
        ('[power]\nsolar_voltage_file = "v"\n', "solar"),
        ("[power]\ncurrent_sign = 2\n", "current_sign"),
        ("[power]\nwatts = 3\n", "unknown key 'watts'"),
        ("[power]\nsource = 1\n", "expected a str"),
        ('[power_model]\nsunlight = "file"\n', "sunlight_file"),
        ("[power_model]\ninitial_soc_pct = 120\n", "initial_soc_pct"),
    ],
)
def test_a_wrong_power_setting_is_refused_naming_it(tmp_path: Path, text: str, said: str) -> None:
    message = config_error(write(tmp_path / "bad.toml", text))
    assert said in message and "bad.toml" in message


# --- the parameters ------------------------------------------------------------------------------


@pytest.fixture
def pool() -> ParameterPool:
    pool = ParameterPool(D)
    pool.add_rule(tuple(SETTINGS), settings_rule)
    return pool


def test_the_defaults_are_the_governors(pool: ParameterPool) -> None:
    values = {name: pool.read_named(name) for name in SETTINGS}
    assert settings_of(values) == PowerSettings()


def test_levels_out_of_order_are_refused_and_moved_together_accepted(pool: ParameterPool) -> None:
    with pytest.raises(ParameterError, match="levels must rise"):
        pool.check_rules({"POWER_FLOOR_SOC": 40.0})
    pool.check_rules({"POWER_FLOOR_SOC": 40.0, "POWER_HOLD_SOC": 55.0, "POWER_SLOW_SOC": 70.0})


def test_param_set_checks_each_range_and_the_rule(pool: ParameterPool) -> None:
    service = ParameterService(D, pool, None)  # type: ignore[arg-type]

    def check(**values: float) -> None:
        ids = [{"id": D.parameter(n).id, "value": v} for n, v in values.items()]
        service._check_settings({"values": ids})

    check(POWER_ECLIPSE_PRIORITY=200, POWER_SLOW_DUTY=20)
    for bad in (
        {"POWER_FLOOR_SOC": 2.0},  # below its range: a floor must keep some charge
        {"POWER_SLOW_DUTY": 0},
        {"POWER_HYSTERESIS": 30.0},
        {"POWER_HOLD_SOC": 10.0},  # under the floor
    ):
        with pytest.raises(BadApplicationData):
            check(**bad)


class Settings:
    def __init__(self) -> None:
        self.given: list[PowerSettings] = []

    def set_settings(self, settings: PowerSettings) -> None:
        self.given.append(settings)


def test_the_monitor_follows_the_settings(pool: ParameterPool) -> None:
    monitor = Settings()
    follow_settings(pool, monitor)  # type: ignore[arg-type]
    assert monitor.given[-1] == PowerSettings()
    pool.set(D.parameter("POWER_SLOW_DUTY"), 25)
    pool.set(D.parameter("POWER_ECLIPSE_PRIORITY"), 180)
    assert monitor.given[-1] == PowerSettings(slow_duty=0.25, eclipse_priority=180)


POWER_SETTINGS = {
    "POWER_SLOW_SOC": 60.0,
    "POWER_SLOW_DUTY": 30,
    "POWER_HOLD_SOC": 45.0,
    "POWER_HOLD_PRIORITY": 90,
    "POWER_FLOOR_SOC": 25.0,
    "POWER_HYSTERESIS": 3.0,
    "POWER_ECLIPSE_PRIORITY": 150,
}


def test_the_settings_survive_a_reopen_of_the_protected_state(tmp_path: Path) -> None:
    assert set(SETTINGS) <= set(PERSISTED_PARAMETERS)

    def open_state() -> ParameterPool:
        pool = ParameterPool(D)
        pool.add_rule(tuple(SETTINGS), settings_rule)
        ProtectedState(tmp_path, UpsetLog(), pool).restore_parameters()
        return pool

    pool = open_state()
    for name, value in POWER_SETTINGS.items():
        pool.set(D.parameter(name), value)
    pool = open_state()
    assert {name: pool.read_named(name) for name in SETTINGS} == POWER_SETTINGS


# --- what each source builds ---------------------------------------------------------------------


class Queue:
    def wake(self) -> None:
        pass


class Events:
    def raise_event(self, name: str, **values: Any) -> None:
        pass


def build(tmp_path: Path, text: str) -> Any:
    config = load_config(write(tmp_path / "c.toml", text))
    return build_power(
        config, ComputeGate(), Queue(), Events(), tmp_path, lambda: 1e9, lambda: 0.0
    ), config


def test_no_source_builds_no_monitor(tmp_path: Path) -> None:
    monitor, _ = build(tmp_path, "")
    assert monitor is None


def test_each_source_builds_its_monitor(tmp_path: Path) -> None:
    monitor, _ = build(
        tmp_path,
        '[power]\nsource = "model"\nbattery_capacity_wh = 50\n[power_model]\ntime_scale = 60\n',
    )
    assert isinstance(monitor.source, SimulatedPower)
    assert monitor.source.model.capacity_wh == 50 and monitor.governor.budget.capacity_wh == 50
    assert monitor.governor.budget.time_scale == 60  # the model's battery's seconds
    assert isinstance(monitor.source.sunlight, AlwaysSunlit)
    monitor, _ = build(
        tmp_path,
        f'[power]\nsource = "sysfs"\nsysfs_root = "{tmp_path}"\n[power_model]\ntime_scale = 60\n',
    )
    assert isinstance(monitor.source, SysfsPower)
    assert monitor.governor.budget.time_scale == 1.0  # a real battery: the model's scale unused


def test_the_models_sunlight(tmp_path: Path) -> None:
    _, config = build(tmp_path, '[power_model]\nsunlight = "orbit"\n')
    assert isinstance(sunlight_of(config, 0.0, tmp_path), OrbitSunlight)
    _, config = build(tmp_path, '[power_model]\nsunlight = "file"\nsunlight_file = "sun.txt"\n')
    sunlight = sunlight_of(config, 0.0, tmp_path)
    assert isinstance(sunlight, SunlightFile) and sunlight.path == tmp_path / "sun.txt"
    _, config = build(tmp_path, '[power_model]\nsunlight = "file"\nsunlight_file = "/b/sun"\n')
    assert sunlight_of(config, 0.0, tmp_path).path == Path("/b/sun")  # type: ignore[attr-defined]


def test_housekeeping_without_a_power_budget(tmp_path: Path) -> None:
    getters = power_getters(lambda: None, "none", lambda: 0)
    values = {name: get() for name, get in getters.items()}
    assert set(values) <= set(D.parameters)
    for name in ("BATTERY_SOC", "BATTERY_SOC_MIN", "BATTERY_VOLTAGE", "SOLAR_POWER"):
        assert math.isnan(values[name])
    sunlight = D.enums["Sunlight"].values
    assert values["SUNLIGHT"] == sunlight["UNKNOWN"]
    assert values["POWER_SOURCE"] == D.enums["PowerSource"].values["NONE"]
    assert (values["POWER_LEVEL"], values["POWER_MIN_PRIORITY"], values["JOBS_POWER_HELD"]) == (
        0,
        0,
        0,
    )


def test_every_power_parameter_that_is_not_a_setting_has_a_source() -> None:
    getters = power_getters(lambda: None, "none", lambda: 0)
    # power.toml numbers its parameters from 200.
    power = {p.name for p in D.parameters.values() if 200 <= p.id < 220 and not p.settable}
    assert power == set(getters)


def test_housekeeping_with_the_model(tmp_path: Path) -> None:
    monitor, _ = build(
        tmp_path,
        '[power]\nsource = "model"\n[power_model]\ninitial_soc_pct = 42\nsunlight = "orbit"\n',
    )
    monitor.poll_once()
    values = {
        name: get() for name, get in power_getters(lambda: monitor, "model", lambda: 3).items()
    }
    assert values["BATTERY_SOC"] == pytest.approx(42.0)
    assert values["BATTERY_SOC_MIN"] == pytest.approx(42.0)
    assert values["SOLAR_POWER"] == 60.0 and values["PAYLOAD_POWER"] == 8.0
    assert values["SUNLIGHT"] == D.enums["Sunlight"].values["SUNLIT"]
    assert values["POWER_LEVEL"] == D.enums["PowerLevel"].values["SLOWED"]
    assert values["POWER_SOURCE"] == D.enums["PowerSource"].values["MODEL"]
    assert values["JOBS_POWER_HELD"] == 3 and values["POWER_READING_FAULTS"] == 0
