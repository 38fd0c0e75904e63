"""The payload's critical state in triplicate: lifetime upset counts, the settings an operator
gave the scrubber, the thermal governor and the power budget, and safe mode, so that neither an
upset nor a reboot loses them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flight.parameters import ParameterError, ParameterPool
from flight.protection.triplicate import TripleStore
from flight.protection.upsets import Upset, UpsetLog
from flight.thermal.monitor import SafeModeReason

log = logging.getLogger(__name__)

STATE_DIR = "protection"
#: Settable parameters kept across reboots (critical configuration of the protection, of the
#: thermal governor and of the power budget).
PERSISTED_PARAMETERS = (
    "SCRUB_PERIOD",
    "SCRUB_RATE",
    "KNOWN_ANSWER_INTERVAL",
    "THERMAL_THROTTLE",
    "THERMAL_PAUSE",
    "THERMAL_CRITICAL",
    "THERMAL_HYSTERESIS",
    "THERMAL_SENSORS_USED",
    "SAFE_MODE_AUTO_EXIT",
    "POWER_SLOW_SOC",
    "POWER_SLOW_DUTY",
    "POWER_HOLD_SOC",
    "POWER_HOLD_PRIORITY",
    "POWER_FLOOR_SOC",
    "POWER_HYSTERESIS",
    "POWER_ECLIPSE_PRIORITY",
)
# Safe mode: 0 not in it, else the SafeModeReason it was entered for. A restart stays in it.
SAFE_MODE_KEY = "safe_mode"


class ProtectedState:
    """Lifetime upset counters and persisted settings, voted over three copies."""

    def __init__(self, state_dir: Path, upsets: UpsetLog, pool: ParameterPool) -> None:
        """Load (or create) the store; the upset log carries the counts of earlier boots from
        now on, and every later upset is written through."""
        self.upsets = upsets
        self.pool = pool
        defaults: dict[str, int | float | bool | str] = dict.fromkeys(upsets.counts(), 0)
        for name in PERSISTED_PARAMETERS:
            defaults[name] = pool.read(pool.dictionary.parameter(name))
        defaults[SAFE_MODE_KEY] = 0
        self.store = TripleStore(state_dir / STATE_DIR, defaults, upsets, name="protection state")
        earlier = self.store.values()
        upsets.carry_over({key: int(earlier[key]) for key in upsets.counts()})
        # Upsets found while loading (this store's own, the boot count's) are in the log now.
        self.store.update(upsets.counts())
        upsets.subscribe(self._persist)

    def _persist(self, upset: Upset) -> None:
        key = f"{upset.location.name}.{upset.outcome.value}"
        try:
            self.store.set(key, self.upsets.counts()[key])
        except OSError as exc:  # the count stays in memory; the next upset writes it again
            log.error("protection state not written: %s", exc)

    def restore_parameters(self) -> None:
        """Give the persisted settings back to the parameter pool, and keep them in step."""
        dictionary = self.pool.dictionary
        restored = {}
        for name in PERSISTED_PARAMETERS:
            parameter = dictionary.parameter(name)
            value = self.store.get(name)
            try:
                self.pool.check_setting(parameter.id, value)
            except ParameterError as exc:  # a stale value outside a newer range: the default
                log.warning("persisted %s = %r refused (%s): default kept", name, value, exc)
            else:
                restored[name] = value
        # Values that no longer agree with each other (a newer rule): those keep their defaults.
        for names, why in self.pool.broken_rules(restored):
            log.warning("persisted %s refused (%s): defaults kept", ", ".join(sorted(names)), why)
            restored = {name: value for name, value in restored.items() if name not in names}
        for name, value in restored.items():
            self.pool.set(dictionary.parameter(name), value)
        for name in PERSISTED_PARAMETERS:
            self.pool.subscribe(name, self._persister(name))

    def _persister(self, name: str) -> Callable[[Any], None]:
        def persist(raw: Any) -> None:
            try:
                self.store.set(name, raw)
            except OSError as exc:
                log.error("setting %s not persisted: %s", name, exc)

        return persist

    def safe_mode(self) -> SafeModeReason | None:
        """Why the payload is in safe mode (kept across restarts), or None."""
        value = self.store.get(SAFE_MODE_KEY)
        try:
            return SafeModeReason(int(value)) if value else None
        except ValueError:  # an unknown reason still means safe
            return SafeModeReason.GROUND

    def set_safe_mode(self, reason: SafeModeReason | None) -> None:
        try:
            self.store.set(SAFE_MODE_KEY, 0 if reason is None else int(reason))
        except OSError as exc:  # kept in memory; the monitor holds the jobs either way
            log.error("safe mode not persisted: %s", exc)

    def scrub(self) -> None:
        """Vote and repair every copy (the scrubber calls this each pass)."""
        self.store.scrub()
