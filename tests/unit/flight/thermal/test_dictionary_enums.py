"""The thermal code's enums are the dictionary's: the ground decodes what the payload sends."""

from __future__ import annotations

import enum

import pytest

from flight.thermal.governor import Level
from flight.thermal.monitor import SafeModeReason
from flight.thermal.readings import Sensor, SensorFault
from telemetry_defs.loader import default_dictionary

D = default_dictionary()


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (Level, "ThermalLevel"),
        (Sensor, "ThermalSensor"),
        (SensorFault, "SensorFault"),
        (SafeModeReason, "SafeModeReason"),
    ],
)
def test_a_code_enum_matches_its_dictionary_enum(code: type[enum.IntEnum], name: str) -> None:
    assert {member.name: int(member) for member in code} == D.enums[name].values
