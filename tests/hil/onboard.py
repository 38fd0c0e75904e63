"""What HIL tests of the onboard services send through the link: uploads, registrations, job
submissions and downloads done as a ground tool does them, with the test API."""

from __future__ import annotations

import hashlib
import io
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from groundsw.transfer import chunk_octets
from hil.orbit_driver import idle_interval
from hil.testapi import CommandRecord, GroundTestApi
from spacelink.spacepacket import AckFlags
from telemetry_defs.loader import default_dictionary

D = default_dictionary()
TINY_WIDTHS = (16, 32, 4)


def code(name: str) -> int:
    return D.failure_named(name).code


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def upload_report(api: GroundTestApi, command_name: str, **values: Any) -> dict[str, Any]:
    return api.query_command(command_name, "FILE_UPLOAD_REPORT", **values).values


def send_chunks(
    api: GroundTestApi, transfer_id: int, data: bytes, ranges: list[tuple[int, int]]
) -> list[CommandRecord]:
    records: list[CommandRecord] = []
    chunk = chunk_octets(api.session.max_packet_octets)  # fills a frame, security fields and all
    for offset, length in ranges:
        for start in range(offset, offset + length, chunk):
            piece = data[start : min(start + chunk, offset + length)]
            records.append(
                api.command(
                    "FILE_UPLOAD_CHUNK",
                    AckFlags.NONE,
                    transfer_id=transfer_id,
                    offset=start,
                    data=piece,
                )
            )
    api.assert_delivered(records, timeout=120)
    return records


def missing(report: dict[str, Any]) -> list[tuple[int, int]]:
    return list(zip(report["missing_offsets"], report["missing_lengths"], strict=True))


def begin(api: GroundTestApi, name: str, data: bytes, transfer_id: int) -> dict[str, Any]:
    """FILE_UPLOAD_BEGIN for `data`: the payload's report of what it still needs."""
    return upload_report(
        api,
        "FILE_UPLOAD_BEGIN",
        transfer_id=transfer_id,
        size=len(data),
        sha256=hashlib.sha256(data).digest(),
        name=name,
    )


def upload(api: GroundTestApi, name: str, data: bytes, transfer_id: int = 7) -> None:
    """Upload and commit through the file service, as a ground tool does."""
    report = begin(api, name, data, transfer_id)
    while report["missing_ranges"]:
        send_chunks(api, transfer_id, data, missing(report))
        report = upload_report(api, "FILE_UPLOAD_STATUS", transfer_id=transfer_id)
    api.command_and_assert("FILE_UPLOAD_COMMIT", transfer_id=transfer_id)


def register(api: GroundTestApi, model: str, data: bytes, version: int = 1) -> dict[str, Any]:
    upload(api, f"{model}.onnx", data)
    since = time.monotonic()
    api.command_and_assert(
        "MODEL_REGISTER", file=f"{model}.onnx", model=model, version=version, tolerance=0.0
    )
    packet = D.packets["MODEL_REPORT"]
    return api.decode(api.await_packet(packet.service, packet.subtype, since=since)).values


def submit(api: GroundTestApi, **values: Any) -> tuple[int, Any]:
    """JOB_SUBMIT: (job ID, the command record, whose completion comes when the job ends)."""
    args = {"version": 0, "priority": 0, "redundancy": "NONE", "deadline": 0, **values}
    since = time.monotonic()
    record = api.command("JOB_SUBMIT", **args)
    packet = D.packets["JOB_ACCEPTED"]
    item = api.await_packet(packet.service, packet.subtype, since=since)
    return api.decode(item).values["job_id"], record


def job_report(api: GroundTestApi, job_id: int) -> dict[str, Any]:
    values = api.query_command("JOB_STATUS", "JOB_REPORT", job_id=job_id).values
    assert values["job_id"] == job_id
    return values


def download(api: GroundTestApi, name: str) -> bytes:
    """FILE_DOWNLOAD, chunks checked by CRC and assembled; the SHA-256 of TM[128,11] checked."""
    since = time.monotonic()
    record = api.command("FILE_DOWNLOAD", download_id=3, name=name, offset=0, length=0)
    start = D.packets["FILE_DOWNLOAD_START"]
    header = api.decode(api.await_packet(start.service, start.subtype, since=since)).values
    api.assert_stages(record, [], timeout=60)
    record.finished.wait(60)
    assert record.failure is None
    chunk = D.packets["FILE_DOWNLOAD_CHUNK"]
    deadline = time.monotonic() + 60
    data = bytearray(header["size"])
    got: set[int] = set()
    while len(got) * 1024 < header["size"] and time.monotonic() < deadline:
        for item in api.tm_history(chunk.service, chunk.subtype):
            values = api.decode(item).values
            if values["download_id"] == 3 and zlib.crc32(values["data"]) == values["crc32"]:
                data[values["offset"] : values["offset"] + len(values["data"])] = values["data"]
                got.add(values["offset"])
        time.sleep(0.1)
    assert hashlib.sha256(data).digest() == header["sha256"]
    return bytes(data)


def inject(api: GroundTestApi, target: str, fault: str, model: str = "", seed: int = 1) -> str:
    values = api.query_command(
        "FAULT_INJECT",
        "FAULT_INJECT_REPORT",
        attempts=1,
        target=target,
        fault=fault,
        model=model,
        version=0,
        seed=seed,
    ).values
    assert values["bits"] >= 0
    return str(values["where"])


def with_test_commands(tmp_path: Path) -> list[str]:
    """payload-flight arguments that enable the test commands (FAULT_INJECT)."""
    config = tmp_path / "test-commands.toml"
    config.write_text("[protection]\ntest_commands = true\n")
    return ["--config", str(config)]


def with_quick_idle(tmp_path: Path, baud: int) -> list[str]:
    """payload-flight arguments for an idle frame every `idle_interval(baud)` (0.14 s at 921600
    baud) instead of every second: each new ground session (every groundsw command) waits for
    the payload's CLCW before its first frame, half a second on average at the ICD's 1 s."""
    config = tmp_path / "quick-idle.toml"
    config.write_text(f"[link]\nidle_interval_s = {round(idle_interval(baud), 3)!r}\n")
    return ["--config", str(config)]
