"""Sysfs thermal zones: real files in fake trees, the zone names of Orin and Xavier, faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from flight.thermal.readings import Reading, Sensor, SensorFault, ThermalSource
from flight.thermal.sysfs import DEFAULT_ZONES, THERMAL_CLASS_DIR, SysfsThermal, zone_types

ORIN_ZONES = [
    "cpu-thermal",
    "gpu-thermal",
    "cv0-thermal",
    "cv1-thermal",
    "cv2-thermal",
    "soc0-thermal",
    "soc1-thermal",
    "soc2-thermal",
    "tj-thermal",
]
XAVIER_ZONES = [
    "CPU-therm",
    "GPU-therm",
    "AUX-therm",
    "AO-therm",
    "PMIC-Die",
    "Tboard_tegra",
    "Tdiode_tegra",
    "thermal-fan-est",
]
ORIN_NO_BOARD = {**DEFAULT_ZONES, Sensor.BOARD: ()}


def add_zone(root: Path, number: int, zone_type: str, temp: str | None) -> Path:
    """A zone directory as sysfs has it: a link in the class directory to the device's directory.

    `temp` None leaves the zone without a `temp` file.
    """
    device = root / "sys/devices/virtual/thermal" / f"thermal_zone{number}"
    device.mkdir(parents=True)
    (device / "type").write_text(zone_type + "\n")
    if temp is not None:
        (device / "temp").write_text(temp)
    thermal = root / THERMAL_CLASS_DIR
    thermal.mkdir(parents=True, exist_ok=True)
    link = thermal / f"thermal_zone{number}"
    link.symlink_to(Path("../../devices/virtual/thermal") / f"thermal_zone{number}")
    return link


def add_zones(root: Path, types: list[str], base_millidegrees: int = 40000) -> None:
    for number, zone_type in enumerate(types):
        add_zone(root, number, zone_type, f"{base_millidegrees + 500 * number}\n")


def one(root: Path, sensor: Sensor = Sensor.CPU) -> Reading:
    """The reading of `sensor` from a source with only that sensor fitted."""
    source = SysfsThermal(root, {sensor: DEFAULT_ZONES[sensor]})
    return source.read()[sensor]


def test_an_orin_tree_gives_cpu_and_gpu_in_celsius(tmp_path: Path) -> None:
    add_zones(tmp_path, ORIN_ZONES, base_millidegrees=45500)
    source = SysfsThermal(tmp_path, ORIN_NO_BOARD)
    assert source.sensors() == (Sensor.CPU, Sensor.GPU)
    assert source.read() == {
        Sensor.CPU: Reading(Sensor.CPU, 45.5),
        Sensor.GPU: Reading(Sensor.GPU, 46.0),
    }


def test_an_orin_with_the_default_zones_reads_tj_as_its_board_sensor(tmp_path: Path) -> None:
    # Orin has no board zone; tj-thermal (zone 8 here) is the module's hottest point.
    add_zones(tmp_path, ORIN_ZONES)
    assert SysfsThermal(tmp_path).read()[Sensor.BOARD] == Reading(Sensor.BOARD, 44.0)


def test_a_board_sensor_without_any_accepted_zone_is_missing(tmp_path: Path) -> None:
    add_zones(tmp_path, ORIN_ZONES[:-1])
    board = SysfsThermal(tmp_path).read()[Sensor.BOARD]
    assert board.fault is SensorFault.MISSING
    for name in DEFAULT_ZONES[Sensor.BOARD]:
        assert name in board.detail


def test_a_xavier_tree_gives_all_three_sensors(tmp_path: Path) -> None:
    add_zones(tmp_path, XAVIER_ZONES, base_millidegrees=30000)
    source = SysfsThermal(tmp_path)
    assert source.sensors() == (Sensor.CPU, Sensor.GPU, Sensor.BOARD)
    readings = source.read()
    assert readings == {
        Sensor.CPU: Reading(Sensor.CPU, 30.0),
        Sensor.GPU: Reading(Sensor.GPU, 30.5),
        Sensor.BOARD: Reading(Sensor.BOARD, 32.5),
    }
    assert all(reading.ok for reading in readings.values())


def test_it_is_a_thermal_source_in_real_time(tmp_path: Path) -> None:
    source: ThermalSource = SysfsThermal(tmp_path)
    assert source.time_scale == 1.0


def test_zone_numbers_out_of_type_order(tmp_path: Path) -> None:
    # Zone 10 sorts before zone 2 as text; the lower number must win a duplicated type.
    add_zone(tmp_path, 10, "cpu-thermal", "99000\n")
    add_zone(tmp_path, 2, "cpu-thermal", "41000\n")
    add_zone(tmp_path, 7, "Tboard_tegra", "35000\n")
    add_zone(tmp_path, 0, "GPU-therm", "52250\n")
    readings = SysfsThermal(tmp_path).read()
    assert readings[Sensor.CPU] == Reading(Sensor.CPU, 41.0)
    assert readings[Sensor.GPU] == Reading(Sensor.GPU, 52.25)
    assert readings[Sensor.BOARD] == Reading(Sensor.BOARD, 35.0)


def test_the_first_accepted_name_wins_whatever_the_zone_order(tmp_path: Path) -> None:
    add_zone(tmp_path, 0, "CPU-therm", "60000\n")
    add_zone(tmp_path, 1, "cpu-thermal", "50000\n")
    assert one(tmp_path) == Reading(Sensor.CPU, 50.0)


def test_zone_types_are_matched_case_sensitively(tmp_path: Path) -> None:
    add_zone(tmp_path, 0, "CPU-THERMAL", "50000\n")
    assert one(tmp_path).fault is SensorFault.MISSING


def test_zone_types_lists_the_zones_and_skips_other_entries(tmp_path: Path) -> None:
    add_zones(tmp_path, XAVIER_ZONES)
    thermal = tmp_path / THERMAL_CLASS_DIR
    (thermal / "cooling_device0").mkdir()
    (thermal / "cooling_device0" / "type").write_text("cpu-thermal\n")
    (thermal / "thermal_zone_x").mkdir()
    (thermal / "thermal_zone_x" / "type").write_text("gpu-thermal\n")
    (thermal / "thermal_zone9").mkdir()  # a zone without a type is left out
    types = zone_types(tmp_path)
    assert list(types) == XAVIER_ZONES
    assert types["Tboard_tegra"] == thermal / "thermal_zone5"


def test_zone_types_of_a_missing_root_is_empty(tmp_path: Path) -> None:
    assert zone_types(tmp_path / "absent") == {}


@pytest.mark.parametrize("root_kind", ["absent", "file", "no thermal class"])
def test_read_never_raises_on_a_bad_root(tmp_path: Path, root_kind: str) -> None:
    root = tmp_path / "root"
    if root_kind == "file":
        root.write_text("not a directory")
    elif root_kind == "no thermal class":
        (root / "sys/class").mkdir(parents=True)
    source = SysfsThermal(root)
    for _ in range(2):
        readings = source.read()
        assert set(readings) == {Sensor.CPU, Sensor.GPU, Sensor.BOARD}
        assert all(reading.fault is SensorFault.MISSING for reading in readings.values())
        assert all(reading.celsius is None for reading in readings.values())


def test_no_zone_of_an_accepted_type_is_missing_and_names_the_types(tmp_path: Path) -> None:
    add_zone(tmp_path, 0, "gpu-thermal", "50000\n")
    reading = one(tmp_path)
    assert reading.fault is SensorFault.MISSING
    assert reading.celsius is None
    assert "cpu-thermal" in reading.detail
    assert "CPU-therm" in reading.detail


def test_a_zone_without_temp_is_missing(tmp_path: Path) -> None:
    add_zone(tmp_path, 3, "cpu-thermal", None)
    reading = one(tmp_path)
    assert reading.fault is SensorFault.MISSING
    assert reading.detail == "thermal_zone3/temp: missing"


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("", "thermal_zone1/temp: empty"),
        ("\n", "thermal_zone1/temp: empty"),
        ("abc\n", "thermal_zone1/temp: 'abc'"),
        ("45.5\n", "thermal_zone1/temp: '45.5'"),
        ("45_500\n", "thermal_zone1/temp: '45_500'"),
        ("45500 46000\n", "thermal_zone1/temp: '45500 46000'"),
    ],
)
def test_content_that_is_not_an_integer_is_unreadable(
    tmp_path: Path, content: str, detail: str
) -> None:
    add_zone(tmp_path, 1, "cpu-thermal", content)
    assert one(tmp_path) == Reading(Sensor.CPU, None, SensorFault.UNREADABLE, detail)


def test_long_junk_is_shortened_in_the_detail(tmp_path: Path) -> None:
    add_zone(tmp_path, 1, "cpu-thermal", "x" * 5000)
    reading = one(tmp_path)
    assert reading.fault is SensorFault.UNREADABLE
    assert reading.detail.startswith("thermal_zone1/temp: 'xxx")
    assert reading.detail.endswith("...")
    assert len(reading.detail) < 90


def test_bytes_that_are_not_text_are_unreadable(tmp_path: Path) -> None:
    zone = add_zone(tmp_path, 1, "cpu-thermal", None)
    (zone / "temp").write_bytes(b"\xff\xfe4\x00")
    reading = one(tmp_path)
    assert reading.fault is SensorFault.UNREADABLE
    assert reading.detail.startswith("thermal_zone1/temp: ")


def test_a_temp_that_cannot_be_read_is_unreadable(tmp_path: Path) -> None:
    zone = add_zone(tmp_path, 4, "cpu-thermal", None)
    (zone / "temp").mkdir()  # reading it fails with EISDIR, an OSError like a driver's EIO
    reading = one(tmp_path)
    assert reading.fault is SensorFault.UNREADABLE
    assert reading.detail == "thermal_zone4/temp: Is a directory"


@pytest.mark.parametrize(
    ("content", "celsius"),
    [("-40000\n", -40.0), ("107000\n", 107.0), ("0", 0.0), ("  36750  \n", 36.75)],
)
def test_plausible_values_are_temperatures(tmp_path: Path, content: str, celsius: float) -> None:
    add_zone(tmp_path, 0, "cpu-thermal", content)
    assert one(tmp_path) == Reading(Sensor.CPU, celsius)


@pytest.mark.parametrize(("content", "shown"), [("250000\n", "250"), ("-273000\n", "-273")])
def test_values_outside_the_valid_range_are_out_of_range(
    tmp_path: Path, content: str, shown: str
) -> None:
    add_zone(tmp_path, 2, "cpu-thermal", content)
    reading = one(tmp_path)
    assert reading.fault is SensorFault.OUT_OF_RANGE
    assert reading.celsius is None
    assert reading.detail == f"thermal_zone2/temp: read {shown} C"


def test_each_sensor_gets_its_own_fault(tmp_path: Path) -> None:
    add_zone(tmp_path, 0, "CPU-therm", "abc")
    add_zone(tmp_path, 1, "GPU-therm", "250000")
    readings = SysfsThermal(tmp_path).read()
    assert readings[Sensor.CPU].fault is SensorFault.UNREADABLE
    assert readings[Sensor.GPU].fault is SensorFault.OUT_OF_RANGE
    assert readings[Sensor.BOARD].fault is SensorFault.MISSING


def test_a_zone_whose_files_vanish_is_found_again_under_another_number(tmp_path: Path) -> None:
    add_zones(tmp_path, ORIN_ZONES)
    source = SysfsThermal(tmp_path, ORIN_NO_BOARD)
    assert source.read()[Sensor.GPU] == Reading(Sensor.GPU, 40.5)

    thermal = tmp_path / THERMAL_CLASS_DIR
    devices = tmp_path / "sys/devices/virtual/thermal"
    (thermal / "thermal_zone1").unlink()
    (devices / "thermal_zone1").rename(devices / "gone")
    readings = source.read()
    assert readings[Sensor.GPU].fault is SensorFault.MISSING
    assert readings[Sensor.CPU] == Reading(Sensor.CPU, 40.0)

    add_zone(tmp_path, 12, "gpu-thermal", "61000\n")
    assert source.read()[Sensor.GPU] == Reading(Sensor.GPU, 61.0)


def test_a_sensor_not_found_at_first_is_found_once_its_zone_appears(tmp_path: Path) -> None:
    source = SysfsThermal(tmp_path)
    assert source.read()[Sensor.BOARD].fault is SensorFault.MISSING
    add_zone(tmp_path, 5, "Tboard_tegra", "33000\n")
    assert source.read()[Sensor.BOARD] == Reading(Sensor.BOARD, 33.0)


def test_a_sensor_with_no_accepted_names_is_not_fitted(tmp_path: Path) -> None:
    add_zones(tmp_path, XAVIER_ZONES)
    source = SysfsThermal(tmp_path, {Sensor.CPU: ["CPU-therm"], Sensor.BOARD: []})
    assert source.sensors() == (Sensor.CPU,)
    assert list(source.read()) == [Sensor.CPU]


def test_custom_zone_names(tmp_path: Path) -> None:
    add_zones(tmp_path, ORIN_ZONES)
    source = SysfsThermal(
        tmp_path,
        {Sensor.CPU: ("cpu-thermal",), Sensor.GPU: ("gpu-thermal",), Sensor.BOARD: ("tj-thermal",)},
    )
    assert source.read()[Sensor.BOARD] == Reading(Sensor.BOARD, 44.0)


def test_zones_are_read_afresh_each_time(tmp_path: Path) -> None:
    zone = add_zone(tmp_path, 0, "cpu-thermal", "40000\n")
    source = SysfsThermal(tmp_path, {Sensor.CPU: ("cpu-thermal",)})
    assert source.read()[Sensor.CPU].celsius == 40.0
    (zone / "temp").write_text("71500\n")
    assert source.read()[Sensor.CPU].celsius == 71.5
