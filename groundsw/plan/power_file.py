"""The `--power` file of `groundsw plan`, once read: the battery, the loads, the payload's
power budget, the thermal limit, the downlink and the planning margins. Every key optional (the
defaults are the payload's and the bench's, docs/power.md); unknown ones are refused.

    [battery]
    capacity_wh = 80.0          # [power] battery_capacity_wh
    initial_soc_pct = 80.0      # now: POWER_STATUS BATTERY_SOC
    [loads]
    solar_w = 60.0              # [power_model] solar_w: the array while sunlit
    bus_load_w = 10.0           # [power_model] bus_load_w
    payload_idle_w = 8.0        # [power_model] payload_idle_w
    compute_w = 40.0            # [power] compute_power_w
    [budget]                    # the payload's ST[20] parameters, and [power] reading_lag_s
    floor_soc_pct = 20.0        # POWER_FLOOR_SOC
    hold_soc_pct = 35.0         # POWER_HOLD_SOC
    slow_soc_pct = 50.0         # POWER_SLOW_SOC
    hysteresis_pct = 2.0        # POWER_HYSTERESIS
    slow_duty_pct = 50.0        # POWER_SLOW_DUTY
    hold_priority = 128         # POWER_HOLD_PRIORITY
    eclipse_priority = 0        # POWER_ECLIPSE_PRIORITY
    reading_lag_s = 2.0
    [thermal]
    duty_pct = 100.0            # what the thermal governor allows at the baseplate's temperature
    [link]
    baud = 115200               # the downlink's line rate (default: groundsw --baud)
    result_overhead_s = 2.0     # requests and reports per result
    pass_margin_s = 30.0        # not used at each end of a pass
    [plan]
    lead_s = 60.0               # from the contact's start to the first release
    reserve_pct = 5.0           # charge kept above the floor
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from groundsw.plan.model import (
    LinkModel,
    PlanInputError,
    PlanSettings,
    PowerModel,
    ThermalLimit,
)

_SECTIONS: dict[str, dict[str, str]] = {
    "battery": {"capacity_wh": "capacity_wh", "initial_soc_pct": "initial_soc_pct"},
    "loads": {
        "solar_w": "solar_w",
        "bus_load_w": "bus_load_w",
        "payload_idle_w": "payload_idle_w",
        "compute_w": "compute_w",
    },
    "budget": {
        "floor_soc_pct": "floor_soc_pct",
        "hold_soc_pct": "hold_soc_pct",
        "slow_soc_pct": "slow_soc_pct",
        "hysteresis_pct": "hysteresis_pct",
        "slow_duty_pct": "slow_duty",
        "hold_priority": "hold_priority",
        "eclipse_priority": "eclipse_priority",
        "reading_lag_s": "reading_lag_s",
    },
    "thermal": {"duty_pct": "duty"},
    "link": {
        "baud": "baud",
        "result_overhead_s": "result_overhead_s",
        "pass_margin_s": "pass_margin_s",
    },
    "plan": {"lead_s": "lead_s", "reserve_pct": "reserve_pct"},
}
# The planning margins' defaults are PlanSettings' own, not copies that could drift from them.
_PLAN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PlanSettings)}
_INTEGERS = frozenset({"hold_priority", "eclipse_priority", "baud"})
_PERCENT_AS_SHARE = frozenset({"slow_duty", "duty"})


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    """What the file says: the power model, the thermal limit, the link, the planning margins."""

    power: PowerModel
    thermal: ThermalLimit
    link: LinkModel
    lead_s: float
    reserve_pct: float


def parse_limits(
    document: Mapping[str, Any], *, baud: int, overrides: Mapping[str, float] | None = None
) -> PayloadLimits:
    """The limits a read `--power` file gives (an empty one: every default), with `overrides`
    by field name (initial_soc_pct, duty, lead_s, reserve_pct...) from the command line."""
    values: dict[str, Any] = {}
    for section, table in document.items():
        keys = _SECTIONS.get(section)
        if keys is None:
            raise PlanInputError(
                f"the power file has a section [{section}]: expected {_listed(_SECTIONS)}"
            )
        if not isinstance(table, Mapping):
            raise PlanInputError(f"[{section}] in the power file is not a table")
        for key, value in table.items():
            field = keys.get(key)
            if field is None:
                raise PlanInputError(
                    f"[{section}] in the power file has an unknown key {key!r}: expected "
                    f"{_listed(keys)}"
                )
            values[field] = _value(section, key, field, value)
    values.update(overrides or {})
    values.setdefault("baud", baud)

    def fields_of(cls: type) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in values.items() if k in names}

    return PayloadLimits(
        power=PowerModel(**fields_of(PowerModel)),
        thermal=ThermalLimit(**fields_of(ThermalLimit)),
        link=LinkModel(**fields_of(LinkModel)),
        lead_s=values.get("lead_s", _PLAN_DEFAULTS["lead_s"]),
        reserve_pct=values.get("reserve_pct", _PLAN_DEFAULTS["reserve_pct"]),
    )


def _value(section: str, key: str, field: str, value: Any) -> int | float:
    where = f"[{section}] {key}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PlanInputError(f"{where} in the power file is not a number: {value!r}")
    if field in _INTEGERS:
        if not isinstance(value, int):
            raise PlanInputError(f"{where} in the power file must be a whole number: {value!r}")
        return value
    if field in _PERCENT_AS_SHARE:
        return float(value) / 100.0
    return float(value)


def _listed(keys: Mapping[str, Any]) -> str:
    return ", ".join(keys)
