"""Hostile-input leftovers (issue 8): JOB_SUBMIT checks an input by its .npy header alone, an
upload holds a bounded number of separate ranges, and neither the job store, the protected state
nor the state directory's lock file follows a symbolic link planted in the state directory."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import random
import re
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flight.durable import NotRegularError, open_lock_file, open_regular_file
from flight.files.upload_store import (
    DEFAULT_MAX_RANGES,
    TooManyRanges,
    UploadStore,
)
from flight.jobs.model_check import (
    MAX_NPY_HEADER_OCTETS,
    InputMismatch,
    InputProblem,
    ModelSignature,
    TensorSpec,
    check_input,
    check_input_header,
    load_input,
    read_input_header,
)
from flight.jobs.redundancy import Redundancy
from flight.jobs.store import JOBS_DB_FILE, JobStore, JobStoreError
from flight.protection.triplicate import FILE_NAMES, Medium, TripleStore, encode_file
from tools.fuzz_targets import _npy_seeds, fix_npy_size


def npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array, version=version, allow_pickle=False)
    return out.getvalue()


def npy_file(header: bytes, body: bytes = b"") -> bytes:
    """A version 1.0 .npy file with this header text (padded as numpy pads it)."""
    header = header.ljust(117) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + body


def signature(*inputs: TensorSpec) -> ModelSignature:
    return ModelSignature(inputs, (TensorSpec("y", "float32", (None,)),), 13, frozenset({"Relu"}))


SIGNATURES = [
    signature(TensorSpec("x", "float32", (None, 8))),
    signature(TensorSpec("image", "float32", (1, 3, 4, 4))),
    signature(TensorSpec("ids", "int64", (None,))),
    signature(TensorSpec("a", "float32", (2,)), TensorSpec("b", "float32", (2,))),
]

Verdict = tuple[InputProblem, str] | None
# numpy's messages for some broken headers name a Python object by its address.
_ADDRESS = re.compile(r"0x[0-9a-f]+")


def verdict_of(exc: InputMismatch) -> Verdict:
    return exc.reason, _ADDRESS.sub("0x?", str(exc))


def full_load_verdict(sig: ModelSignature, data: bytes) -> Verdict:
    """What the job's run decides: the whole file loaded, then checked."""
    try:
        check_input(sig, load_input(data))
    except InputMismatch as exc:
        return verdict_of(exc)
    return None


def header_verdict(sig: ModelSignature, data: bytes) -> Verdict:
    """What JOB_SUBMIT decides from the header alone."""
    try:
        check_input_header(sig, read_input_header(io.BytesIO(data), len(data)))
    except InputMismatch as exc:
        return verdict_of(exc)
    return None


# --- 1. the input's header -----------------------------------------------------------------------

F4 = b"{'descr': '<f4', 'fortran_order': False, 'shape': "
CRAFTED = {
    "fits": npy(np.ones((2, 8), np.float32)),
    "big-endian": npy(np.ones((3, 8), ">f4")),
    "fortran": npy(np.asfortranarray(np.ones((3, 8), np.float32))),
    "version 2.0": npy(np.ones((1, 8), np.float32), version=(2, 0)),
    "image": npy(np.zeros((1, 3, 4, 4), np.float32)),
    "wrong dtype": npy(np.ones((2, 8), np.float64)),
    "wrong rank": npy(np.ones(8, np.float32)),
    "wrong dimension": npy(np.ones((2, 7), np.float32)),
    "empty batch": npy(np.ones((0, 8), np.float32)),
    "scalar": npy(np.array(1.5, np.float32)),
    "int64": npy(np.arange(5, dtype=np.int64)),
    "structured": npy(np.zeros(3, dtype=[("a", "<u2"), ("b", ">f8")])),
    "truncated": npy(np.ones((2, 8), np.float32))[:-1],
    "trailing octet": npy(np.ones((2, 8), np.float32)) + b"\0",
    "no magic": b"PK\x03\x04" + bytes(60),
    "empty": b"",
    "object header": npy_file(
        b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", bytes(8)
    ),
    "negative axes": npy_file(F4 + b"(-2, -8), }", bytes(64)),
    "boolean axis": npy_file(F4 + b"(True, 8), }", bytes(32)),
    "sub-array dtype": npy_file(
        b"{'descr': ('<f4', (8,)), 'fortran_order': False, 'shape': (2,), }", bytes(64)
    ),
    "no octets per item": npy_file(
        b"{'descr': '|V0', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }"
    ),
    "huge declared array": npy_file(F4 + b"(10000000000000,), }", bytes(8)),
    "header too long": b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 31) + bytes(64),
}


@pytest.mark.parametrize("sig", SIGNATURES, ids=lambda s: ",".join(t.name for t in s.inputs))
@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_the_header_gives_the_verdict_and_message_of_a_full_load(
    name: str, sig: ModelSignature
) -> None:
    data = CRAFTED[name]
    assert header_verdict(sig, data) == full_load_verdict(sig, data)


def test_the_crafted_inputs_cover_every_verdict() -> None:
    x = SIGNATURES[0]
    verdicts = {name: header_verdict(x, data) for name, data in CRAFTED.items()}
    assert verdicts["fits"] is None and verdicts["big-endian"] is None
    assert verdicts["wrong dtype"] == (
        InputProblem.WRONG_DTYPE,
        "input x: dtype is float64, the model needs float32",
    )
    assert verdicts["wrong rank"] == (
        InputProblem.WRONG_RANK,
        "input x: rank is 1 (shape (8,)), the model needs 2",
    )
    assert verdicts["wrong dimension"] == (
        InputProblem.WRONG_DIMENSION,
        "input x: axis 1 is 7, the model needs 8",
    )
    assert header_verdict(SIGNATURES[3], CRAFTED["fits"]) == (
        InputProblem.WRONG_COUNT,
        "one array given, the model has 2 inputs (a, b)",
    )
    assert verdicts["scalar"] == (  # a scalar is loaded as a one-element array
        InputProblem.WRONG_RANK,
        "input x: rank is 1 (shape (1,)), the model needs 2",
    )
    refused = [
        *("truncated", "trailing octet", "no magic", "object header", "negative axes"),
        *("boolean axis", "sub-array dtype", "no octets per item", "header too long"),
    ]
    for name in refused:
        verdict = verdicts[name]
        assert verdict is not None and verdict[0] is InputProblem.NOT_NPY, name


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_npy_seeds()),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.integers(0, 200),
    fix=st.booleans(),
    sig=st.sampled_from(SIGNATURES),
)
def test_mutated_inputs_get_the_same_verdict_from_their_header(
    seed: bytes, edits: list[tuple[int, int]], cut: int | None, fix: bool, sig: ModelSignature
) -> None:
    data = mutate(seed, edits, cut)
    if fix:
        data = fix_npy_size(data)
    assert header_verdict(sig, data) == full_load_verdict(sig, data)


class CountingReader:
    """A file read through, counting the octets asked for and handed out."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.octets = 0

    def read(self, n: int = -1) -> bytes:
        data = self.file.read(n)
        self.octets += len(data)
        return data


def test_a_large_inputs_header_is_checked_without_reading_its_data(tmp_path: Path) -> None:
    rows = (1 << 30) // 32  # 1 GiB of float32 rows of 8, in a sparse file
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": "<f4", "fortran_order": False, "shape": (rows, 8)}
    )
    header = out.getvalue()
    path = tmp_path / "big.npy"
    with open(path, "wb") as file:
        file.write(header)
        file.truncate(len(header) + rows * 32)
    with open(path, "rb") as file:
        reader = CountingReader(file)
        found = read_input_header(cast(BinaryIO, reader), os.fstat(file.fileno()).st_size)
    assert found.shape == (rows, 8) and found.dtype == np.float32
    check_input_header(SIGNATURES[0], found)
    assert reader.octets == len(header) < 256
    with open(path, "rb") as file:  # one octet more or less than the header declares: refused
        for size in (path.stat().st_size - 1, path.stat().st_size + 1):
            file.seek(0)
            with pytest.raises(InputMismatch, match="octets of array data"):
                read_input_header(file, size)


def test_a_header_declaring_gigabytes_of_text_is_refused_after_its_length(tmp_path: Path) -> None:
    path = tmp_path / "long-header.npy"
    path.write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{" * 20_000)
    with open(path, "rb") as file:
        reader = CountingReader(file)
        with pytest.raises(InputMismatch) as refused:
            read_input_header(cast(BinaryIO, reader), path.stat().st_size)
    assert refused.value.reason is InputProblem.NOT_NPY
    assert f"at most {MAX_NPY_HEADER_OCTETS}" in str(refused.value)
    assert reader.octets == 12


# --- 2. scattered chunks ------------------------------------------------------------------------


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def open_store(
    root: Path, max_ranges: int = DEFAULT_MAX_RANGES, sync: int = 1 << 18
) -> UploadStore:
    return UploadStore(
        root,
        quota_bytes=1 << 20,
        reserve_bytes=0,
        free_space=lambda _: 1 << 40,
        max_ranges=max_ranges,
        sync_interval_bytes=sync,
    )


def test_the_default_limit_is_4096_ranges(tmp_path: Path) -> None:
    assert open_store(tmp_path / "s").max_ranges == DEFAULT_MAX_RANGES == 4096
    with pytest.raises(ValueError, match="max_ranges >= 1"):
        open_store(tmp_path / "t", max_ranges=0)


def test_a_chunk_that_would_start_one_range_too_many_is_refused_and_the_upload_kept(
    tmp_path: Path,
) -> None:
    data = bytes(random.Random(1).randrange(256) for _ in range(100))
    store = open_store(tmp_path / "s", max_ranges=8)
    store.begin(1, "f.bin", len(data), sha(data))
    have: set[int] = set()

    def send(offset: int, length: int) -> None:
        store.write(1, offset, data[offset : offset + length])
        have.update(range(offset, offset + length))

    for offset in range(0, 16, 2):  # every other octet: 8 separate ranges
        send(offset, 1)
    with pytest.raises(TooManyRanges, match="8 separate ranges received, at most 8"):
        send(20, 1)
    with pytest.raises(TooManyRanges):
        send(50, 40)
    # Chunks that extend, bridge or overlap what is there are taken.
    send(15, 25)  # touches the range at 14
    send(1, 1)  # bridges the ranges at 0 and 2
    send(4, 1)  # already received
    assert len(store.status(1).missing) == 7
    send(60, 1)  # room for one more range again
    with pytest.raises(TooManyRanges):
        send(80, 1)
    assert store.status(1).received_bytes == len(have)
    store.close()

    reopened = open_store(tmp_path / "s", max_ranges=8)
    status = reopened.status(1)
    assert status.received_bytes == len(have)
    with pytest.raises(TooManyRanges):
        reopened.write(1, 80, data[80:81])
    for offset, length in status.missing:
        reopened.write(1, offset, data[offset : offset + length])
    assert reopened.commit(1).read_bytes() == data


def test_chunks_sent_again_over_received_octets_cannot_pile_up_unsynced_ranges(
    tmp_path: Path,
) -> None:
    """Rewrites add no range to what is received but scatter what awaits the journal: once as
    many ranges wait as an upload may hold, they are synced, whatever their octets."""
    data = bytes(100)
    store = open_store(tmp_path / "s", max_ranges=8, sync=1 << 30)
    store.begin(1, "f.bin", len(data), sha(data))
    store.write(1, 0, data)
    store.sync()
    journal = tmp_path / "s" / "partial" / "00001.journal"
    assert journal.stat().st_size == 20
    for offset in range(0, 14, 2):
        store.write(1, offset, b"\0")
    assert journal.stat().st_size == 20  # 7 ranges wait: below the limit, below the interval
    store.write(1, 14, b"\0")
    assert journal.stat().st_size == 20 * 9  # the 8th: synced


# --- 3. links planted in the state directory ----------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "victim").write_bytes(b"precious" * 64)
    return directory


def listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("which", ["", "-wal", "-shm"])
def test_a_job_store_file_that_is_a_link_is_refused(
    tmp_path: Path, outside: Path, which: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    JobStore.in_state_dir(state).close()
    target = state / f"{JOBS_DB_FILE}{which}"
    target.unlink(missing_ok=True)
    target.symlink_to(outside / "victim")
    before = listing(outside)
    with pytest.raises(JobStoreError, match="is a symbolic link: not opened"):
        JobStore.in_state_dir(state)
    assert listing(outside) == before  # no -wal or -shm made beside what the link names


def test_a_new_job_store_is_not_created_through_a_dangling_link(
    tmp_path: Path, outside: Path
) -> None:
    (tmp_path / JOBS_DB_FILE).symlink_to(outside / "new.sqlite3")
    with pytest.raises(JobStoreError, match="symbolic link"):
        JobStore.in_state_dir(tmp_path)
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]


def test_a_fifo_in_place_of_the_job_store_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / JOBS_DB_FILE)
    with pytest.raises(JobStoreError, match="not a file"):
        JobStore.in_state_dir(tmp_path)


def test_a_job_store_replaced_by_a_link_while_open_is_not_checked_through_it(
    tmp_path: Path, outside: Path
) -> None:
    store = JobStore.in_state_dir(tmp_path)
    try:
        store.submit("m", "x.npy", 1, Redundancy.NONE, None)
        path = tmp_path / JOBS_DB_FILE
        os.replace(path, outside / "moved.sqlite3")
        path.symlink_to(outside / "moved.sqlite3")
        before = listing(outside)
        with pytest.raises(JobStoreError, match="symbolic link"):
            store.verify()
        assert listing(outside) == before
        assert store.get(1).model == "m"  # the open connection keeps working
    finally:
        store.close()


DEFAULTS: dict[str, bool | int | float | str] = {"boot_count": 0, "mode_name": "NOMINAL"}


def plant_state_file(outside: Path) -> Path:
    """A well-formed copy with other values: what a link would feed the vote."""
    planted = outside / "planted.state"
    planted.write_bytes(encode_file({"boot_count": 999, "mode_name": "EVIL"}, 10_000))
    return planted


def test_a_protected_copy_that_is_a_link_is_damaged_not_read_and_rewritten(
    tmp_path: Path, outside: Path
) -> None:
    directory = tmp_path / "protected"
    store = TripleStore(directory, DEFAULTS)
    store.set("boot_count", 3)
    planted = plant_state_file(outside)
    for name in FILE_NAMES[:2]:  # two links: read, they would outvote the third copy
        (directory / name).unlink()
        (directory / name).symlink_to(planted)
    before = listing(outside)

    reopened = TripleStore(directory, DEFAULTS)
    assert reopened.values() == {"boot_count": 3, "mode_name": "NOMINAL"}
    assert reopened.loaded.files_repaired == 2
    for name in FILE_NAMES:
        assert stat.S_ISREG(os.lstat(directory / name).st_mode)
    assert listing(outside) == before


def test_a_link_planted_while_running_is_repaired_by_the_scrub(
    tmp_path: Path, outside: Path
) -> None:
    directory = tmp_path / "protected"
    store = TripleStore(directory, DEFAULTS)
    store.set("mode_name", "SAFE")
    planted = plant_state_file(outside)
    path = directory / FILE_NAMES[1]
    path.unlink()
    path.symlink_to(planted)
    before = listing(outside)
    # A link is no fault site, and fault injection does not write through it.
    assert [s.copy for s in store.fault_sites() if s.medium is Medium.FILE] == [0, 2]

    found = store.scrub()
    assert found.files_repaired == 1
    assert stat.S_ISREG(os.lstat(path).st_mode)
    assert TripleStore(directory, DEFAULTS).values()["mode_name"] == "SAFE"
    assert listing(outside) == before


def test_a_fifo_in_place_of_a_protected_copy_does_not_block(tmp_path: Path) -> None:
    directory = tmp_path / "protected"
    TripleStore(directory, DEFAULTS).set("boot_count", 5)
    (directory / FILE_NAMES[0]).unlink()
    os.mkfifo(directory / FILE_NAMES[0])
    reopened = TripleStore(directory, DEFAULTS)
    assert reopened.get("boot_count") == 5 and reopened.loaded.files_repaired == 1
    assert stat.S_ISREG(os.lstat(directory / FILE_NAMES[0]).st_mode)


def test_a_directory_in_place_of_a_protected_copy_is_moved_aside_and_the_copy_rewritten(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "protected"
    TripleStore(directory, DEFAULTS).set("boot_count", 6)
    path = directory / FILE_NAMES[2]
    path.unlink()
    path.mkdir()
    (path / "evidence").write_bytes(b"kept")
    reopened = TripleStore(directory, DEFAULTS)
    assert reopened.get("boot_count") == 6 and reopened.loaded.files_repaired == 1
    assert stat.S_ISREG(os.lstat(path).st_mode)
    (aside,) = directory.glob(f"{FILE_NAMES[2]}.displaced-*")
    assert (aside / "evidence").read_bytes() == b"kept"
    reopened.set("boot_count", 7)  # later writes go to the file as usual
    assert TripleStore(directory, DEFAULTS).values()["boot_count"] == 7


def test_the_lock_file_is_created_private_and_not_inherited(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    old = os.umask(0o022)
    try:
        fd = open_lock_file(path)
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
        assert not os.get_inheritable(fd)
        assert os.get_blocking(fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        second = open_lock_file(path)  # an existing lock file is opened, not refused
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(second)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "plant",
    [
        lambda p, o: p.symlink_to(o / "victim"),
        lambda p, o: p.symlink_to(o / "missing"),
        lambda p, o: os.mkfifo(p),
        lambda p, o: p.mkdir(),
    ],
    ids=["link", "dangling link", "fifo", "directory"],
)
def test_a_lock_file_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, outside: Path, plant: Callable[[Path, Path], None]
) -> None:
    path = tmp_path / ".lock"
    plant(path, outside)
    before = listing(outside)
    with pytest.raises(NotRegularError) as refused:
        open_lock_file(path)
    assert isinstance(refused.value, OSError) and refused.value.filename == str(path)
    assert listing(outside) == before
    if path.is_symlink():
        assert refused.value.errno == errno.ELOOP
        assert refused.value.strerror == "a symbolic link, not followed"


def test_a_regular_file_is_opened_with_the_flags_asked(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = open_regular_file(path, os.O_WRONLY | os.O_CREAT, 0o640)
    try:
        os.write(fd, b"abc")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"abc"
    with pytest.raises(FileNotFoundError):
        open_regular_file(tmp_path / "none")
