"""Where the thermal settings come from and where they are kept: the [thermal] and
[thermal_model] configuration (one file or several merged), the threshold rule on the ST[20]
parameters, the protected state across a re-open, and the job store's requeue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flight.commanding import BadApplicationData
from flight.config import FlightConfig, ThermalConfig, load_config
from flight.jobs.redundancy import Redundancy
from flight.jobs.store import JOBS_DB_FILE, InvalidTransition, JobState, JobStore
from flight.parameters import ParameterError, ParameterPool
from flight.protection.protected_state import (
    PERSISTED_PARAMETERS,
    SAFE_MODE_KEY,
    ProtectedState,
)
from flight.protection.upsets import UpsetLog
from flight.services.parameters import ParameterService
from flight.thermal.monitor import SafeModeReason
from flight.thermal.rc_model import ThermalModelParameters
from flight.thermal.readings import Sensor
from flight.thermal.setup import THRESHOLDS, thresholds_rule
from telemetry_defs.loader import default_dictionary
from telemetry_defs.model import Dictionary
from tests.unit.flight.config_files import config_error, write

DICTIONARY = default_dictionary()


# --- configuration -------------------------------------------------------------------------------


def test_no_file_gives_the_defaults() -> None:
    config = load_config(None)
    assert config.thermal == ThermalConfig()
    assert config.thermal_model == ThermalModelParameters()
    assert load_config([]) == FlightConfig()


def test_thermal_keys_are_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mission.toml",
        """
[thermal]
source = "simulated"
sysfs_root = "/tmp/fake"
cpu_zones = ["cpu0"]
gpu_zones = ["gpu0", "gpu1"]
board_zones = []
poll_interval_s = 2
nvpmodel = ["sudo", "-n", "nvpmodel"]
power_mode_nominal = 0
power_mode_throttled = 2
power_mode_safe = 1

[thermal_model]
baseplate_c = 45.5
busy_power_w = 30
noise_c = 0.0
seed = 7
time_scale = 60.0
""",
    )
    config = load_config(path)
    thermal = config.thermal
    assert thermal.source == "simulated"
    assert thermal.sysfs_root == "/tmp/fake"
    assert thermal.zones() == {Sensor.CPU: ["cpu0"], Sensor.GPU: ["gpu0", "gpu1"], Sensor.BOARD: []}
    assert thermal.poll_interval_s == 2
    assert thermal.nvpmodel == ["sudo", "-n", "nvpmodel"]
    assert (thermal.power_mode_nominal, thermal.power_mode_throttled) == (0, 2)
    assert thermal.power_mode_safe == 1
    model = config.thermal_model
    assert model == ThermalModelParameters(
        baseplate_c=45.5, busy_power_w=30, noise_c=0.0, seed=7, time_scale=60.0
    )
    # The rest of the file's sections keep their defaults.
    assert config.jobs == FlightConfig().jobs


@pytest.mark.parametrize(
    ("section", "line", "names"),
    [
        ("thermal", "source = 3", ["source", "str"]),
        ("thermal", 'poll_interval_s = "fast"', ["poll_interval_s", "float"]),
        ("thermal", "power_mode_safe = 1.5", ["power_mode_safe", "int"]),
        ("thermal", "power_mode_safe = true", ["power_mode_safe", "int"]),
        ("thermal", 'cpu_zones = "cpu-thermal"', ["cpu_zones", "list of strings"]),
        ("thermal", "gpu_zones = [1, 2]", ["gpu_zones", "list of strings"]),
        ("thermal", 'nvpmodel = "nvpmodel"', ["nvpmodel", "list of strings"]),
        ("thermal_model", 'baseplate_c = "hot"', ["baseplate_c", "float"]),
        ("thermal_model", "seed = 1.5", ["seed", "int"]),
        ("thermal_model", "noise_c = false", ["noise_c", "float"]),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused(
    tmp_path: Path, section: str, line: str, names: list[str]
) -> None:
    path = write(tmp_path / "bad.toml", f"[{section}]\n{line}\n")
    message = config_error(path)
    assert f"[{section}]" in message
    for name in names:
        assert name in message


@pytest.mark.parametrize("section", ["thermal", "thermal_model"])
def test_an_unknown_key_is_refused(tmp_path: Path, section: str) -> None:
    path = write(tmp_path / "bad.toml", f"[{section}]\nthrottle_c = 60.0\n")
    message = config_error(path)
    assert "unknown key 'throttle_c'" in message
    assert f"[{section}]" in message


def test_a_bad_source_is_refused(tmp_path: Path) -> None:
    message = config_error(write(tmp_path / "bad.toml", '[thermal]\nsource = "thermocouple"\n'))
    assert "'thermocouple'" in message
    assert "'sysfs'" in message
    assert "'simulated'" in message


@pytest.mark.parametrize("value", ["0", "-0.5"])
def test_a_poll_interval_must_be_positive(tmp_path: Path, value: str) -> None:
    message = config_error(write(tmp_path / "bad.toml", f"[thermal]\npoll_interval_s = {value}\n"))
    assert "poll_interval_s" in message


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("time_scale = -1.0", "time_scale"),
        ("time_scale = 0", "time_scale"),
        ("board_capacity_j_k = -600.0", "board_capacity_j_k"),
        ("idle_power_w = -1.0", "idle_power_w"),
        ("seed = -3", "seed"),
        ("baseplate_c = inf", "baseplate_c"),
    ],
)
def test_a_model_parameter_out_of_its_domain_is_refused(
    tmp_path: Path, line: str, name: str
) -> None:
    message = config_error(write(tmp_path / "bad.toml", f"[thermal_model]\n{line}\n"))
    assert "[thermal_model]" in message
    assert name in message


def test_a_section_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    message = config_error(write(tmp_path / "bad.toml", 'thermal = "sysfs"\n'))
    assert "[thermal]" in message


def test_an_unknown_section_names_the_known_ones(tmp_path: Path) -> None:
    message = config_error(write(tmp_path / "bad.toml", "[thermals]\nsource = 'sysfs'\n"))
    assert "[thermals]" in message
    assert "[thermal_model]" in message


def test_two_files_are_merged_key_by_key_the_later_winning(tmp_path: Path) -> None:
    mission = write(
        tmp_path / "mission.toml",
        """
[thermal]
source = "sysfs"
poll_interval_s = 1.0
power_mode_throttled = 2

[thermal_model]
baseplate_c = 30.0
seed = 4

[jobs]
session_cache = 2
""",
    )
    bench = write(
        tmp_path / "bench.toml",
        """
[thermal]
source = "simulated"

[thermal_model]
baseplate_c = 50.0
time_scale = 20.0
""",
    )
    config = load_config([mission, bench])
    assert config.thermal.source == "simulated"  # the later file's
    assert config.thermal.poll_interval_s == 1.0  # the earlier file's, not overridden
    assert config.thermal.power_mode_throttled == 2
    assert config.thermal_model.baseplate_c == 50.0
    assert config.thermal_model.seed == 4
    assert config.thermal_model.time_scale == 20.0
    assert config.jobs.session_cache == 2  # a section only the earlier file has
    # The other order: the mission's values win.
    reverse = load_config([bench, mission])
    assert reverse.thermal.source == "sysfs"
    assert reverse.thermal_model.baseplate_c == 30.0
    assert reverse.thermal_model.time_scale == 20.0


def test_a_merged_error_names_the_files(tmp_path: Path) -> None:
    first = write(tmp_path / "first.toml", "[thermal]\npoll_interval_s = 1.0\n")
    second = write(tmp_path / "second.toml", '[thermal]\nsource = "nowhere"\n')
    message = config_error([first, second])
    assert "first.toml" in message
    assert "second.toml" in message


def test_a_missing_file_among_several_is_refused(tmp_path: Path) -> None:
    first = write(tmp_path / "first.toml", "[thermal]\npoll_interval_s = 1.0\n")
    message = config_error([first, tmp_path / "absent.toml"])
    assert "absent.toml" in message
    assert "does not exist" in message


# --- the threshold rule --------------------------------------------------------------------------


@pytest.fixture
def pool() -> ParameterPool:
    pool = ParameterPool(DICTIONARY)
    pool.add_rule(THRESHOLDS, thresholds_rule)
    return pool


def test_the_defaults_follow_the_rule(pool: ParameterPool) -> None:
    values = {name: pool.read_named(name) for name in THRESHOLDS}
    assert values == {
        "THERMAL_THROTTLE": 70.0,
        "THERMAL_PAUSE": 78.0,
        "THERMAL_CRITICAL": 85.0,
        "THERMAL_HYSTERESIS": 3.0,
    }
    thresholds_rule(values)


def test_throttle_above_pause_is_refused(pool: ParameterPool) -> None:
    with pytest.raises(ParameterError, match="thresholds must rise"):
        pool.check_rules({"THERMAL_THROTTLE": 80.0})


def test_throttle_at_pause_is_refused(pool: ParameterPool) -> None:
    with pytest.raises(ParameterError):
        pool.check_rules({"THERMAL_THROTTLE": 78.0})


def test_pause_above_critical_is_refused(pool: ParameterPool) -> None:
    with pytest.raises(ParameterError):
        pool.check_rules({"THERMAL_PAUSE": 88.0})


def test_raising_all_three_together_is_accepted(pool: ParameterPool) -> None:
    raised = {"THERMAL_THROTTLE": 80.0, "THERMAL_PAUSE": 86.0, "THERMAL_CRITICAL": 90.0}
    pool.check_rules(raised)
    # One at a time, the first would have been refused: the rule sees the command as a whole.
    with pytest.raises(ParameterError):
        pool.check_rules({"THERMAL_THROTTLE": 80.0})


def test_the_rule_checks_against_the_values_set(pool: ParameterPool) -> None:
    pool.set(DICTIONARY.parameter("THERMAL_PAUSE"), 84.0)
    pool.check_rules({"THERMAL_THROTTLE": 80.0})  # below the pause now set
    with pytest.raises(ParameterError):
        pool.check_rules({"THERMAL_CRITICAL": 84.0})  # not above the pause now set


def test_unrelated_settings_are_not_checked(pool: ParameterPool) -> None:
    pool.check_rules({"SAFE_MODE_AUTO_EXIT": True, "THERMAL_SENSORS_USED": 3})


def test_a_rule_on_a_read_only_parameter_is_refused(pool: ParameterPool) -> None:
    with pytest.raises(ParameterError, match="TEMP_CPU is not settable"):
        pool.add_rule(("THERMAL_THROTTLE", "TEMP_CPU"), thresholds_rule)


class NoEvents:
    def raise_event(self, name: str, **values: Any) -> None:
        raise AssertionError(f"no event expected, got {name}")


def settings(dictionary: Dictionary, **values: float) -> dict[str, Any]:
    """PARAM_SET's arguments for `values` by parameter name."""
    return {
        "values": [
            {"id": dictionary.parameter(name).id, "value": value} for name, value in values.items()
        ]
    }


def test_param_set_checks_the_rule_on_the_whole_command(pool: ParameterPool) -> None:
    service = ParameterService(DICTIONARY, pool, NoEvents())  # type: ignore[arg-type]
    with pytest.raises(BadApplicationData, match="thresholds must rise"):
        service._check_settings(settings(DICTIONARY, THERMAL_THROTTLE=80.0))
    checked = service._check_settings(
        settings(DICTIONARY, THERMAL_THROTTLE=80.0, THERMAL_PAUSE=86.0, THERMAL_CRITICAL=90.0)
    )
    assert [(p.name, v) for p, v in checked] == [
        ("THERMAL_THROTTLE", 80.0),
        ("THERMAL_PAUSE", 86.0),
        ("THERMAL_CRITICAL", 90.0),
    ]


def test_param_set_still_checks_each_range(pool: ParameterPool) -> None:
    service = ParameterService(DICTIONARY, pool, NoEvents())  # type: ignore[arg-type]
    with pytest.raises(BadApplicationData):
        service._check_settings(settings(DICTIONARY, THERMAL_HYSTERESIS=0.1))


# --- the protected state -------------------------------------------------------------------------


def open_state(state_dir: Path) -> tuple[ProtectedState, ParameterPool]:
    """The protected state on `state_dir` as the payload opens it at start-up."""
    pool = ParameterPool(DICTIONARY)
    pool.add_rule(THRESHOLDS, thresholds_rule)
    state = ProtectedState(state_dir, UpsetLog(), pool)
    state.restore_parameters()
    return state, pool


THERMAL_SETTINGS = {
    "THERMAL_THROTTLE": 60.0,
    "THERMAL_PAUSE": 72.0,
    "THERMAL_CRITICAL": 80.0,
    "THERMAL_HYSTERESIS": 4.5,
    "THERMAL_SENSORS_USED": 3,
    "SAFE_MODE_AUTO_EXIT": True,
}


def test_the_thermal_settings_are_persisted() -> None:
    assert set(THERMAL_SETTINGS) <= set(PERSISTED_PARAMETERS)


def test_thermal_settings_and_safe_mode_survive_a_reopen(tmp_path: Path) -> None:
    state, pool = open_state(tmp_path)
    assert state.safe_mode() is None
    for name, value in THERMAL_SETTINGS.items():
        pool.set(DICTIONARY.parameter(name), value)
    state.set_safe_mode(SafeModeReason.THERMAL)
    reopened, pool = open_state(tmp_path)
    assert {name: pool.read_named(name) for name in THERMAL_SETTINGS} == THERMAL_SETTINGS
    assert reopened.safe_mode() is SafeModeReason.THERMAL


def test_leaving_safe_mode_survives_a_reopen(tmp_path: Path) -> None:
    state, _ = open_state(tmp_path)
    state.set_safe_mode(SafeModeReason.GROUND)
    state, _ = open_state(tmp_path)
    assert state.safe_mode() is SafeModeReason.GROUND
    state.set_safe_mode(None)
    state, _ = open_state(tmp_path)
    assert state.safe_mode() is None


def test_an_unknown_safe_mode_reason_still_means_safe(tmp_path: Path) -> None:
    state, _ = open_state(tmp_path)
    state.store.set(SAFE_MODE_KEY, 9)
    state, _ = open_state(tmp_path)
    assert state.safe_mode() is SafeModeReason.GROUND


def test_persisted_thresholds_that_break_the_rule_fall_back_to_the_defaults(
    tmp_path: Path,
) -> None:
    state, pool = open_state(tmp_path)
    pool.set(DICTIONARY.parameter("THERMAL_SENSORS_USED"), 5)  # a dead sensor masked
    pool.set(DICTIONARY.parameter("SCRUB_PERIOD"), 30)
    # As a power cut between the writes of one command could leave them: throttle raised,
    # pause not yet.
    state.store.set("THERMAL_THROTTLE", 80.0)
    _, pool = open_state(tmp_path)
    for name in THRESHOLDS:
        assert pool.read_named(name) == DICTIONARY.parameter(name).default
    # Only the settings of the broken rule fall back.
    assert pool.read_named("THERMAL_SENSORS_USED") == 5
    assert pool.read_named("SCRUB_PERIOD") == 30
    # The defaults are what is kept from now on.
    _, pool = open_state(tmp_path)
    assert pool.read_named("THERMAL_THROTTLE") == 70.0


def test_a_persisted_value_out_of_range_falls_back_alone(tmp_path: Path) -> None:
    state, pool = open_state(tmp_path)
    pool.set(DICTIONARY.parameter("THERMAL_PAUSE"), 80.0)
    state.store.set("THERMAL_HYSTERESIS", 50.0)  # beyond the range [0.5, 20]
    _, pool = open_state(tmp_path)
    assert pool.read_named("THERMAL_HYSTERESIS") == 3.0
    assert pool.read_named("THERMAL_PAUSE") == 80.0


# --- the job store's requeue ---------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / JOBS_DB_FILE, lambda: 1_000.0) as s:
        yield s


def running(store: JobStore) -> int:
    job = store.submit("m.onnx", "in.npy", 10, Redundancy.NONE, None)
    return store.mark_running(job.job_id).job_id


def test_requeue_puts_a_running_job_back_keeping_its_attempt(store: JobStore) -> None:
    job_id = running(store)
    job = store.requeue(job_id)
    assert job.state is JobState.QUEUED
    assert job.attempts == 1
    assert job.progress == 0
    assert store.get(job_id) == job
    assert store.next_runnable() == job
    assert store.mark_running(job_id).attempts == 2


def test_requeue_with_undo_attempt_gives_the_attempt_back(store: JobStore) -> None:
    job_id = running(store)
    job = store.requeue(job_id, undo_attempt=True)
    assert job.state is JobState.QUEUED
    assert job.attempts == 0
    assert store.mark_running(job_id).attempts == 1


def test_requeue_of_a_queued_job_is_refused(store: JobStore) -> None:
    job = store.submit("m.onnx", "in.npy", 10, Redundancy.NONE, None)
    with pytest.raises(InvalidTransition, match="is QUEUED, expected RUNNING"):
        store.requeue(job.job_id)
    assert store.get(job.job_id).state is JobState.QUEUED


@pytest.mark.parametrize("end", ["succeeded", "failed", "cancelled", "timed_out"])
def test_requeue_of_a_final_job_is_refused(store: JobStore, end: str) -> None:
    job_id = running(store)
    if end == "succeeded":
        store.mark_succeeded(job_id, "result.npy", bytes(32))
    elif end == "failed":
        store.mark_failed(job_id, 1, "broken")
    elif end == "cancelled":
        store.cancel(job_id)
    else:
        store.mark_timed_out(job_id)
    final = store.get(job_id)
    with pytest.raises(InvalidTransition, match="already"):
        store.requeue(job_id, undo_attempt=True)
    assert store.get(job_id) == final
