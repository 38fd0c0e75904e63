"""The power system's files on a fake tree: a battery gauge in the power_supply class, an INA3221
rail on hwmon found through a wildcard, by its channel's number or its label, plain-unit files a
relay writes, the current's sign, and each way a file can fail (missing, unreadable, nonsense,
out of range, a label no channel has)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flight.config import ConfigError, FlightConfig
from flight.power.config import PowerConfig
from flight.power.readings import Fault, Quantity
from flight.power.setup import power_source
from flight.power.sysfs import ChannelLabelError, PowerFiles, SysfsPower, unit_scale
from flight.thermal.readings import SensorFault

BATTERY = "sys/class/power_supply/battery"
SOLAR = "sys/class/power_supply/solar"
RAIL = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon*"


class FakeTree:
    """A battery gauge (capacity, voltage_now, current_now), a solar supply (power_now), an
    INA3221 whose hwmon number the kernel chose (in1_input, curr1_input), a relay's sunlit."""

    def __init__(self, root: Path, hwmon: int = 3) -> None:
        self.root = root
        self.write(f"{BATTERY}/capacity", "64\n")
        self.write(f"{BATTERY}/voltage_now", "7824000\n")  # uV
        self.write(f"{BATTERY}/current_now", "-1250000\n")  # uA: discharging
        self.write(f"{SOLAR}/power_now", "48500000\n")  # uW
        rail = f"sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon{hwmon}"
        self.write(f"{rail}/in1_label", "VDD_IN\n")
        self.write(f"{rail}/in1_input", "19104\n")  # mV
        self.write(f"{rail}/curr1_input", "1520\n")  # mA
        self.write("run/eps/sunlit", "1\n")

    def write(self, path: str, text: str) -> None:
        file = self.root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_name(file.name + ".new")
        partial.write_text(text)
        partial.replace(file)

    def remove(self, path: str) -> None:
        (self.root / path).unlink()


FILES = PowerFiles(
    solar_power=f"{SOLAR}/power_now",
    payload_voltage=f"{RAIL}/in1_input",
    payload_current=f"{RAIL}/curr1_input",
    sunlit="run/eps/sunlit",
)


@pytest.fixture
def tree(tmp_path: Path) -> FakeTree:
    return FakeTree(tmp_path)


def test_every_quantity_in_its_kernel_unit(tree: FakeTree) -> None:
    source = SysfsPower(tree.root, FILES)
    assert source.quantities() == tuple(Quantity)
    r = source.read()
    assert r.faults == {}
    assert r.soc_pct == 64.0
    assert r.battery_v == pytest.approx(7.824)
    assert r.battery_a == pytest.approx(-1.25)
    assert r.battery_w == pytest.approx(-9.78)
    assert r.solar_w == pytest.approx(48.5)
    assert r.payload_w == pytest.approx(19.104 * 1.52)
    assert r.sunlit is True
    tree.write("run/eps/sunlit", "0\n")
    assert source.read().sunlit is False


def test_only_the_files_given_are_read(tree: FakeTree) -> None:
    source = SysfsPower(tree.root, PowerFiles(battery_voltage="", battery_current=""))
    assert source.quantities() == (Quantity.SOC,)
    r = source.read()
    assert (r.soc_pct, r.battery_v, r.battery_a, r.sunlit) == (64.0, None, None, None)


def test_a_gauge_that_reports_discharge_as_positive_is_turned_round(tree: FakeTree) -> None:
    tree.write(f"{BATTERY}/current_now", "1250000\n")
    r = SysfsPower(tree.root, PowerFiles(current_sign=-1)).read()
    assert r.battery_a == pytest.approx(-1.25)


def test_files_a_relay_writes_in_plain_units(tree: FakeTree) -> None:
    tree.write("run/eps/soc", "41.5\n")
    tree.write("run/eps/vbat", "7.61\n")
    tree.write("run/eps/ibat", "0.8\n")
    tree.write("run/eps/solar_w", "52.25\n")
    files = PowerFiles(
        soc="run/eps/soc",
        battery_voltage="run/eps/vbat",
        battery_current="run/eps/ibat",
        solar_power="run/eps/solar_w",
    )
    r = SysfsPower(tree.root, files).read()
    assert (r.soc_pct, r.battery_v, r.battery_a, r.solar_w) == (41.5, 7.61, 0.8, 52.25)


@pytest.mark.parametrize(
    ("name", "scale"),
    [
        ("capacity", 1.0),
        ("voltage_now", 1e-6),
        ("current_avg", 1e-6),
        ("power_now", 1e-6),
        ("in2_input", 1e-3),
        ("curr3_input", 1e-3),
        ("power1_input", 1e-6),
        ("in_power0_input", 1e-3),
        ("in_current1_input", 1e-3),
        ("soc", 1.0),
    ],
)
def test_units_follow_the_file_name(name: str, scale: float) -> None:
    assert unit_scale(f"some/dir/{name}") == scale


def test_a_missing_file_is_a_fault_of_its_quantity_alone(tree: FakeTree) -> None:
    tree.remove(f"{SOLAR}/power_now")
    r = SysfsPower(tree.root, FILES).read()
    assert r.solar_w is None and r.soc_pct == 64.0
    assert r.faults[Quantity.SOLAR].fault is SensorFault.MISSING
    assert "power_now" in r.faults[Quantity.SOLAR].detail


def test_nonsense_is_unreadable_and_an_implausible_value_out_of_range(tree: FakeTree) -> None:
    source = SysfsPower(tree.root, FILES)
    tree.write(f"{BATTERY}/capacity", "N/A\n")
    tree.write(f"{BATTERY}/voltage_now", "\n")
    tree.write("run/eps/sunlit", "2\n")
    tree.write(f"{SOLAR}/power_now", "-5000000\n")
    faults = source.read().faults
    assert faults[Quantity.SOC].fault is SensorFault.UNREADABLE
    assert faults[Quantity.VOLTAGE].fault is SensorFault.UNREADABLE
    assert faults[Quantity.SUNLIGHT].fault is SensorFault.OUT_OF_RANGE
    assert faults[Quantity.SOLAR] == Fault(SensorFault.OUT_OF_RANGE, "read -5")
    tree.write(f"{BATTERY}/capacity", "180\n")
    assert source.read().faults[Quantity.SOC].fault is SensorFault.OUT_OF_RANGE


def test_a_file_that_cannot_be_read_is_unreadable(tree: FakeTree) -> None:
    (tree.root / "run/eps/sunlit").unlink()
    (tree.root / "run/eps/sunlit").mkdir()  # reading a directory fails with EISDIR
    fault = SysfsPower(tree.root, FILES).read().faults[Quantity.SUNLIGHT]
    assert fault.fault is SensorFault.UNREADABLE


def test_a_rail_renumbered_by_the_kernel_is_found_again(tmp_path: Path) -> None:
    tree = FakeTree(tmp_path, hwmon=3)
    source = SysfsPower(tree.root, FILES)
    first = source.read().payload_w
    rail = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon"
    (rail / "hwmon3").rename(rail / "hwmon5")
    missed = source.read()  # the cached path is gone: a fault, and a new search next time
    assert missed.faults[Quantity.PAYLOAD].fault is SensorFault.MISSING
    assert source.read().payload_w == first


def test_a_wildcard_without_a_match_is_missing(tmp_path: Path) -> None:
    tree = FakeTree(tmp_path)
    files = PowerFiles(payload_power="sys/class/hwmon/hwmon*/power1_input")
    fault = SysfsPower(tree.root, files).read().faults[Quantity.PAYLOAD]
    assert fault.fault is SensorFault.MISSING and "no such file" in fault.detail


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_power": "p", "payload_voltage": "v", "payload_current": "i"},
        {"solar_voltage": "v"},
        {"payload_current": "i"},
        {"current_sign": 0},
    ],
)
def test_files_that_do_not_make_a_reading_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PowerFiles(**kwargs)  # type: ignore[arg-type]


# -- channels by label -----------------------------------------------------------------------------


def jetson_rails(tree: FakeTree) -> None:
    """An Orin's INA3221 on hwmon: the module's input, its CPU/GPU/CV rail and its SoC rail."""
    rail = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    for n, label, mv, ma in ((2, "VDD_CPU_GPU_CV", 19080, 610), (3, "VDD_SOC", 19090, 350)):
        tree.write(f"{rail}/in{n}_label", f"{label}\n")
        tree.write(f"{rail}/in{n}_input", f"{mv}\n")
        tree.write(f"{rail}/curr{n}_input", f"{ma}\n")


def test_a_channel_named_by_its_hwmon_label_is_read_by_its_number(tree: FakeTree) -> None:
    jetson_rails(tree)
    files = PowerFiles(
        payload_voltage=f"{RAIL}/in{{VDD_CPU_GPU_CV}}_input",
        payload_current=f"{RAIL}/curr{{VDD_CPU_GPU_CV}}_input",
    )
    source = SysfsPower(tree.root, files)
    # Resolved once, at start: the wildcard stays for a renumbered device.
    assert (source.files.payload_voltage, source.files.payload_current) == (
        f"{RAIL}/in2_input",
        f"{RAIL}/curr2_input",
    )
    assert source.read().payload_w == pytest.approx(19.080 * 0.610)


def test_the_number_form_and_the_label_form_read_the_same_channel(tree: FakeTree) -> None:
    by_label = PowerFiles(
        payload_voltage=f"{RAIL}/in{{VDD_IN}}_input",
        payload_current=f"{RAIL}/curr{{VDD_IN}}_input",
    )
    assert SysfsPower(tree.root, by_label).read().payload_w == pytest.approx(19.104 * 1.52)
    assert SysfsPower(tree.root, FILES).read().payload_w == pytest.approx(19.104 * 1.52)


def test_a_channel_named_by_the_iio_drivers_rail_name(tmp_path: Path) -> None:
    tree = FakeTree(tmp_path)
    iio = "sys/bus/i2c/devices/1-0040/iio:device*"
    for n, label, mw in ((0, "VDD_IN", 5210), (1, "VDD_GPU", 1890), (2, "VDD_CPU", 940)):
        tree.write(f"sys/bus/i2c/devices/1-0040/iio:device0/rail_name_{n}", f"{label}\n")
        tree.write(f"sys/bus/i2c/devices/1-0040/iio:device0/in_power{n}_input", f"{mw}\n")
    source = SysfsPower(tree.root, PowerFiles(payload_power=f"{iio}/in_power{{VDD_GPU}}_input"))
    assert source.files.payload_power == f"{iio}/in_power1_input"
    assert source.read().payload_w == pytest.approx(1.89)


def test_a_label_no_channel_has_is_refused_at_start_with_the_labels_found(tree: FakeTree) -> None:
    jetson_rails(tree)
    files = PowerFiles(payload_power=f"{RAIL}/power{{VDD_GPU}}_input")
    with pytest.raises(ChannelLabelError) as refused:
        SysfsPower(tree.root, files)
    message = str(refused.value)
    assert "no channel labelled 'VDD_GPU'" in message, message
    assert "labels found: VDD_IN (1), VDD_CPU_GPU_CV (2), VDD_SOC (3)" in message, message
    # No device at all: nothing found.
    missing = PowerFiles(payload_power="sys/class/hwmon/hwmon*/power{VDD_IN}_input")
    with pytest.raises(ChannelLabelError, match=r"labels found: none"):
        SysfsPower(tree.root, missing)


def test_a_label_no_channel_has_is_a_configuration_error(tree: FakeTree) -> None:
    power = PowerConfig(
        source="sysfs",
        sysfs_root=str(tree.root),
        payload_voltage_file=f"{RAIL}/in{{VDD_GPU}}_input",
        payload_current_file=f"{RAIL}/curr{{VDD_GPU}}_input",
    )
    with pytest.raises(ConfigError, match=r"^\[power\] .*'VDD_GPU'.*labels found: VDD_IN \(1\)"):
        power_source(FlightConfig(power=power), None, lambda: 0.0, tree.root)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path",
    [
        "sys/hwmon{VDD_IN}/in1_input",  # in a directory's name
        "hwmon/in{VDD_IN}_{VDD_SOC}_input",  # two
        "hwmon/in{}_input",  # empty
        "hwmon/in{VDD_IN_input",  # unclosed
    ],
)
def test_a_label_written_wrong_is_refused_with_the_configuration(path: str) -> None:
    with pytest.raises(ValueError, match="label"):
        PowerFiles(payload_power=path)
