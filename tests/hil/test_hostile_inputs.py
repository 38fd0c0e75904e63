"""The worst a ground can send, through the emulated link: names that try to leave the state
directory, names the payload uses itself, octets that are not UTF-8, stored files replaced by
symbolic links, sizes beyond the quota and the model size limit, a forbidden operator, a full
queue. Each gets its failure code, nothing outside the state directory changes, and the payload
still answers and runs a job afterwards, across a restart."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hil.bench import Bench
from hil.testapi import GroundTestApi
from tests.harness import open_test_api
from tests.hil.onboard import TINY_WIDTHS, D, code, job_report, npy, register, submit, upload
from tools.model_gen import loop_model, mlp, model_bytes

pytestmark = pytest.mark.hil

NAMES = ["../x", "a/../../x", "/etc/passwd", "..", ".lock", "a\x00b", "x" * 255, "cafe\u0301"]
MAX_MODEL_BYTES = 4000
ABC = hashlib.sha256(b"abc").digest()


def snapshot(root: Path, skip: set[str]) -> dict[str, tuple[str, str]]:
    """Every entry under `root` but those under `skip`, links not followed."""
    out: dict[str, tuple[str, str]] = {}
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if str(Path(directory, d).relative_to(root)) not in skip]
        for name in dirs + files:
            path = Path(directory, name)
            relative = str(path.relative_to(root))
            if relative in skip:
                continue
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                out[relative] = ("link", os.readlink(path))
            elif stat.S_ISREG(mode):
                out[relative] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                out[relative] = ("dir", "")
    return out


@pytest.fixture
def limited_bench(make_bench: Any, tmp_path: Path) -> Bench:
    config = tmp_path / "limits.toml"
    config.write_text(
        "[protection]\ntest_commands = true\n"
        f"[storage]\nquota_bytes = 1000000\nmax_model_bytes = {MAX_MODEL_BYTES}\n"
        "max_uploads = 2\nmax_ranges = 2\n"
        "[jobs]\nmax_queued = 1\n"
    )
    # Sixty-odd commands and their reports: an eighth of the line time at 921600 baud.
    bench: Bench = make_bench(baud=921600, flight_args=["--config", str(config)])
    return bench


def fails(api: GroundTestApi, failure: str, command: str, **values: Any) -> None:
    api.command_expect_failure(command, code(failure), **values)


def plant_link(path: Path, target: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to(target)


def test_hostile_inputs_are_refused_and_the_payload_carries_on(
    limited_bench: Bench, tmp_path: Path
) -> None:
    bench = limited_bench
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not the payload's\n" * 100)
    (outside / "victim").write_bytes(b"precious" * 100)
    (outside / "meta").write_text(json.dumps(
        {"version": 1, "transfer_id": 15, "name": "m", "size": 3, "sha256": "0" * 64}
    ))  # fmt: skip
    assert bench.key_file is not None
    # The payload's own files, and the ground's key and ARSN counter beside them.
    keys = bench.key_file.name
    skip = {bench.state_dir.name, bench.flight_log.name, keys, f"{keys}.arsn"}
    before = snapshot(tmp_path, skip)
    files = bench.state_dir / "files"
    x = np.ones((2, 16), np.float32)

    with open_test_api(bench.ground_port, bench.baud) as api:
        api.default_timeout = 30
        register(api, "tiny", model_bytes(mlp(seed=5, widths=TINY_WIDTHS)))
        upload(api, "x.npy", npy(x), transfer_id=8)

        for name in NAMES:
            fails(api, "FILE_NAME_INVALID", "FILE_UPLOAD_BEGIN",
                  transfer_id=9, size=3, sha256=ABC, name=name)  # fmt: skip
            fails(api, "FILE_NAME_INVALID", "FILE_DOWNLOAD",
                  download_id=1, name=name, offset=0, length=0)  # fmt: skip
            fails(api, "FILE_NAME_INVALID", "FILE_DELETE", name=name)
            fails(api, "FILE_NAME_INVALID", "JOB_SUBMIT", model="tiny", version=0, input=name,
                  priority=0, redundancy="NONE", deadline=0)  # fmt: skip
            fails(api, "BAD_APPLICATION_DATA", "MODEL_REGISTER",
                  file="x.npy", model=name, version=1, tolerance=0.0)  # fmt: skip
            fails(api, "FAULT_TARGET_MISSING", "FAULT_INJECT",
                  target="RESULT_FILE", fault="BIT", model=name, version=0, seed=1)  # fmt: skip
        delete = D.command("FILE_DELETE")
        api.send_expect_failure(delete.service, delete.subtype, b"\x02\xff\xfe",
                                code=code("BAD_APPLICATION_DATA"))  # fmt: skip
        fails(api, "FILE_NAME_INVALID", "FILE_UPLOAD_BEGIN",
              transfer_id=9, size=3, sha256=ABC, name="job-1.npy")  # fmt: skip
        fails(api, "FILE_EXISTS", "FILE_UPLOAD_BEGIN",
              transfer_id=9, size=3, sha256=ABC, name="X.NPY")  # fmt: skip

        # Links planted in the state directory: a stored file, an upload's data file.
        upload(api, "linked.npy", npy(x), transfer_id=10)
        plant_link(files / "files" / "linked.npy", outside / "secret")
        fails(api, "FILE_NOT_REGULAR", "FILE_DOWNLOAD",
              download_id=2, name="linked.npy", offset=0, length=0)  # fmt: skip
        fails(api, "FILE_NOT_REGULAR", "JOB_SUBMIT", model="tiny", version=0, input="linked.npy",
              priority=0, redundancy="NONE", deadline=0)  # fmt: skip
        api.command_and_assert("FILE_DELETE", name="linked.npy")
        plant_link(files / "partial" / "00011.data", outside / "victim")
        upload(api, "through.npy", npy(x), transfer_id=11)

        # The limits.
        fails(api, "QUOTA_EXCEEDED", "FILE_UPLOAD_BEGIN", transfer_id=12, size=0xFFFFFFFF,
              sha256=bytes(32), name="huge.npy")  # fmt: skip
        big = model_bytes(mlp(seed=6, widths=(16, 64, 4)))
        assert len(big) > MAX_MODEL_BYTES
        upload(api, "big.onnx", big, transfer_id=13)
        fails(api, "MODEL_TOO_LARGE", "MODEL_REGISTER",
              file="big.onnx", model="big", version=1, tolerance=0.0)  # fmt: skip
        upload(api, "loop.onnx", model_bytes(loop_model()), transfer_id=14)
        fails(api, "MODEL_OPERATOR_NOT_ALLOWED", "MODEL_REGISTER",
              file="loop.onnx", model="loop", version=1, tolerance=0.0)  # fmt: skip
        hold = D.parameter("JOB_QUEUE_HOLD").id
        api.command_and_assert("PARAM_SET", values=[{"id": hold, "value": True}])
        held, _ = submit(api, model="tiny", input="x.npy")
        fails(api, "QUEUE_FULL", "JOB_SUBMIT", model="tiny", version=0, input="x.npy",
              priority=0, redundancy="NONE", deadline=0)  # fmt: skip

        # The configured transfer limits: two uploads in progress, two ranges each.
        for transfer_id in (20, 21):
            api.command_and_assert("FILE_UPLOAD_BEGIN", transfer_id=transfer_id, size=100,
                                   sha256=bytes(32), name=f"open{transfer_id}.npy")  # fmt: skip
        fails(api, "TOO_MANY_TRANSFERS", "FILE_UPLOAD_BEGIN", transfer_id=22, size=100,
              sha256=bytes(32), name="open22.npy")  # fmt: skip
        for offset in (0, 10):
            api.command_and_assert("FILE_UPLOAD_CHUNK", transfer_id=20, offset=offset, data=b"a")
        fails(api, "RESOURCES_EXHAUSTED", "FILE_UPLOAD_CHUNK",
              transfer_id=20, offset=20, data=b"a")  # fmt: skip
        api.command_and_assert("FILE_UPLOAD_CHUNK", transfer_id=20, offset=1, data=b"a")
        for transfer_id in (20, 21):
            api.command_and_assert("FILE_UPLOAD_ABORT", transfer_id=transfer_id)

        # Links and a FIFO planted for the next start: the recovery follows none of them.
        plant_link(files / "files" / "evil.npy", outside / "secret")
        plant_link(files / "partial" / "00015.meta", outside / "meta")
        os.mkfifo(files / "partial" / "00016.meta")

    bench.stop_flight()
    bench.start_flight()
    with open_test_api(bench.ground_port, bench.baud) as api:
        api.default_timeout = 30
        api.command_and_assert("ARE_YOU_ALIVE")
        listed = api.query_command("FILE_LIST", "FILE_LIST_REPORT").values
        assert "evil.npy" not in listed["names"]
        assert {"big.onnx", "loop.onnx", "through.npy", "x.npy"} <= set(listed["names"])
        # The queue hold is released by the restart: the queued job runs, and one more after it.
        deadline = time.monotonic() + 60
        while job_report(api, held)["state"] in (0, 1):
            assert time.monotonic() < deadline, "the held job did not run after the restart"
            time.sleep(0.2)
        assert job_report(api, held)["state"] == 2
        job_id, record = submit(api, model="tiny", input="through.npy")
        assert record.finished.wait(60) and record.failure is None, record.failure
        assert job_report(api, job_id)["state"] == 2

    assert snapshot(tmp_path, skip) == before
