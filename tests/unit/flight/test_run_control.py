"""Stopping a job's runs: the flag onnxruntime reads, and listeners for runs elsewhere."""

from __future__ import annotations

from flight.compute.run_control import RunControl


def test_terminate_sets_onnxruntimes_flag_and_tells_each_listener_once() -> None:
    control = RunControl()
    told: list[str] = []
    control.on_terminate(lambda: told.append("a"))
    assert not control.terminate and not control.options.terminate
    control.terminate = True
    assert control.terminate and control.options.terminate
    assert told == ["a"]


def test_a_listener_added_after_the_stop_is_told_at_once() -> None:
    control = RunControl()
    control.terminate = True
    told: list[str] = []
    control.on_terminate(lambda: told.append("late"))
    assert told == ["late"]


def test_clearing_the_flag_tells_nobody() -> None:
    control = RunControl()
    told: list[str] = []
    control.on_terminate(lambda: told.append("x"))
    control.terminate = False
    assert told == [] and not control.terminate
