"""The transfer engines' pure parts (ranges, chunk plans, the download sidecar, CRC drops,
progress text), and the engines driven by an in-process fake payload that follows service 128."""

from __future__ import annotations

import argparse
import hashlib
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from groundsw import model_commands
from groundsw.progress import (
    PlainProgress,
    RichProgress,
    make_progress,
    progress_text,
    summary_text,
)
from groundsw.session import LinkTimeout
from groundsw.transfer import (
    UPLOAD_CHUNK_OCTETS,
    Downloader,
    Exchange,
    GroundInputError,
    OperationContext,
    PartialDownload,
    TransferFailed,
    Uploader,
    check_file_name,
    coalesce,
    describe_file_list,
    plan_chunks,
    readable_file,
    transfer_id_for,
)
from groundsw.transfer.exchange import StillQueued
from groundsw.verification import CommandFailed
from spacelink.icd import PAYLOAD_APID, TC_MAX_DATA_LENGTH
from spacelink.spacepacket import PusTc
from telemetry_defs.loader import default_dictionary
from tests.unit.groundsw.fake_payload import FakePayload
from tests.unit.groundsw.fakes import FastClock

D = default_dictionary()

# -- chunk plans ---------------------------------------------------------------------


def test_chunks_fill_a_tc_frame_and_cover_the_ranges_exactly() -> None:
    plan = list(plan_chunks([(0, 2500), (5000, 10)]))
    assert plan == [(0, 998), (998, 998), (1996, 504), (5000, 10)]
    tc = PusTc(PAYLOAD_APID, 128, 3, D.command("FILE_UPLOAD_CHUNK").encode(
        {"transfer_id": 1, "offset": 0, "data": bytes(UPLOAD_CHUNK_OCTETS)}
    ))  # fmt: skip
    assert len(tc.pack()) == TC_MAX_DATA_LENGTH  # 998 octets fill the frame, not one more


def test_coalesce_merges_the_smallest_gaps_first() -> None:
    ranges = [(0, 10), (12, 10), (100, 10), (300, 5)]
    assert coalesce(ranges, 4) == ranges
    assert coalesce(ranges, 3) == [(0, 22), (100, 10), (300, 5)]
    assert coalesce(ranges, 1) == [(0, 305)]
    assert coalesce([], 3) == []


def test_the_transfer_id_names_the_file_and_its_content() -> None:
    sha = hashlib.sha256(b"weights").digest()
    tid = transfer_id_for("m-v1.onnx", sha)
    assert tid == transfer_id_for("m-v1.onnx", sha)
    assert tid == int.from_bytes(hashlib.sha256(b"m-v1.onnx" + sha).digest()[:2], "big")
    assert tid != transfer_id_for("m-v2.onnx", sha)


def test_local_input_is_checked_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(GroundInputError, match="does not exist"):
        readable_file(tmp_path / "nope.onnx")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(GroundInputError, match="is empty"):
        readable_file(tmp_path / "empty")
    with pytest.raises(GroundInputError, match="is not a regular file"):
        readable_file(tmp_path)
    with pytest.raises(GroundInputError, match="not 1 to 64"):
        check_file_name(".hidden")
    with pytest.raises(GroundInputError, match="not 1 to 64"):
        check_file_name("a" * 65)
    assert check_file_name("input-0123.npy") == "input-0123.npy"


# -- progress -----------------------------------------------------------------------------------


def test_progress_text_and_summary() -> None:
    assert (
        progress_text("upload model.onnx", 419430, 1048576, 98000, 10.0)
        == "upload model.onnx: 40% 419430/1048576 octets, 9.8 kB/s"
    )
    assert summary_text("upload m", 1000, 4.0) == "upload m: 1000 octets in 4.0 s, 250 B/s"
    assert summary_text("upload m", 2_000_000, 1.0, already=5) == (
        "upload m: 2000000 octets in 1.0 s, 2.0 MB/s (5 octets were there already)"
    )


def test_plain_progress_prints_each_tenth_once() -> None:
    now = [0.0]
    lines: list[str] = []
    p = PlainProgress("upload f", 1000, lines.append, lambda: now[0], start=250)
    for done in range(250, 1001, 10):
        now[0] += 0.1
        p.update(done)
    assert [line.split(":")[1].split()[0] for line in lines] == [
        f"{t}%" for t in range(30, 101, 10)
    ]
    assert lines[-1].startswith("upload f: 100% 1000/1000 octets, ")


def test_a_terminal_gets_a_progress_bar() -> None:
    bar = make_progress("upload f", 1000, lambda line: None, tty=True)
    assert isinstance(bar, RichProgress)
    bar.update(500)
    bar.close()
    assert isinstance(make_progress("upload f", 1000, print, tty=False), PlainProgress)


# -- the download sidecar -----------------------------------------------------------------------


def test_partial_download_resumes_from_its_sidecar(tmp_path: Path) -> None:
    content = bytes(range(256)) * 20
    sha = hashlib.sha256(content).digest()
    out = tmp_path / "result.npy"
    p = PartialDownload(out, "job-1.npy")
    assert not p.resumable
    assert not p.start(len(content), sha)
    assert p.accept(0, content[:1000], zlib.crc32(content[:1000]))
    bad = bytearray(content[1000:2000])
    bad[5] ^= 1
    assert not p.accept(1000, bytes(bad), zlib.crc32(content[1000:2000]))  # CRC: dropped
    assert not p.accept(len(content) - 10, content[-10:] + b"x", zlib.crc32(content[-10:] + b"x"))
    assert p.dropped == 2
    assert p.accept(3000, content[3000:4000], zlib.crc32(content[3000:4000]))
    p.close()
    saved = json.loads((tmp_path / "result.npy.part.json").read_text())
    assert saved["ranges"] == [[0, 1000], [3000, 1000]] and saved["sha256"] == sha.hex()

    again = PartialDownload(out, "job-1.npy")  # a second run: only the gaps are asked for
    assert again.resumable
    assert again.missing() == [(1000, 2000), (4000, len(content) - 4000)]
    assert again.start(len(content), sha)
    for offset, length in again.missing():
        piece = content[offset : offset + length]
        assert again.accept(offset, piece, zlib.crc32(piece))
    assert again.complete
    assert again.finish() == sha
    assert out.read_bytes() == content
    assert not (tmp_path / "result.npy.part").exists()
    assert not (tmp_path / "result.npy.part.json").exists()


def test_a_sidecar_of_another_file_or_content_is_not_reused(tmp_path: Path) -> None:
    out = tmp_path / "x.bin"
    p = PartialDownload(out, "a.bin")
    p.start(10, hashlib.sha256(b"0123456789").digest())
    p.accept(0, b"01234", zlib.crc32(b"01234"))
    p.close()
    assert not PartialDownload(out, "b.bin").resumable
    q = PartialDownload(out, "a.bin")
    assert q.resumable
    assert not q.start(10, hashlib.sha256(b"abcdefghij").digest())  # changed on board
    assert q.missing() == [(0, 10)]
    q.close()


def test_a_download_that_does_not_match_its_sha256_is_discarded(tmp_path: Path) -> None:
    out = tmp_path / "x.bin"
    p = PartialDownload(out, "a.bin")
    p.start(4, hashlib.sha256(b"abcd").digest())
    p.accept(0, b"abce", zlib.crc32(b"abce"))
    with pytest.raises(TransferFailed, match="discarded"):
        p.finish()
    assert not out.exists() and not p.part.exists() and not p.sidecar.exists()


# -- the engines against a fake payload ---------------------------------------------------------


def once(offsets: set[int]) -> Callable[[int], bool]:
    """True the first time each of `offsets` is seen: a loss that resending repairs."""

    def hit(offset: int) -> bool:
        if offset in offsets:
            offsets.remove(offset)
            return True
        return False

    return hit


def engines(
    payload: FakePayload, timeout: float = 1000.0
) -> tuple[Uploader, Downloader, list[str]]:
    lines: list[str] = []
    exchange = Exchange(payload, D, timeout=timeout, clock=FastClock())
    ids = iter(range(1, 1000))
    return (
        Uploader(exchange, lines.append),
        Downloader(exchange, lines.append, 115200, id_source=lambda: next(ids)),
        lines,
    )


def sample(tmp_path: Path, size: int = 25_000) -> tuple[Path, bytes]:
    content = hashlib.sha256(b"seed").digest() * (size // 32 + 1)
    path = tmp_path / "model.onnx"
    path.write_bytes(content[:size])
    return path, content[:size]


def test_an_upload_resends_only_what_the_payload_reports_missing(tmp_path: Path) -> None:
    payload = FakePayload()
    payload.lose_chunk = once({998 * 3, 998 * 7})
    path, content = sample(tmp_path)
    up, _, lines = engines(payload)
    result = up.upload(path, "model.onnx")
    assert payload.files["model.onnx"] == content
    assert result.sent == len(content) + 2 * 998 and result.already == 0
    names = [name for name, _ in payload.sent]
    assert names.count("FILE_UPLOAD_STATUS") == 2 and names[-1] == "FILE_UPLOAD_COMMIT"
    resent = [v["offset"] for n, v in payload.sent[names.index("FILE_UPLOAD_STATUS") :]
              if n == "FILE_UPLOAD_CHUNK"]  # fmt: skip
    assert resent == [998 * 3, 998 * 7]
    assert lines[-1].startswith(f"upload model.onnx: {len(content) + 2 * 998} octets in ")


def test_running_the_same_upload_again_resumes_it(tmp_path: Path) -> None:
    payload = FakePayload()
    path, content = sample(tmp_path)
    up, _, lines = engines(payload)
    tid = transfer_id_for("model.onnx", hashlib.sha256(content).digest())
    payload.do_file_upload_begin(
        {"transfer_id": tid, "name": "model.onnx", "size": len(content),
         "sha256": hashlib.sha256(content).digest()}
    )  # fmt: skip
    payload.do_file_upload_chunk({"transfer_id": tid, "offset": 0, "data": content[:10_000]})
    result = up.upload(path, "model.onnx")
    assert result.already == 10_000 and result.sent == len(content) - 10_000
    assert "resuming, 10000 of 25000 octets on board" in lines[0]
    chunk_offsets = [v["offset"] for n, v in payload.sent if n == "FILE_UPLOAD_CHUNK"]
    assert min(chunk_offsets) == 10_000
    assert payload.files["model.onnx"] == content


def test_a_checksum_mismatch_sends_the_file_again_once(tmp_path: Path) -> None:
    payload = FakePayload()
    payload.corrupt_chunk = once({998})
    path, content = sample(tmp_path)
    up, _, lines = engines(payload)
    up.upload(path, "model.onnx")
    assert payload.files["model.onnx"] == content
    assert any("checksum mismatch; sending again" in line for line in lines)
    # A second mismatch is reported, not retried for ever.
    payload2 = FakePayload()
    payload2.corrupt_chunk = lambda offset: offset == 0
    up2, _, _ = engines(payload2)
    with pytest.raises(CommandFailed, match=r"CHECKSUM_MISMATCH \(code 265\)"):
        up2.upload(path, "model.onnx")


def test_file_exists_is_success_only_for_a_content_addressed_name(tmp_path: Path) -> None:
    payload = FakePayload()
    path, content = sample(tmp_path)
    payload.files["input-x.npy"] = content
    up, _, _ = engines(payload)
    assert up.upload(path, "input-x.npy", content_addressed=True).stored_before
    with pytest.raises(CommandFailed, match=r"FILE_EXISTS \(code 258\): input-x.npy is stored"):
        up.upload(path, "input-x.npy")


def test_a_download_checks_crcs_and_asks_again_for_the_gaps(tmp_path: Path) -> None:
    payload = FakePayload()
    _, content = sample(tmp_path, 20_000)
    payload.files["job-3.npy"] = content
    payload.lose_download_chunk = once({700 * 4, 700 * 20})
    _, down, _ = engines(payload)
    out = tmp_path / "out" / "y.npy"
    result = down.download("job-3.npy", out)
    assert out.read_bytes() == content
    assert result.sha256 == hashlib.sha256(content).digest()
    asks = [(v["offset"], v["length"]) for n, v in payload.sent if n == "FILE_DOWNLOAD"]
    assert asks == [(0, 0), (700 * 4, 700), (700 * 20, 700)]
    assert not out.with_name("y.npy.part.json").exists()


def test_an_interrupted_download_asks_only_for_the_rest(tmp_path: Path) -> None:
    payload = FakePayload()
    _, content = sample(tmp_path, 20_000)
    payload.files["f.bin"] = content
    out = tmp_path / "f.bin"
    partial = PartialDownload(out, "f.bin")
    partial.start(len(content), hashlib.sha256(content).digest())
    partial.accept(0, content[:12_000], zlib.crc32(content[:12_000]))
    partial.close()
    _, down, lines = engines(payload)
    result = down.download("f.bin", out)
    assert out.read_bytes() == content and result.received == 8_000
    asks = [(v["offset"], v["length"]) for n, v in payload.sent if n == "FILE_DOWNLOAD"]
    assert asks == [(12_000, 8_000)]
    assert "resuming, 12000 of 20000 octets here" in lines[0]


def test_a_corrupt_whole_file_is_refused_and_unknown_names_fail(tmp_path: Path) -> None:
    payload = FakePayload()
    _, content = sample(tmp_path, 3_000)
    payload.files["f.bin"] = content
    payload.corrupt_stored_once = True  # CRCs hold but the SHA-256 does not
    _, down, _ = engines(payload)
    with pytest.raises(TransferFailed, match="discarded"):
        down.download("f.bin", tmp_path / "f.bin")
    assert not (tmp_path / "f.bin").exists()
    with pytest.raises(CommandFailed, match=r"NO_SUCH_FILE \(code 266\): no file g.bin"):
        down.download("g.bin", tmp_path / "g.bin")


def test_a_download_whose_every_answer_was_lost_is_asked_for_again(tmp_path: Path) -> None:
    payload = FakePayload()
    _, content = sample(tmp_path, 5_000)
    payload.files["job-1.npy"] = content
    payload.lost_answers["FILE_DOWNLOAD"] = 2
    _, down, _ = engines(payload, timeout=3.0)
    out = tmp_path / "job-1.npy"
    assert down.download("job-1.npy", out).size == len(content)
    assert out.read_bytes() == content
    asks = [(v["offset"], v["length"]) for n, v in payload.sent if n == "FILE_DOWNLOAD"]
    assert asks == [(0, 0)] * 3


def test_a_silent_payload_ends_the_download_after_a_bounded_number_of_requests(
    tmp_path: Path,
) -> None:
    payload = FakePayload()
    payload.files["job-1.npy"] = b"x" * 100
    payload.lost_answers["FILE_DOWNLOAD"] = 1000
    _, down, _ = engines(payload, timeout=3.0)
    with pytest.raises(
        LinkTimeout, match=r"no answer to FILE_DOWNLOAD of job-1.npy \(5 requests\)"
    ):
        down.download("job-1.npy", tmp_path / "job-1.npy")
    assert sum(1 for n, _ in payload.sent if n == "FILE_DOWNLOAD") == 5


def test_a_query_whose_answer_was_lost_is_asked_again_within_its_timeout(tmp_path: Path) -> None:
    payload = FakePayload()
    up, _, _ = engines(payload, timeout=9.0)
    exchange = up.exchange
    begin = {"transfer_id": 5, "size": 3, "sha256": hashlib.sha256(b"abc").digest(), "name": "q"}
    exchange.request("FILE_UPLOAD_BEGIN", begin, reply="FILE_UPLOAD_REPORT")
    payload.lost_answers["FILE_UPLOAD_STATUS"] = 2
    report = exchange.query("FILE_UPLOAD_STATUS", {"transfer_id": 5}, reply="FILE_UPLOAD_REPORT")
    assert report["transfer_id"] == 5 and report["received"] == 0
    assert sum(1 for n, _ in payload.sent if n == "FILE_UPLOAD_STATUS") == 3
    payload.lost_answers["FILE_UPLOAD_STATUS"] = 1000
    with pytest.raises(LinkTimeout, match=r"no answer to FILE_UPLOAD_STATUS \(3 requests in 9 s"):
        exchange.query("FILE_UPLOAD_STATUS", {"transfer_id": 5}, reply="FILE_UPLOAD_REPORT")
    assert sum(1 for n, _ in payload.sent if n == "FILE_UPLOAD_STATUS") == 6


def test_an_upload_whose_commit_answer_was_lost_finds_its_file_stored(tmp_path: Path) -> None:
    payload = FakePayload()
    path, content = sample(tmp_path, 3_000)
    up, _, _ = engines(payload, timeout=30.0)  # the fast clock: 10 looks per query request
    payload.lost_answers["FILE_UPLOAD_COMMIT"] = 1
    result = up.upload(path, "f.bin")
    assert payload.files["f.bin"] == content and result.size == len(content)
    sent = [n for n, _ in payload.sent]
    assert sent.count("FILE_UPLOAD_COMMIT") == 1 and sent.count("FILE_UPLOAD_BEGIN") == 2


class RacedPayload(FakePayload):
    """Another ground registers other content under the same name and version between our
    check and our MODEL_REGISTER."""

    def do_model_register(self, v: dict[str, Any]) -> tuple[str, str] | None:
        self.models[(v["model"], v["version"])] = b"another model"
        return super().do_model_register(v)


@pytest.mark.parametrize("taken_by_another", [False, True])
def test_a_model_registration_whose_answer_was_lost_is_settled_by_model_info(
    tmp_path: Path, taken_by_another: bool
) -> None:
    payload = RacedPayload() if taken_by_another else FakePayload()
    path, content = sample(tmp_path, 2_000)
    payload.lost_answers["MODEL_REGISTER"] = 1
    lines: list[str] = []
    ctx = OperationContext(payload, D, 30.0, 115200, lines.append, lines.append, clock=FastClock())
    args = argparse.Namespace(file=path, name="m", version="1", tolerance="0")
    if taken_by_another:
        with pytest.raises(LinkTimeout, match="no answer to MODEL_REGISTER"):
            model_commands.run_upload(args, ctx)
        assert payload.models[("m", 1)] == b"another model"
        return
    assert model_commands.run_upload(args, ctx) == 0
    assert payload.models[("m", 1)] == content
    assert "registered m version 1" in lines
    assert [n for n, _ in payload.sent].count("MODEL_REGISTER") == 1


def test_the_file_list_shows_uploads_with_what_they_reserve_and_the_room_left() -> None:
    report = {
        "files": 1, "used": 700_000, "quota": 1_000_000, "names": ["a.npy"], "sizes": [200_000],
        "room": 100_000, "uploads": 1, "upload_ids": [4711], "upload_names": ["cnn-v1.onnx"],
        "upload_sizes": [500_000], "upload_received": [200_000],
    }  # fmt: skip
    assert describe_file_list(report) == [
        "1 files, 1 uploads in progress: 700000 of 1000000 octets used or reserved, room for an"
        " upload of 100000 (the disk has less room than the quota)",
        "      200000  a.npy",
        "      500000  cnn-v1.onnx  (uploading, reserved: 200000 received, 40%; transfer 4711)",
    ]
    report["room"] = 300_000  # the quota is what limits: nothing to add
    assert describe_file_list(report)[0].endswith("room for an upload of 300000")


def test_a_query_held_in_the_stations_queue_waits_its_whole_timeout_once() -> None:
    payload = FakePayload()
    payload.held = True
    clock = FastClock()
    exchange = Exchange(payload, D, timeout=9.0, clock=clock)
    start = clock()
    with pytest.raises(StillQueued, match=r"no answer to MODEL_LIST within 9 s: the link is down"):
        exchange.query("MODEL_LIST", reply="MODEL_LIST_REPORT")
    # Not asked again (it would wait in the same queue), yet waited for as long as asked.
    assert [n for n, _ in payload.sent] == ["MODEL_LIST"]
    assert clock() - start >= 9.0
