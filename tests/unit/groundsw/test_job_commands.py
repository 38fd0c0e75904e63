"""`groundsw job`: an input that does not fit the model is refused before it is sent, the list
is a table with models and times, and a wait on a held queue says so."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from groundsw import job_commands
from groundsw.job_commands import JobWaitTimeout, check_input_fits, list_rows
from groundsw.signature import InputDoesNotFit, TensorSpec, check_fits, parse_inputs
from groundsw.transfer import GroundInputError, OperationContext
from tests.unit.groundsw.fake_payload import D, FakePayload
from tests.unit.groundsw.fakes import FastClock


def context(payload: FakePayload) -> tuple[OperationContext, list[str]]:
    lines: list[str] = []
    ctx = OperationContext(payload, D, 30.0, 115200, lines.append, lines.append, clock=FastClock())
    return ctx, lines


# -- the signature ------------------------------------------------------------------------------


def test_signature_inputs_are_read_from_the_model_report() -> None:
    assert parse_inputs("image float32[?,3,64,64] -> probabilities float32[?,10]") == [
        TensorSpec("image", "float32", (None, 3, 64, 64))
    ]
    assert parse_inputs("a int64[2], b bool[] -> y float32[?]") == [
        TensorSpec("a", "int64", (2,)),
        TensorSpec("b", "bool", ()),
    ]
    # Not a signature (cut short at its 4000 characters, or garbled): the payload checks.
    for text in ("x float32[?,3", "", "x float32[?,,3] -> y float32[1]", "x float32[?] y"):
        assert parse_inputs(text) is None


@pytest.mark.parametrize(
    ("shape", "dtype", "verdict"),
    [
        ((2, 4), "float32", None),
        ((2, 5), "float32", "input x: axis 1 is 5, the model needs 4"),
        ((0, 4), "float32", "input x: axis 0 is 0, the model needs at least 1"),
        ((4,), "float32", "input x: rank is 1 (shape (4,)), the model needs 2"),
        ((2, 4), "float64", "input x: dtype is float64, the model needs float32"),
        ((2, 4), ">f4", "input x: dtype is >f4, the model needs float32"),
    ],
)
def test_an_input_is_judged_as_the_payload_judges_it(
    shape: tuple[int, ...], dtype: str, verdict: str | None
) -> None:
    inputs = [TensorSpec("x", "float32", (None, 4))]
    if verdict is None:
        check_fits(inputs, shape, np.dtype(dtype))
        return
    with pytest.raises(InputDoesNotFit) as caught:
        check_fits(inputs, shape, np.dtype(dtype))
    assert str(caught.value) == verdict


def test_a_model_of_two_inputs_takes_no_single_npy() -> None:
    inputs = [TensorSpec("a", "float32", (1,)), TensorSpec("b", "float32", (1,))]
    with pytest.raises(InputDoesNotFit, match=r"the model has 2 inputs \(a, b\)"):
        check_fits(inputs, (1,), np.dtype("float32"))


# -- job submit ---------------------------------------------------------------------------------


def submit_args(tmp_path: Path, array: np.ndarray, version: str = "0") -> argparse.Namespace:
    path = tmp_path / "x.npy"
    np.save(path, array)
    return argparse.Namespace(
        model="m", version=version, input=path, priority="0", redundancy="none", deadline="0"
    )


def test_a_wrong_shape_is_refused_before_anything_is_uploaded(tmp_path: Path) -> None:
    payload = FakePayload()
    payload.models[("m", 1)] = payload.models[("m", 3)] = b"model"
    ctx, _ = context(payload)
    args = submit_args(tmp_path, np.zeros((2, 5), np.float32))
    with pytest.raises(GroundInputError) as caught:
        job_commands.run_submit(args, ctx)
    assert str(caught.value) == (
        f"{args.input} does not fit model m version 3 (x float32[?,4] -> y float32[?,2]): "
        "input x: axis 1 is 5, the model needs 4"
    )
    assert [name for name, _ in payload.sent] == ["MODEL_INFO"]  # nothing large went out


def test_a_fitting_input_is_checked_against_the_version_it_will_run(tmp_path: Path) -> None:
    payload = FakePayload()
    payload.models[("m", 1)] = payload.models[("m", 3)] = b"model"
    ctx, _ = context(payload)
    assert check_input_fits(ctx, submit_args(tmp_path, np.zeros((2, 4), np.float32))) == 3
    args = submit_args(tmp_path, np.zeros((2, 4), np.float32), version="1")
    assert check_input_fits(ctx, args) == 1
    payload.signature = "x float32[?,4"  # not readable: the payload will judge
    assert check_input_fits(ctx, submit_args(tmp_path, np.zeros(7, np.int8))) == 3


# -- job list -----------------------------------------------------------------------------------


def test_the_job_list_is_a_table_with_models_and_times() -> None:
    day = 1_714_564_800  # 2024-05-01T12:00:00Z
    report = {
        "job_ids": [12, 3], "states": [0, 2], "progress": [0, 100], "priorities": [5, 0],
        "models": ["gemm", "cnn-classifier"], "versions": [2, 1],
        "submitted_times": [day + 90_000, day], "started_times": [0, day + 2],
        "finished_times": [0, day + 7],
    }  # fmt: skip
    rows = list_rows(D, report)
    assert [row.split() for row in rows] == [
        ["JOB", "STATE", "DONE", "PRIORITY", "MODEL", "SUBMITTED", "(UTC)", "STARTED", "ENDED"],
        ["12", "QUEUED", "0%", "5", "gemm", "v2", "2024-05-02", "13:00:00", "-", "-"],
        ["3", "SUCCEEDED", "100%", "0", "cnn-classifier", "v1", "2024-05-01", "12:00:00",
         "12:00:02", "12:00:07"],
    ]  # fmt: skip
    states = ("STATE", "QUEUED", "SUCCEEDED")
    columns = [row.index(cell) for row, cell in zip(rows, states, strict=True)]
    assert len(set(columns)) == 1  # aligned


# -- job wait -----------------------------------------------------------------------------------


def queued_job(job_id: int) -> dict[str, Any]:
    return {
        "job_id": job_id, "state": 0, "progress": 0, "priority": 0, "redundancy": 0,
        "attempts": 0, "losses": 0, "runs": 0, "disagreements": 0, "deadline": 0, "submitted": 1,
        "started": 0, "finished": 0, "failure_code": 0, "result_size": 0,
        "result_sha256": bytes(32), "model": "m", "version": 1, "input": "x.npy", "result": "",
        "failure_text": "",
    }  # fmt: skip


@pytest.mark.parametrize("held", [True, False])
def test_a_wait_on_a_held_queue_says_it_is_held(held: bool) -> None:
    payload = FakePayload()
    payload.jobs[4] = queued_job(4)
    payload.parameters[D.parameter("JOB_QUEUE_HOLD").id] = held
    ctx, lines = context(payload)
    args = argparse.Namespace(job_id="4", wait_timeout="3")
    with pytest.raises(JobWaitTimeout) as caught:
        job_commands.run_wait(args, ctx)
    note = "the queue is held (JOB_QUEUE_HOLD is true): no queued job starts until"
    assert (note in lines[0]) is held and lines[0].startswith("job 4: QUEUED 0%")
    assert (note in str(caught.value)) is held
    assert str(caught.value).startswith("job 4 is still QUEUED after 3 s")
