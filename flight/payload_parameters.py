"""The payload's parameter pool made whole: every read-only parameter of the dictionary given a
source, the rules between settings, and the settings the payload process itself follows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flight.downlink import DownlinkTransmitter
from flight.jobs.runner import JobRunner
from flight.parameters import ParameterError, ParameterPool
from flight.power.setup import SETTINGS as POWER_SETTINGS
from flight.power.setup import settings_rule
from flight.protection.scrubber import Scrubber
from flight.protection_reports import follow_scrub_settings
from flight.thermal.setup import THRESHOLDS, thresholds_rule
from telemetry_defs.loader import DictionaryError
from telemetry_defs.model import Dictionary

log = logging.getLogger(__name__)


def payload_parameters(
    dictionary: Dictionary,
    sources: Mapping[str, Callable[[], object]],
    starts: Mapping[str, Any],
    downlink: DownlinkTransmitter,
    runner: JobRunner,
    scrubber: Scrubber,
) -> ParameterPool:
    """The pool of the dictionary's parameters, the read-only ones read from `sources`, the
    settings in `starts` starting at its values (the configuration's) rather than their
    defaults; DictionaryError when a read-only one has no source, as housekeeping could not be
    made."""
    pool = ParameterPool(dictionary)
    pool.provide_many(sources)
    missing = pool.missing()
    if missing:
        raise DictionaryError(
            f"the dictionary defines parameters this payload has no source for: "
            f"{', '.join(missing)}"
        )
    pool.add_rule(THRESHOLDS, thresholds_rule)
    pool.add_rule(tuple(POWER_SETTINGS), settings_rule)
    # Set before anything subscribes: the first value a follower gets is the configured one.
    for name, raw in starts.items():
        parameter = dictionary.parameter(name)
        try:
            pool.check_setting(parameter.id, raw)
            pool.check_rules({name: raw})
        except ParameterError as exc:
            log.warning(
                "configured %s = %r not used (%s): %r kept", name, raw, exc, parameter.default
            )
        else:
            pool.set(parameter, raw)
    pool.subscribe("LOG_LEVEL", lambda level: logging.getLogger().setLevel(level))
    pool.subscribe("JOB_QUEUE_HOLD", lambda hold: setattr(runner, "paused", bool(hold)))
    pool.subscribe("DOWNLINK_IDLE_INTERVAL", lambda ms: downlink.set_idle_interval(ms / 1000))
    follow_scrub_settings(pool, scrubber)
    return pool
