"""A worker's view of the registry: files read in place, records sent back to the payload."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flight.compute.model_view import (
    AnswerRecorded,
    CatalogUpdate,
    CopyDamaged,
    ModelView,
    ThresholdCalibrated,
)
from flight.jobs.executor import Executor, SessionCache
from flight.jobs.registry import ModelCorrupt, ModelRegistry, UnknownModel
from flight.protection.model_guard import ModelGuard
from flight.protection.upsets import UpsetLog
from tests.unit.flight.protection.test_model_guard import ON_CPU
from tests.unit.flight.protection.test_weights import MAX_MODEL_BYTES, gemm_model


def registry(root: Path) -> ModelRegistry:
    return ModelRegistry(root / "models", max_model_bytes=MAX_MODEL_BYTES, upsets=UpsetLog())


def test_a_guard_on_the_view_records_the_answer_the_registrys_guard_records(
    tmp_path: Path,
) -> None:
    models = registry(tmp_path)
    entry = models.register("m", 1, gemm_model())
    told: list[CatalogUpdate] = []
    view = ModelView(told.append)
    view.learn(entry)
    in_worker = ModelGuard(view, Executor(SessionCache(2, ON_CPU, 1)), UpsetLog())
    in_payload = ModelGuard(models, Executor(SessionCache(2, ON_CPU, 1)), UpsetLog())
    recorded = in_worker.record_answer(entry)
    expected = in_payload.record_answer(entry)
    assert [type(t) for t in told] == [AnswerRecorded]
    sent = told[0]
    assert isinstance(sent, AnswerRecorded) and (sent.name, sent.version) == ("m", 1)
    assert recorded.answer is not None and expected.answer is not None
    assert sent.answer.digest == expected.answer.digest == recorded.answer.digest
    assert view.entry("m").answer == sent.answer  # the view keeps what it sent


def test_a_damaged_first_copy_is_read_past_and_reported(tmp_path: Path) -> None:
    models = registry(tmp_path)
    entry = models.register("m", 1, gemm_model())
    good = entry.path.read_bytes()
    entry.path.write_bytes(b"\0" + good[1:])
    told: list[CatalogUpdate] = []
    view = ModelView(told.append)
    assert view.read_verified(entry) == good
    assert told == [CopyDamaged("m", 1)]
    entry.path.write_bytes(good)  # the view never writes: the registry repairs
    entry.copy_path.write_bytes(b"")
    entry.path.write_bytes(b"")
    with pytest.raises(ModelCorrupt):
        view.read_verified(entry)


def test_entries_by_version_the_latest_for_zero_and_thresholds_sent_back(tmp_path: Path) -> None:
    models = registry(tmp_path)
    first = models.register("m", 1, gemm_model())
    second = models.register("m", 2, gemm_model())
    told: list[CatalogUpdate] = []
    view = ModelView(told.append)
    view.learn(first)
    view.learn(second)
    assert view.entry("m").version == 2 and view.entry("m", 1) == first
    with pytest.raises(UnknownModel):
        view.entry("other")
    updated = view.set_abft_threshold(first, 0.25)
    assert updated == dataclasses.replace(first, abft_threshold=0.25)
    assert told == [ThresholdCalibrated("m", 1, 0.25)]
    view.forget("m", 2)
    assert view.entry("m") == updated
