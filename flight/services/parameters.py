"""ST[20] onboard parameter management: report values (TC[20,1]) and set them (TC[20,3])."""

from __future__ import annotations

from typing import Any

from flight.commanding import BadApplicationData, CommandContext
from flight.parameters import ParameterError, ParameterPool
from flight.router import CommandRouter
from flight.services.events import EventReporter
from telemetry_defs.model import Dictionary, Parameter


class ParameterService:
    """TC[20,1] and TC[20,3] on the parameter pool."""

    def __init__(self, dictionary: Dictionary, pool: ParameterPool, events: EventReporter) -> None:
        self._dictionary = dictionary
        self._pool = pool
        self._events = events
        self._report = dictionary.packets["PARAM_VALUES"]

    def register(self, router: CommandRouter) -> None:
        d = self._dictionary
        router.register_command(d.command("PARAM_REPORT"), self._report_values, self._check_ids)
        router.register_command(d.command("PARAM_SET"), self._set_values, self._check_settings)

    def _check_ids(self, args: dict[str, Any]) -> dict[str, Any]:
        for pid in args["ids"]:
            if self._dictionary.parameter_by_id(pid) is None:
                raise BadApplicationData(f"no parameter has ID {pid}")
        return args

    def _report_values(self, args: dict[str, Any], ctx: CommandContext) -> None:
        values = []
        for pid in args["ids"]:
            _, raw = self._pool.read_by_id(pid)
            values.append({"id": pid, "value": raw})
        ctx.reply_packet(self._report, {"values": values})

    def _check_settings(self, args: dict[str, Any]) -> list[tuple[Parameter, Any]]:
        # Every value is checked before any is set: a command sets all its values or none.
        checked = []
        for item in args["values"]:
            try:
                checked.append((self._pool.check_setting(item["id"], item["value"]), item["value"]))
            except ParameterError as exc:
                raise BadApplicationData(str(exc)) from None
        try:
            self._pool.check_rules({parameter.name: raw for parameter, raw in checked})
        except ParameterError as exc:
            raise BadApplicationData(str(exc)) from None
        return checked

    def _set_values(self, settings: list[tuple[Parameter, Any]], ctx: CommandContext) -> None:
        for parameter, raw in settings:
            self._pool.set(parameter, raw)
            self._events.raise_event("PARAMETER_SET", id=parameter.id)
