"""`groundsw model upload` run again: a model the payload holds already is not sent again."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from groundsw import model_commands
from groundsw.transfer import OperationContext
from groundsw.verification import CommandFailed
from tests.unit.groundsw.fake_payload import D, FakePayload
from tests.unit.groundsw.fakes import FastClock


def upload(payload: FakePayload, path: Path, version: str = "1") -> tuple[int, list[str]]:
    lines: list[str] = []
    ctx = OperationContext(payload, D, 30.0, 115200, lines.append, lines.append, clock=FastClock())
    args = argparse.Namespace(file=path, name="m", version=version, tolerance="0")
    return model_commands.run_upload(args, ctx), lines


def test_a_model_registered_already_is_not_sent_again(tmp_path: Path) -> None:
    payload = FakePayload()
    path = tmp_path / "m.onnx"
    path.write_bytes(b"weights" * 300)
    assert upload(payload, path)[0] == 0
    first = len(payload.sent)
    code, lines = upload(payload, path)
    assert code == 0
    assert [name for name, _ in payload.sent[first:]] == ["MODEL_INFO"]  # nothing else sent
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert lines[0] == f"model m version 1 is registered already with SHA-256 {sha}: nothing sent"
    assert f"  sha256     {sha}" in lines


def test_other_content_under_a_registered_version_is_refused_before_it_is_sent(
    tmp_path: Path,
) -> None:
    payload = FakePayload()
    payload.models[("m", 1)] = b"another model"
    path = tmp_path / "m.onnx"
    path.write_bytes(b"weights" * 300)
    with pytest.raises(CommandFailed, match=r"registered already with other content .*--version"):
        upload(payload, path)
    assert [name for name, _ in payload.sent] == ["MODEL_INFO"]
    assert upload(payload, path, version="2")[0] == 0  # another version goes up
    assert payload.models[("m", 2)] == path.read_bytes()
