"""The onboard parameter pool: where every dictionary parameter's value comes from.

Read-only parameters are sampled from their source (a counter, the clock, the resource probe)
when read; settable ones hold a value, start at the dictionary's default and tell their
subscribers when they change. Every parameter of the dictionary must have a source: the payload
refuses to start with one missing, since housekeeping could not be generated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from telemetry_defs.model import Dictionary, Parameter
from telemetry_defs.valuetypes import DictionaryValueError

Getter = Callable[[], Any]
OnChange = Callable[[Any], None]
# Checks settable values that must agree with each other; raises ParameterError saying why not.
Rule = Callable[[Mapping[str, Any]], None]


class ParameterError(Exception):
    """A parameter that cannot be read or set as asked; the message names it."""


class ParameterPool:
    """Current values of the dictionary's parameters, by name or ID."""

    def __init__(self, dictionary: Dictionary) -> None:
        self.dictionary = dictionary
        self._getters: dict[str, Getter] = {}
        self._settable: dict[str, Any] = {}
        self._on_change: dict[str, list[OnChange]] = {}
        self._rules: list[tuple[frozenset[str], Rule]] = []
        for p in dictionary.parameters.values():
            if p.settable:
                self._settable[p.name] = p.default

    def provide(self, name: str, getter: Getter) -> None:
        """Make `getter` the source of a read-only parameter."""
        parameter = self.dictionary.parameter(name)
        if parameter.settable:
            raise ParameterError(f"{name} is settable: it holds its own value")
        if name in self._getters:
            raise ParameterError(f"{name} already has a source")
        self._getters[parameter.name] = getter

    def provide_many(self, getters: Mapping[str, Getter]) -> None:
        for name, getter in getters.items():
            self.provide(name, getter)

    def subscribe(self, name: str, on_change: OnChange) -> None:
        """Call `on_change(raw)` now and whenever a settable parameter is set."""
        parameter = self.dictionary.parameter(name)
        if not parameter.settable:
            raise ParameterError(f"{name} is not settable")
        self._on_change.setdefault(parameter.name, []).append(on_change)
        on_change(self._settable[parameter.name])

    def missing(self) -> list[str]:
        """Parameters of the dictionary without a source."""
        return [
            p.name
            for p in self.dictionary.parameters.values()
            if not p.settable and p.name not in self._getters
        ]

    def read(self, parameter: Parameter) -> Any:
        if parameter.settable:
            return self._settable[parameter.name]
        getter = self._getters.get(parameter.name)
        if getter is None:
            raise ParameterError(f"{parameter.name} has no source on this payload")
        return getter()

    def read_named(self, name: str) -> Any:
        return self.read(self.dictionary.parameter(name))

    def read_by_id(self, pid: int) -> tuple[Parameter, Any]:
        parameter = self.dictionary.parameter_by_id(pid)
        if parameter is None:
            raise ParameterError(f"no parameter has ID {pid}")
        return parameter, self.read(parameter)

    def check_setting(self, pid: int, raw: Any) -> Parameter:
        """The parameter, if `raw` may be set on it; ParameterError saying why not."""
        parameter = self.dictionary.parameter_by_id(pid)
        if parameter is None:
            raise ParameterError(f"no parameter has ID {pid}")
        if not parameter.settable:
            raise ParameterError(f"parameter {parameter.name} ({pid}) is not settable")
        try:
            parameter.field.check(raw)
        except DictionaryValueError as exc:
            raise ParameterError(str(exc)) from None
        return parameter

    def add_rule(self, names: tuple[str, ...], rule: Rule) -> None:
        """Check every setting of `names` with `rule`, given all their values as they would be."""
        for name in names:
            if not self.dictionary.parameter(name).settable:
                raise ParameterError(f"{name} is not settable: a rule on it cannot fail")
        self._rules.append((frozenset(names), rule))

    def check_rules(self, changes: Mapping[str, Any]) -> None:
        """ParameterError when the values `changes` would set break a rule."""
        broken = self.broken_rules(changes)
        if broken:
            raise broken[0][1]

    def broken_rules(
        self, changes: Mapping[str, Any]
    ) -> list[tuple[frozenset[str], ParameterError]]:
        """The names of each rule the values `changes` would break, with why."""
        broken = []
        for names, rule in self._rules:
            if names.isdisjoint(changes):
                continue
            try:
                rule({name: changes.get(name, self._settable[name]) for name in names})
            except ParameterError as exc:
                broken.append((names, exc))
        return broken

    def set(self, parameter: Parameter, raw: Any) -> None:
        """Set a value that `check_setting` accepted, and tell the subscribers."""
        self._settable[parameter.name] = raw
        for on_change in self._on_change.get(parameter.name, []):
            on_change(raw)
