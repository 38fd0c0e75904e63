"""The upload store: chunks in any order, resume after a crash, atomic commit, quota and disk.

A crash is simulated by dropping the store without close() (its descriptors are closed, nothing
is synced), and once for real by SIGKILL-ing a subprocess that writes chunks in a loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.files.errors import (
    BadFileName,
    BadFileSize,
    BadTransferParameters,
    ChecksumMismatch,
    ChunkOutOfRange,
    DiskFull,
    FileExists,
    FileStoreError,
    NoSuchFile,
    QuotaExceeded,
    TransferConflict,
    TransferIncomplete,
    UnknownTransfer,
)
from flight.files.file_index import StoredFile
from flight.files.upload_store import UploadStore
from spacelink.ranges import RangeSet

REPO = Path(__file__).resolve().parents[4]
BIG = 1 << 40  # free space that never limits


def content(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def open_store(root: Path, **kwargs: object) -> UploadStore:
    options: dict[str, object] = {
        "quota_bytes": 1 << 24,
        "reserve_bytes": 0,
        "free_space": lambda _: BIG,
        "sync_interval_bytes": 1 << 30,  # nothing is synced unless a test asks for it
    }
    options.update(kwargs)
    return UploadStore(root, **options)  # type: ignore[arg-type]


def chunks(size: int, rng: random.Random) -> list[tuple[int, int]]:
    """(offset, length) chunks of 200..1000 octets covering [0, size)."""
    out, offset = [], 0
    while offset < size:
        length = min(rng.randint(200, 1000), size - offset)
        out.append((offset, length))
        offset += length
    return out


def received_ranges(store: UploadStore, transfer_id: int) -> RangeSet:
    status = store.status(transfer_id)
    gaps = RangeSet(status.missing)
    return RangeSet(gaps.missing(status.size))  # the complement of the gaps


# --- uploads -------------------------------------------------------------------------------------


def test_shuffled_duplicated_overlapping_chunks_commit_bit_exact(tmp_path: Path) -> None:
    data = content(20_000)
    rng = random.Random(3)
    plan = chunks(len(data), rng)
    plan += rng.sample(plan, 10)  # duplicates
    plan += [(rng.randrange(len(data) - 700), 700) for _ in range(5)]  # overlaps
    rng.shuffle(plan)
    store = open_store(tmp_path, sync_interval_bytes=4096)
    status = store.begin(7, "model.onnx", len(data), sha(data))
    assert (status.received_bytes, status.missing, status.complete) == (0, ((0, 20_000),), False)
    for offset, length in plan:
        store.write(7, offset, data[offset : offset + length])
    assert store.status(7).complete
    path = store.commit(7)
    assert path == tmp_path / "files" / "model.onnx" == store.path_of("model.onnx")
    assert path.read_bytes() == data
    assert store.files() == [StoredFile("model.onnx", len(data), sha(data))]
    assert store.transfers() == [] and list((tmp_path / "partial").iterdir()) == []
    assert store.used_bytes() == len(data)
    with pytest.raises(UnknownTransfer):
        store.status(7)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5000), st.randoms(use_true_random=False), st.integers(1, 3000))
def test_any_chunk_order_and_sync_interval_commits_bit_exact(
    size: int, rng: random.Random, interval: int
) -> None:
    data = content(size, seed=size)
    plan = chunks(size, rng)
    rng.shuffle(plan)
    with tempfile.TemporaryDirectory() as root:
        store = open_store(Path(root), sync_interval_bytes=interval)
        store.begin(1, "f", size, sha(data))
        for offset, length in plan:
            store.write(1, offset, data[offset : offset + length])
        assert store.commit(1).read_bytes() == data
        store.close()


def test_files_appear_only_at_commit(tmp_path: Path) -> None:
    data = content(3000)
    store = open_store(tmp_path)
    store.begin(1, "a.bin", len(data), sha(data))
    store.write(1, 0, data)
    store.sync()
    assert store.status(1).complete
    assert list((tmp_path / "files").iterdir()) == []
    with pytest.raises(NoSuchFile):
        store.path_of("a.bin")
    store.commit(1)
    assert [p.name for p in (tmp_path / "files").iterdir()] == ["a.bin"]


def test_resume_keeps_synced_ranges_and_reports_unsynced_missing(tmp_path: Path) -> None:
    data = content(5000)
    store = open_store(tmp_path)
    store.begin(9, "x.bin", len(data), sha(data))
    store.write(9, 1000, data[1000:2000])
    store.write(9, 0, data[:500])
    store.sync()
    store.write(9, 3000, data[3000:4000])  # written, never synced
    assert store.status(9).received_bytes == 2500
    del store  # kill -9: no close()

    store = open_store(tmp_path)
    status = store.status(9)
    assert status.received_bytes == 1500
    assert status.missing == ((500, 500), (2000, 3000))
    assert store.begin(9, "x.bin", len(data), sha(data)) == status  # ground re-announces
    assert store.missing_ranges(9, limit=1) == ((500, 500),)
    for offset, length in status.missing:
        store.write(9, offset, data[offset : offset + length])
    assert store.commit(9).read_bytes() == data


def test_sync_happens_every_interval_without_explicit_sync(tmp_path: Path) -> None:
    data = content(5000)
    store = open_store(tmp_path, sync_interval_bytes=1000)
    store.begin(2, "y", len(data), sha(data))
    store.write(2, 0, data[:600])
    store.write(2, 600, data[600:1200])  # 1200 pending >= 1000: synced
    store.write(2, 2000, data[2000:2600])  # 600 pending: not synced
    del store

    store = open_store(tmp_path, sync_interval_bytes=1000)
    assert store.status(2).missing == ((1200, 3800),)


def test_close_syncs_everything(tmp_path: Path) -> None:
    data = content(1000)
    with open_store(tmp_path) as store:
        store.begin(3, "z", len(data), sha(data))
        store.write(3, 0, data[:400])
    assert open_store(tmp_path).status(3).received_bytes == 400


def test_checksum_mismatch_discards_everything(tmp_path: Path) -> None:
    data = content(4000)
    store = open_store(tmp_path)
    store.begin(4, "m.onnx", len(data), sha(data))
    store.write(4, 0, data[:2000])
    store.write(4, 2000, bytes(2000))  # corrupted on the way
    with pytest.raises(ChecksumMismatch, match="all 4000 octets must be sent again"):
        store.commit(4)
    assert store.status(4).missing == ((0, 4000),)
    assert list((tmp_path / "files").iterdir()) == []
    del store
    store = open_store(tmp_path)  # the reset is durable
    assert store.status(4).missing == ((0, 4000),)
    store.write(4, 0, data)
    assert store.commit(4).read_bytes() == data


def test_incomplete_commit_says_how_much_is_missing(tmp_path: Path) -> None:
    data = content(1000)
    store = open_store(tmp_path)
    store.begin(5, "p", len(data), sha(data))
    store.write(5, 100, data[100:900])
    with pytest.raises(TransferIncomplete, match="missing 200 of 1000 octets in 2 ranges"):
        store.commit(5)
    assert store.status(5).received_bytes == 800  # still there


def test_quota_counts_committed_and_announced_sizes(tmp_path: Path) -> None:
    store = open_store(tmp_path, quota_bytes=1000)
    a, b = content(600, 1), content(400, 2)
    store.begin(1, "a", 600, sha(a))
    with pytest.raises(QuotaExceeded, match="needs 500 octets but only 400"):
        store.begin(2, "b", 500, sha(b))
    with pytest.raises(QuotaExceeded):
        store.begin(2, "b", 1001, sha(b))
    store.begin(2, "b", 400, sha(b))
    store.write(1, 0, a)
    store.commit(1)
    assert store.used_bytes() == 1000
    store.abort(2)
    store.delete("a")
    assert store.used_bytes() == 0 and store.files() == []
    store.begin(3, "c", 1000, sha(bytes(1000)))  # everything freed


def test_disk_full_keeps_the_reserve(tmp_path: Path) -> None:
    free = [10_000]
    probed: list[Path] = []

    def free_space(path: Path) -> int:
        probed.append(path)
        return free[0]

    store = open_store(tmp_path, reserve_bytes=4000, free_space=free_space)
    with pytest.raises(DiskFull, match="has 10000 free and must keep a reserve of 4000"):
        store.begin(1, "big", 6001, sha(b""))
    assert store.transfers() == [] and store.used_bytes() == 0
    assert probed == [tmp_path]
    store.begin(1, "big", 6000, sha(b""))
    free[0] = 0
    store.write(1, 0, b"x" * 10)  # announced uploads go on
    with pytest.raises(DiskFull):
        store.begin(2, "small", 1, sha(b""))


def test_room_is_the_largest_upload_begin_takes(tmp_path: Path) -> None:
    free = [1 << 40]
    store = open_store(tmp_path, quota_bytes=1000, reserve_bytes=100, free_space=lambda _: free[0])
    store.begin(1, "a", 600, sha(b"a"))  # announced: reserved from now on
    assert store.room_bytes() == 400  # the quota limits
    free[0] = 350
    assert store.room_bytes() == 250  # the disk, above its reserve, limits
    with pytest.raises(DiskFull):
        store.begin(2, "b", 251, sha(b"b"))
    store.begin(2, "b", 250, sha(b"b"))
    free[0] = 50
    assert store.room_bytes() == 0  # never below nothing


def test_same_id_different_parameters_conflicts(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.begin(1, "a", 100, sha(b"a"))
    for name, size, digest in (("b", 100, sha(b"a")), ("a", 101, sha(b"a")), ("a", 100, sha(b""))):
        with pytest.raises(TransferConflict, match="abort it first"):
            store.begin(1, name, size, digest)
    with pytest.raises(TransferConflict, match="already being uploaded by transfer 1"):
        store.begin(2, "a", 100, sha(b"a"))
    store.abort(1)
    store.begin(1, "b", 50, sha(b"b"))
    assert [t.name for t in store.transfers()] == ["b"]


def test_committed_name_must_be_deleted_first(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.begin(1, "f", 1, sha(b"1"))
    store.write(1, 0, b"1")
    store.commit(1)
    with pytest.raises(FileExists, match="delete it first"):
        store.begin(2, "f", 1, sha(b"2"))
    store.delete("f")
    assert not (tmp_path / "files" / "f").exists()
    with pytest.raises(NoSuchFile):
        store.delete("f")
    store.begin(2, "f", 1, sha(b"2"))


@pytest.mark.parametrize("name", ["", ".hidden", "..", "a/b", "../x", "a b", "é", "x" * 65, "a\0"])
def test_bad_names(tmp_path: Path, name: str) -> None:
    store = open_store(tmp_path)
    with pytest.raises(BadFileName, match=r"1\.\.64 characters"):
        store.begin(1, name, 10, sha(b""))
    with pytest.raises(BadFileName):
        store.path_of(name)


@pytest.mark.parametrize("name", ["a", "x" * 64, "model-1.onnx", "_x.tar.gz", "-"])
def test_good_names(tmp_path: Path, name: str) -> None:
    assert open_store(tmp_path).begin(1, name, 10, sha(b"")).name == name


def test_bad_parameters(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    with pytest.raises(BadTransferParameters, match=r"0\.\.65535, got 65536"):
        store.begin(65536, "a", 1, sha(b""))
    with pytest.raises(BadTransferParameters):
        store.begin(-1, "a", 1, sha(b""))
    with pytest.raises(BadTransferParameters, match="32 octets, got 31"):
        store.begin(1, "a", 1, bytes(31))
    with pytest.raises(BadFileSize, match="at least 1 octet, got 0"):
        store.begin(1, "a", 0, sha(b""))
    assert store.begin(65535, "a", 1, sha(b"")).transfer_id == 65535


def test_unknown_transfer_and_chunks_out_of_range(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.begin(1, "a", 100, sha(b""))
    for call in (
        lambda: store.write(2, 0, b"x"),
        lambda: store.status(2),
        lambda: store.missing_ranges(2),
        lambda: store.commit(2),
        lambda: store.abort(2),
    ):
        with pytest.raises(UnknownTransfer, match="transfer ID 2 \\(in progress: 1\\)"):
            call()
    for offset, data in ((0, b""), (-1, b"x"), (99, b"xy"), (100, b"x"), (0, bytes(101))):
        with pytest.raises(ChunkOutOfRange, match=r"within 0\.\.100"):
            store.write(1, offset, data)
    store.write(1, 99, b"x")
    assert store.status(1).missing == ((0, 99),)
    assert issubclass(ChunkOutOfRange, FileStoreError)


def test_abort_removes_everything(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.begin(1, "a", 100, sha(b""))
    store.write(1, 0, b"x" * 50)
    store.abort(1)
    assert store.transfers() == [] and store.used_bytes() == 0
    assert list((tmp_path / "partial").iterdir()) == []
    del store
    assert open_store(tmp_path).transfers() == []


def test_files_survive_reopen_and_a_lost_index(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    for tid, name in enumerate(("b", "a")):
        data = content(300, tid)
        store.begin(tid, name, len(data), sha(data))
        store.write(tid, 0, data)
        store.commit(tid)
    listed = store.files()
    assert [f.name for f in listed] == ["a", "b"]
    del store
    assert open_store(tmp_path).files() == listed
    (tmp_path / "index.json").write_text("{not json")
    assert open_store(tmp_path).files() == listed
    assert json.loads((tmp_path / "index.json").read_text())["files"]["a"]["size"] == 300


# --- crash recovery ------------------------------------------------------------------------------


def journal_of(root: Path, transfer_id: int) -> Path:
    return root / "partial" / f"{transfer_id:05d}.journal"


def test_truncated_last_journal_record_is_ignored(tmp_path: Path) -> None:
    data = content(3000)
    store = open_store(tmp_path)
    store.begin(1, "a", len(data), sha(data))
    store.write(1, 0, data[:1000])
    store.sync()
    store.write(1, 2000, data[2000:2500])
    store.sync()
    del store
    journal = journal_of(tmp_path, 1)
    journal.write_bytes(journal.read_bytes()[:-7])  # torn final append

    store = open_store(tmp_path)
    assert store.status(1).missing == ((1000, 2000),)
    store.write(1, 1000, data[1000:])
    store.sync()
    del store
    assert open_store(tmp_path).status(1).complete  # appends after the repair are readable


def test_corrupted_journal_record_is_skipped(tmp_path: Path) -> None:
    data = content(3000)
    store = open_store(tmp_path)
    store.begin(1, "a", len(data), sha(data))
    for offset in (0, 1000, 2000):
        store.write(1, offset, data[offset : offset + 500])
        store.sync()
    del store
    journal = journal_of(tmp_path, 1)
    raw = bytearray(journal.read_bytes())
    raw[25] ^= 0x01  # inside the second record
    journal.write_bytes(bytes(raw))
    assert open_store(tmp_path).status(1).missing == ((500, 1500), (2500, 500))


def test_unreadable_metadata_discards_only_that_upload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(tmp_path)
    store.begin(1, "a", 100, sha(b""))
    store.begin(2, "b", 100, sha(b""))
    store.write(2, 0, b"y" * 100)
    store.sync()
    del store
    (tmp_path / "partial" / "00001.meta").write_bytes(b'{"version": 1, "transf')
    with caplog.at_level(logging.WARNING):
        store = open_store(tmp_path)
    assert "unreadable metadata" in caplog.text
    assert [t.transfer_id for t in store.transfers()] == [2]
    assert store.status(2).complete
    assert sorted(p.name for p in (tmp_path / "partial").iterdir()) == [
        "00002.data",
        "00002.journal",
        "00002.meta",
    ]
    store.begin(1, "a", 100, sha(b""))  # the ID is free again


def test_debris_of_an_interrupted_begin_is_removed(tmp_path: Path) -> None:
    open_store(tmp_path)
    for name in ("00003.data", "00003.journal", "00003.meta.tmp"):
        (tmp_path / "partial" / name).write_bytes(b"junk")
    store = open_store(tmp_path)
    assert store.transfers() == []
    assert list((tmp_path / "partial").iterdir()) == []


def test_crash_after_the_rename_finishes_the_commit(tmp_path: Path) -> None:
    data = content(700)
    store = open_store(tmp_path)
    store.begin(1, "a", len(data), sha(data))
    store.write(1, 0, data)
    meta = (tmp_path / "partial" / "00001.meta").read_bytes()
    store.commit(1)
    del store
    # The state a crash leaves between the rename into files/ and the metadata's removal.
    (tmp_path / "partial" / "00001.meta").write_bytes(meta)
    (tmp_path / "index.json").unlink()
    store = open_store(tmp_path)
    assert store.transfers() == []
    assert store.files() == [StoredFile("a", len(data), sha(data))]
    assert list((tmp_path / "partial").iterdir()) == []


def test_journal_stays_small_with_scattered_chunks(tmp_path: Path) -> None:
    data = content(250_000)
    store = open_store(tmp_path, sync_interval_bytes=1)  # one journal record per chunk
    store.begin(1, "a", len(data), sha(data))
    plan = chunks(len(data), random.Random(5))
    for offset, length in reversed(plan):  # every sync extends one range downwards
        store.write(1, offset, data[offset : offset + length])
    assert len(plan) > 300
    assert journal_of(tmp_path, 1).stat().st_size <= 20 * 300
    del store
    store = open_store(tmp_path)
    assert store.status(1).complete
    assert store.commit(1).read_bytes() == data


_WRITER = """
import random, sys
from pathlib import Path
from flight.files.upload_store import UploadStore
size = int(sys.argv[2])
data = random.Random(11).randbytes(size)
store = UploadStore(Path(sys.argv[1]), quota_bytes=size, reserve_bytes=0,
                    free_space=lambda _: 1 << 40, sync_interval_bytes=4096)
store.begin(1, "k.bin", size, bytes(32))
rng = random.Random(12)
count = 0
while True:
    offset = rng.randrange(size)
    length = min(rng.randint(200, 1000), size - offset)
    store.write(1, offset, data[offset:offset + length])
    count += 1
    if count % 50 == 0:
        print(count, flush=True)
"""


def test_sigkill_while_writing_loses_nothing_claimed(tmp_path: Path) -> None:
    size = 200_000
    data = random.Random(11).randbytes(size)
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), str(size)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        for _ in range(6):  # 300 chunks: dozens of syncs behind, one perhaps under way
            line = writer.stdout.readline()
            assert line, writer.stderr.read() if writer.stderr else "writer died"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL

    store = open_store(tmp_path)
    received = received_ranges(store, 1)
    assert received.covered_bytes > 50 * 200
    raw = (tmp_path / "partial" / "00001.data").read_bytes()
    assert len(raw) == size
    for offset, length in received:
        assert raw[offset : offset + length] == data[offset : offset + length]
