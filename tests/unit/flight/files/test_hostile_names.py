"""Names, paths and sizes from the ground that try to escape the state directory or to exhaust
the payload: the file store refuses them with precise errors, the services answer them with their
failure codes, no symbolic link planted in the store is followed, and the payload keeps working.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flight.commanding import detail_octets
from flight.compute.job_compute import JobCompute, input_failure
from flight.compute.memory_scrub import MemoryScrub
from flight.counters import LinkCounters
from flight.files.errors import (
    BadFileName,
    DiskFull,
    FileExists,
    NotRegularFile,
    QuotaExceeded,
    TooManyUploads,
    TransferConflict,
)
from flight.files.file_names import RESULT_NAMES
from flight.files.regular_files import open_regular
from flight.files.upload_store import DEFAULT_MAX_RANGES, UploadStore
from flight.jobs.executor import Executor, SessionCache
from flight.jobs.model_check import InputMismatch, check_input, load_input
from flight.jobs.providers import CPU, ProviderChoice
from flight.jobs.registry import COPIES_DIR, ModelExists, ModelRegistry
from flight.jobs.runner import JobRunner, result_file_name
from flight.jobs.store import JobState, JobStore
from flight.protection.injection import FaultInjector, GuardFaults
from flight.protection.model_guard import ModelGuard
from flight.protection.scrubber import Scrubber
from flight.protection.upsets import UpsetLog
from flight.router import CommandRouter
from flight.services import test as test_service
from flight.services.events import EventReporter
from flight.services.files import MAX_DOWNLOADS, FileService
from flight.services.jobs import JobService
from flight.services.models import ModelService
from flight.services.protection import ProtectionService
from flight.telemetry import TmPublisher
from spacelink.pus import Stage, VerificationReport
from spacelink.spacepacket import AckFlags, PusTc, PusTm, RequestId
from telemetry_defs.loader import default_dictionary
from tools.model_gen import loop_model, mlp, model_bytes

D = default_dictionary()
APID = 100
BIG = 1 << 40  # free space that never limits
TINY_WIDTHS = (16, 32, 4)

# Every way a name from the ground could leave files/ or alias something else.
HOSTILE_NAMES = [
    "",
    ".",
    "..",
    "../x",
    "../../../etc/passwd",
    "a/../../x",
    "/etc/passwd",
    "x/y",
    "\\",
    "a\\..\\b",
    "a\x00b",
    "x\x00",
    "a\nb",
    "a\tb",
    "a\x1bb",
    "a\x7fb",
    "a b",
    "x" * 65,
    "x" * 255,
    "\u00e9" * 127,  # 254 octets of UTF-8
    ".lock",
    ".hidden",
    ".put-x.npy",
    ".tmp",
    "caf\u00e9.npy",  # NFC
    "cafe\u0301.npy",  # the same name in NFD
    "\uff58.npy",  # fullwidth x
    "\u212a.npy",  # Kelvin sign: K once case-folded
    "\u0130.npy",  # dotted capital I: i once lower-cased
    "x\u200b.npy",  # zero-width space
]
# Valid names, but the payload's own: the names of job results.
RESERVED_NAMES = ["job-1.npy", "JOB-12.NPZ", "job-0099.npz"]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry under `root`, links not followed: kind and content (or link target)."""
    out: dict[str, tuple[str, str]] = {}
    for directory, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(directory, name)
            mode = path.lstat().st_mode
            relative = str(path.relative_to(root))
            if stat.S_ISLNK(mode):
                out[relative] = ("link", os.readlink(path))
            elif stat.S_ISREG(mode):
                out[relative] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                out[relative] = (stat.filemode(mode), "")
    return out


def open_store(root: Path, **kwargs: Any) -> UploadStore:
    options: dict[str, Any] = {"quota_bytes": 1 << 24, "reserve_bytes": 0}
    options.update(kwargs)
    options.setdefault("free_space", lambda _: BIG)
    return UploadStore(root, **options)


def store_file(store: UploadStore, name: str, data: bytes, transfer_id: int = 1) -> None:
    store.begin(transfer_id, name, len(data), sha(data))
    store.write(transfer_id, 0, data)
    store.commit(transfer_id)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Files the payload must never touch, beside its state directory."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret").write_bytes(b"not the payload's\n" * 10)
    (directory / "victim").write_bytes(b"precious" * 64)
    return directory


# --- the store: names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_refused_before_anything_is_created(tmp_path: Path, name: str) -> None:
    store = open_store(tmp_path / "state")
    store_file(store, "kept.npy", b"kept")
    before = snapshot(tmp_path)
    with pytest.raises(BadFileName):
        store.begin(2, name, 10, sha(b"0123456789"))
    for look_up in (store.info, store.delete, store.read, store.open, store.path_of):
        with pytest.raises(BadFileName):
            look_up(name)
    with pytest.raises(BadFileName):
        store.put(name, b"x")
    store.sync()
    assert snapshot(tmp_path) == before
    assert [f.name for f in store.files()] == ["kept.npy"]


@pytest.mark.parametrize(
    "name", ["index.json", "jobs.db", "partial", "files", "00001.meta", "-rf", "lock", "a..b"]
)
def test_names_of_the_stores_own_files_stay_inside_files(tmp_path: Path, name: str) -> None:
    store = open_store(tmp_path / "state" / "files")
    store_file(store, "first.npy", b"first")
    store_file(store, name, b"uploaded " + name.encode(), transfer_id=2)
    assert (
        tmp_path / "state" / "files" / "files" / name
    ).read_bytes() == b"uploaded " + name.encode()
    store.close()
    reopened = open_store(tmp_path / "state" / "files")
    assert [f.name for f in reopened.files()] == sorted(["first.npy", name])
    assert reopened.intact("first.npy") and reopened.intact(name)
    assert sorted(os.listdir(tmp_path / "state" / "files")) == ["files", "index.json", "partial"]
    assert os.listdir(tmp_path / "state") == ["files"]


def test_names_that_differ_only_by_case_are_one_name(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store_file(store, "Data.npy", b"first")
    with pytest.raises(FileExists, match=r"'Data\.npy' is already stored"):
        store.begin(2, "data.npy", 3, sha(b"abc"))
    store.begin(3, "input.NPY", 3, sha(b"abc"))
    with pytest.raises(TransferConflict, match=r"'input\.NPY' is already being uploaded"):
        store.begin(4, "Input.npy", 3, sha(b"abc"))
    assert [t.transfer_id for t in store.transfers()] == [3]


def test_result_names_are_reserved_for_the_payload(tmp_path: Path) -> None:
    for outputs in (1, 2):
        assert RESULT_NAMES.fullmatch(result_file_name(12345, outputs))
    store = open_store(tmp_path)
    for name in RESERVED_NAMES:
        with pytest.raises(BadFileName, match="reserved for the files the payload makes"):
            store.begin(1, name, 3, sha(b"abc"))
    assert store.put("job-7.npy", b"result").size == 6  # the payload's own result is stored
    store_file(store, "job-7.npy.bak", b"not a result name")
    store_file(store, "myjob-7.npy", b"nor this", transfer_id=2)


# --- the store: planted symbolic links and special files -----------------------------------------


def test_a_stored_file_replaced_by_a_symlink_is_not_followed(tmp_path: Path, outside: Path) -> None:
    store = open_store(tmp_path / "state")
    store_file(store, "a.npy", b"stored")
    link = tmp_path / "state" / "files" / "a.npy"
    link.unlink()
    link.symlink_to(outside / "secret")
    before = snapshot(outside)

    with pytest.raises(NotRegularFile):
        store.read("a.npy")
    with pytest.raises(NotRegularFile):
        store.path_of("a.npy")
    assert not store.intact("a.npy")
    store.delete("a.npy")  # removes the link, not what it names

    assert not os.path.lexists(link) and snapshot(outside) == before


@pytest.mark.timeout(30)  # a blocking open would wait for a writer for ever
def test_a_fifo_in_place_of_a_stored_file_does_not_block(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store_file(store, "a.npy", b"stored")
    path = tmp_path / "files" / "a.npy"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(NotRegularFile):
        store.read("a.npy")
    assert not store.intact("a.npy")
    with pytest.raises(NotRegularFile):
        open_regular(path, os.O_WRONLY)  # no reader: ENXIO, still refused cleanly


def test_links_planted_at_an_uploads_paths_are_removed_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    store = open_store(tmp_path / "state")
    partial = tmp_path / "state" / "partial"
    for suffix in ("data", "journal", "meta", "meta.tmp", "journal.tmp"):
        (partial / f"00002.{suffix}").symlink_to(outside / "victim")
    (partial / ".put-job-1.npy").symlink_to(outside / "secret")
    before = snapshot(outside)

    data = b"the upload" * 100
    store.begin(2, "u.npy", len(data), sha(data))
    store.write(2, 0, data)
    store.sync()
    store.commit(2)
    store.put("job-1.npy", b"a result")

    assert snapshot(outside) == before
    assert store.read("u.npy") == data and store.read("job-1.npy") == b"a result"


@pytest.mark.timeout(30)  # the FIFO planted in partial/ would block a plain open
def test_recovery_does_not_follow_links_planted_in_the_store(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "state"
    store = open_store(root)
    data = b"0123456789" * 50
    store.begin(3, "half.npy", len(data), sha(data))
    store.write(3, 0, data[:200])
    store.close()
    # A link in place of the data file, another for a second upload's metadata and journal, a
    # stored file, the index, the temporary file of an atomic replacement.
    (root / "partial" / "00003.data").unlink()
    (root / "partial" / "00003.data").symlink_to(outside / "victim")
    (outside / "meta").write_text(
        '{"version": 1, "transfer_id": 4, "name": "x", "size": 3, "sha256": "' + "0" * 64 + '"}'
    )
    (root / "partial" / "00004.meta").symlink_to(outside / "meta")
    (root / "partial" / "00003.journal.tmp").symlink_to(outside / "victim")
    (root / "files" / "evil.npy").symlink_to(outside / "secret")
    (root / "index.json").unlink(missing_ok=True)
    (root / "index.json").symlink_to(outside / "secret")
    os.mkfifo(root / "partial" / "00005.meta")
    before = snapshot(outside)

    reopened = open_store(root)

    assert snapshot(outside) == before
    assert [f.name for f in reopened.files()] == []  # the link in files/ was no stored file
    assert not os.path.lexists(root / "files" / "evil.npy")
    (status,) = reopened.transfers()
    assert (status.transfer_id, status.received_bytes) == (3, 0)  # its data is asked again
    reopened.write(3, 0, data)
    reopened.commit(3)
    assert reopened.read("half.npy") == data and snapshot(outside) == before
    assert not (root / "index.json").is_symlink()


def test_store_directories_replaced_by_links_are_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "state"
    open_store(root).close()
    for directory in ("files", "partial"):
        os.rmdir(root / directory)
        (root / directory).symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)

    store = open_store(root)
    store_file(store, "a.npy", b"inside")

    assert snapshot(outside) == before
    assert (root / "files").is_dir() and not (root / "files").is_symlink()
    assert (root / "files" / "a.npy").read_bytes() == b"inside"


# --- the store: limits ---------------------------------------------------------------------------


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_uploads_in_progress_are_limited(tmp_path: Path) -> None:
    store = open_store(tmp_path, max_uploads=4)
    before = open_descriptors()
    for transfer_id in range(4):
        store.begin(transfer_id, f"f{transfer_id}", 2, sha(b"ab"))
        store.write(transfer_id, 0, b"a")
    with pytest.raises(TooManyUploads, match="4 uploads are in progress, at most 4"):
        store.begin(9, "f9", 2, sha(b"ab"))
    assert open_descriptors() - before <= 4
    store.abort(0)
    store.begin(9, "f9", 2, sha(b"ab"))
    store.begin(9, "f9", 2, sha(b"ab"))  # resuming one in progress is never refused
    assert len(store.transfers()) == 4


def test_sizes_beyond_the_quota_or_the_disk_create_nothing(tmp_path: Path) -> None:
    small = open_store(tmp_path / "small", quota_bytes=1000)
    store_file(small, "a.npy", b"x" * 600)
    # The default quota (4 GiB) admits any u32 size: the disk's free space refuses it.
    large = open_store(tmp_path / "large", quota_bytes=4 << 30, reserve_bytes=500,
                       free_space=lambda _: 1 << 20)  # fmt: skip
    before = snapshot(tmp_path)
    with pytest.raises(QuotaExceeded, match="only 400 of the 1000-octet quota are left"):
        small.begin(2, "b.npy", 401, sha(b""))
    with pytest.raises(QuotaExceeded):
        small.begin(2, "b.npy", 0xFFFFFFFF, sha(b""))
    with pytest.raises(QuotaExceeded):
        small.put("job-1.npy", b"r" * 401)
    with pytest.raises(DiskFull, match="must keep a reserve of 500"):
        large.begin(2, "b.npy", 0xFFFFFFFF, sha(b""))
    with pytest.raises(DiskFull):
        large.begin(2, "b.npy", (1 << 20) - 499, sha(b""))
    assert snapshot(tmp_path) == before
    assert small.transfers() == [] and large.transfers() == []
    large.begin(2, "b.npy", (1 << 20) - 500, sha(b""))


# --- the registry --------------------------------------------------------------------------------


def test_registry_refuses_model_names_that_differ_only_by_case(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path, max_model_bytes=1 << 20)
    data = model_bytes(mlp(seed=5, widths=TINY_WIDTHS))
    registry.register("Net", 1, data)
    with pytest.raises(ModelExists, match="differs from it only by case"):
        registry.register("net", 2, data)
    registry.register("Net", 2, data)
    assert [(e.name, e.version) for e in registry.entries()] == [("Net", 1), ("Net", 2)]


def test_registry_index_with_hostile_names_makes_no_path_outside(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "models"
    registry = ModelRegistry(root, max_model_bytes=1 << 20)
    data = model_bytes(mlp(seed=5, widths=TINY_WIDTHS))
    registry.register("ok", 1, data)
    # What a path made of the first hostile name would reach: a registry that followed it would
    # load it as a model and delete it with the model.
    (outside / "victim-v1.onnx").write_bytes(data)
    index = json.loads((root / "index.json").read_text())
    (ok,) = index["models"]
    hostile = [("../outside/victim", 1), ("/etc/passwd", 1), ("x/../../y", 1), (".hidden", 1),
               ("ok", 0), ("ok", 70000), ("ok", "1"), (7, 1)]  # fmt: skip
    index["models"] += [{**ok, "name": name, "version": version} for name, version in hostile]
    (root / "index.json").write_text(json.dumps(index))
    before = snapshot(outside)

    reopened = ModelRegistry(root, max_model_bytes=1 << 20)
    assert [(e.name, e.version) for e in reopened.entries()] == [("ok", 1)]
    for entry in reopened.entries():
        reopened.delete(entry.name, entry.version)
    assert snapshot(outside) == before


def test_registry_copies_replaced_by_links_are_repaired_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "models"
    registry = ModelRegistry(root, max_model_bytes=1 << 20)
    data = model_bytes(mlp(seed=5, widths=TINY_WIDTHS))
    entry = registry.register("m", 1, data)
    entry.path.unlink()
    entry.path.symlink_to(outside / "victim")
    (root / "m-v1.onnx.tmp").symlink_to(outside / "secret")
    before = snapshot(outside)

    reopened = ModelRegistry(root, max_model_bytes=1 << 20)
    assert reopened.read_verified(reopened.entry("m", 1)) == data

    assert snapshot(outside) == before
    assert not entry.path.is_symlink() and entry.path.read_bytes() == data
    assert (root / COPIES_DIR / "m-v1.onnx").read_bytes() == data


# --- the services, through the router ------------------------------------------------------------


class Board:
    """The file, model, job, protection and test services on one router, as the payload wires
    them, with every TM packet they send kept; the job worker is not started."""

    def __init__(self, root: Path, **limits: Any) -> None:
        self.root = root
        self.sent: list[PusTm] = []
        self.backlog = 0
        self.seq = 0
        self.tm = TmPublisher(
            APID, lambda vc, raw: self.sent.append(PusTm.unpack(raw)), lambda: 1.7e9
        )
        self.router = CommandRouter(APID, self.tm, LinkCounters())
        events = EventReporter(D, self.tm)
        self.store = UploadStore(
            root / "files",
            quota_bytes=limits.get("quota_bytes", 1 << 24),
            reserve_bytes=0,
            free_space=lambda _: BIG,
            max_uploads=limits.get("max_uploads", 64),
            max_ranges=limits.get("max_ranges", DEFAULT_MAX_RANGES),
        )
        self.registry = ModelRegistry(
            root / "models", max_model_bytes=limits.get("max_model_bytes", 1 << 20)
        )
        self.jobs = JobStore.in_state_dir(root)
        executor = Executor(SessionCache(1, ProviderChoice(CPU), intra_op_num_threads=1))
        upsets = UpsetLog()
        guard = ModelGuard(self.registry, executor, upsets)
        compute = JobCompute(executor, UpsetLog())
        runner = JobRunner(D, self.jobs, self.registry, self.store, compute, self.tm, events)
        self.files = FileService(
            D,
            self.store,
            self.tm,
            events,
            lambda: self.backlog,
            in_use=runner.input_in_use,
            max_downloads=limits.get("max_downloads", MAX_DOWNLOADS),
        )
        self.files.register(self.router)
        ModelService(
            D, self.registry, self.store, events, lambda name, version: False, lambda e: None
        ).register(self.router)
        JobService(D, runner, self.registry, self.store, limits.get("max_queued", 1000)).register(
            self.router
        )
        ProtectionService(
            D,
            Scrubber(MemoryScrub(guard), self.registry, upsets),
            FaultInjector(GuardFaults(guard), self.registry, self.store),
            events,
            test_commands=True,
        ).register(self.router)
        test_service.register(self.router, D)

    def send_raw(self, command_name: str, data: bytes, /) -> RequestId:
        command = D.command(command_name)
        self.seq += 1
        tc = PusTc(APID, command.service, command.subtype, data, seq_count=self.seq, source_id=7,
                   ack_flags=AckFlags.ALL)  # fmt: skip
        self.router.dispatch(tc.pack())
        return tc.request_id

    def send(self, command_name: str, /, **values: Any) -> RequestId:
        return self.send_raw(command_name, D.command(command_name).encode(values))

    def reports(self, request: RequestId) -> list[VerificationReport]:
        found = [
            VerificationReport.unpack(tm.subtype, tm.source_data)
            for tm in self.sent
            if tm.service == 1
        ]
        return [r for r in found if r.request_id == request]

    def failure(self, request: RequestId) -> int | None:
        """The code of the request's failure report; None when every report is a success."""
        reports = self.reports(request)
        failed = [r.failure_code for r in reports if not r.success]
        assert len(failed) <= 1, reports
        assert reports and (failed or all(r.success for r in reports)), reports
        return failed[0] if failed else None

    def expect(self, code_name: str | None, command_name: str, /, **values: Any) -> None:
        """Send the command and check that it fails with `code_name` (None: succeeds)."""
        code = None if code_name is None else D.failure_named(code_name).code
        found = self.failure(self.send(command_name, **values))
        assert found == code, (command_name, values, found)

    def upload(self, name: str, data: bytes, transfer_id: int = 1) -> None:
        self.expect(
            None,
            "FILE_UPLOAD_BEGIN",
            transfer_id=transfer_id,
            size=len(data),
            sha256=sha(data),
            name=name,
        )
        for offset in range(0, len(data), 900):
            chunk = data[offset : offset + 900]
            self.send("FILE_UPLOAD_CHUNK", transfer_id=transfer_id, offset=offset, data=chunk)
        self.expect(None, "FILE_UPLOAD_COMMIT", transfer_id=transfer_id)

    def alive(self) -> bool:
        return self.failure(self.send("ARE_YOU_ALIVE")) is None

    def close(self) -> None:
        self.files.close()
        self.jobs.close()


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    b = Board(tmp_path / "state")
    yield b
    b.close()


def job_args(**values: Any) -> dict[str, Any]:
    return {"model": "tiny", "version": 0, "input": "x.npy", "priority": 0,
            "redundancy": "NONE", "deadline": 0, **values}  # fmt: skip


def ready_for_a_job(board: Board) -> None:
    board.upload("tiny.onnx", model_bytes(mlp(seed=5, widths=TINY_WIDTHS)))
    board.expect(None, "MODEL_REGISTER", file="tiny.onnx", model="tiny", version=1, tolerance=0.0)
    x = np.ones((1, 16), np.float32)
    board.upload("x.npy", npy(x), transfer_id=2)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_every_command_answers_a_hostile_name_with_its_failure_code(
    board: Board, tmp_path: Path, outside: Path, name: str
) -> None:
    ready_for_a_job(board)
    before = snapshot(tmp_path)
    bad_file = "FILE_NAME_INVALID"
    board.expect(
        bad_file, "FILE_UPLOAD_BEGIN", transfer_id=5, size=3, sha256=sha(b"abc"), name=name
    )
    board.expect(bad_file, "FILE_DELETE", name=name)
    board.expect(bad_file, "FILE_DOWNLOAD", download_id=1, name=name, offset=0, length=0)
    board.expect(bad_file, "MODEL_REGISTER", file=name, model="m", version=1, tolerance=0.0)
    board.expect(bad_file, "JOB_SUBMIT", **job_args(input=name))
    board.expect("UNKNOWN_MODEL", "JOB_SUBMIT", **job_args(model=name))
    board.expect("UNKNOWN_MODEL", "MODEL_INFO", model=name, version=0)
    board.expect("UNKNOWN_MODEL", "MODEL_DELETE", model=name, version=1)
    board.expect(
        "FAULT_TARGET_MISSING",
        "FAULT_INJECT",
        target="RESULT_FILE",
        fault="BIT",
        model=name,
        version=0,
        seed=1,
    )
    board.expect(
        "FAULT_TARGET_MISSING",
        "FAULT_INJECT",
        target="MODEL_FILE",
        fault="BIT",
        model=name,
        version=0,
        seed=1,
    )
    if name:
        board.upload("m.onnx", model_bytes(mlp(seed=6, widths=TINY_WIDTHS)), transfer_id=3)
        board.expect(
            "BAD_APPLICATION_DATA",
            "MODEL_REGISTER",
            file="m.onnx",
            model=name,
            version=1,
            tolerance=0.0,
        )
        board.expect(None, "FILE_DELETE", name="m.onnx")
    assert snapshot(tmp_path) == before
    assert board.alive()
    board.expect(None, "JOB_SUBMIT", **job_args())  # accepted, queued: the worker is not started


@pytest.mark.parametrize("octets", [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"a\x80"])
def test_names_that_are_not_utf8_are_bad_application_data(board: Board, octets: bytes) -> None:
    request = board.send_raw("FILE_DELETE", bytes([len(octets)]) + octets)
    assert board.failure(request) == D.failure_named("BAD_APPLICATION_DATA").code
    assert board.alive()


def test_a_stored_file_replaced_by_a_link_is_never_sent_registered_or_used(
    board: Board, tmp_path: Path, outside: Path
) -> None:
    ready_for_a_job(board)
    board.upload("m.onnx", model_bytes(mlp(seed=6, widths=TINY_WIDTHS)), transfer_id=3)
    for name in ("x.npy", "m.onnx"):
        path = board.root / "files" / "files" / name
        path.unlink()
        path.symlink_to(outside / "secret")
    before = snapshot(outside)

    board.expect(
        "FILE_NOT_REGULAR", "FILE_DOWNLOAD", download_id=1, name="x.npy", offset=0, length=0
    )
    board.expect(
        "FILE_NOT_REGULAR", "MODEL_REGISTER", file="m.onnx", model="m", version=1, tolerance=0.0
    )
    board.expect("FILE_NOT_REGULAR", "JOB_SUBMIT", **job_args())
    board.expect(
        "FAULT_TARGET_MISSING",
        "FAULT_INJECT",
        target="RESULT_FILE",
        fault="VALUE",
        model="x.npy",
        version=0,
        seed=1,
    )
    board.expect(None, "FILE_DELETE", name="x.npy")

    assert snapshot(outside) == before
    board.upload("x.npy", npy(np.zeros((2, 16), np.float32)), transfer_id=4)
    board.expect(None, "JOB_SUBMIT", **job_args())
    assert board.alive()


def test_model_size_and_operator_limits_refuse_without_losing_the_file(tmp_path: Path) -> None:
    board = Board(tmp_path / "state", max_model_bytes=2000)
    try:
        big = model_bytes(mlp(seed=5, widths=(16, 64, 4)))
        assert len(big) > 2000
        board.upload("big.onnx", big)
        board.expect(
            "MODEL_TOO_LARGE",
            "MODEL_REGISTER",
            file="big.onnx",
            model="big",
            version=1,
            tolerance=0.0,
        )
        board.upload("loop.onnx", model_bytes(loop_model()), transfer_id=2)
        board.expect(
            "MODEL_OPERATOR_NOT_ALLOWED",
            "MODEL_REGISTER",
            file="loop.onnx",
            model="loop",
            version=1,
            tolerance=0.0,
        )
        # Refused models leave their files stored (the ground may delete or reuse them).
        assert [f.name for f in board.store.files()] == ["big.onnx", "loop.onnx"]
        assert board.registry.entries() == [] and board.alive()
    finally:
        board.close()


def test_a_full_queue_refuses_jobs_with_queue_full(tmp_path: Path) -> None:
    board = Board(tmp_path / "state", max_queued=2)
    try:
        ready_for_a_job(board)
        for _ in range(2):
            board.expect(None, "JOB_SUBMIT", **job_args())
        board.expect("QUEUE_FULL", "JOB_SUBMIT", **job_args())
        assert board.jobs.counts()[JobState.QUEUED] == 2
        assert board.alive()
    finally:
        board.close()


def test_quota_and_transfer_limits_through_the_file_service(tmp_path: Path) -> None:
    board = Board(tmp_path / "state", quota_bytes=10_000, max_uploads=3)
    try:
        board.expect(
            "QUOTA_EXCEEDED",
            "FILE_UPLOAD_BEGIN",
            transfer_id=1,
            size=0xFFFFFFFF,
            sha256=sha(b""),
            name="huge.npy",
        )
        board.expect(
            "QUOTA_EXCEEDED",
            "FILE_UPLOAD_BEGIN",
            transfer_id=1,
            size=10_001,
            sha256=sha(b""),
            name="big.npy",
        )
        # Size 0, which a ground tool cannot even encode: refused by the dictionary's range.
        command = D.command("FILE_UPLOAD_BEGIN")
        empty = bytearray(
            command.encode({"transfer_id": 1, "size": 1, "sha256": sha(b""), "name": "e"})
        )
        empty[2:6] = bytes(4)
        request = board.send_raw("FILE_UPLOAD_BEGIN", bytes(empty))
        assert board.failure(request) == D.failure_named("BAD_APPLICATION_DATA").code
        for name in RESERVED_NAMES:
            board.expect(
                "FILE_NAME_INVALID",
                "FILE_UPLOAD_BEGIN",
                transfer_id=1,
                size=1,
                sha256=sha(b"x"),
                name=name,
            )
        for transfer_id in range(3):
            board.expect(
                None,
                "FILE_UPLOAD_BEGIN",
                transfer_id=transfer_id,
                size=10,
                sha256=sha(b"0123456789"),
                name=f"f{transfer_id}",
            )
        board.expect(
            "TOO_MANY_TRANSFERS",
            "FILE_UPLOAD_BEGIN",
            transfer_id=9,
            size=10,
            sha256=sha(b"0123456789"),
            name="f9",
        )
        board.expect(None, "FILE_UPLOAD_ABORT", transfer_id=0)
        board.upload("f9", b"0123456789", transfer_id=9)
        assert board.alive()
    finally:
        board.close()


def test_downloads_at_once_are_limited(board: Board) -> None:
    board.upload("a.npy", b"a" * 5000)
    board.backlog = 1 << 30  # the bulk channel is full: nothing is sent, downloads stay open
    for download_id in range(MAX_DOWNLOADS):
        request = board.send(
            "FILE_DOWNLOAD", download_id=download_id, name="a.npy", offset=0, length=0
        )
        assert all(r.success for r in board.reports(request))
    board.expect(
        "TOO_MANY_TRANSFERS", "FILE_DOWNLOAD", download_id=99, name="a.npy", offset=0, length=0
    )
    assert board.files.active_downloads == MAX_DOWNLOADS
    board.expect(None, "FILE_DOWNLOAD_CANCEL", download_id=0)
    request = board.send("FILE_DOWNLOAD", download_id=99, name="a.npy", offset=0, length=0)
    assert all(r.success for r in board.reports(request))
    assert board.alive()


def test_a_file_deleted_during_its_download_is_sent_as_announced(board: Board) -> None:
    data = bytes(range(256)) * 20
    board.upload("a.npy", data)
    board.backlog = 1 << 30
    request = board.send("FILE_DOWNLOAD", download_id=4, name="a.npy", offset=0, length=0)
    board.expect(None, "FILE_DELETE", name="a.npy")
    board.upload("a.npy", b"another file under the same name", transfer_id=2)
    board.backlog = 0
    board.files.tick()

    chunk = D.packets["FILE_DOWNLOAD_CHUNK"]
    received = bytearray(len(data))
    for tm in board.sent:
        if (tm.service, tm.subtype) == (chunk.service, chunk.subtype):
            values = chunk.layout.parse(tm.source_data)
            if values["download_id"] == 4:
                received[values["offset"] : values["offset"] + len(values["data"])] = values["data"]
    assert bytes(received) == data
    assert any(r.stage is Stage.COMPLETION and r.success for r in board.reports(request))
    assert board.files.active_downloads == 0


def test_the_input_of_a_queued_job_is_not_deleted(tmp_path: Path) -> None:
    board = Board(tmp_path / "state")
    try:
        ready_for_a_job(board)
        board.expect(None, "JOB_SUBMIT", **job_args())  # no runner thread: it stays queued
        board.expect("FILE_IN_USE", "FILE_DELETE", name="x.npy")
        assert board.store.exists("x.npy")
        board.jobs.cancel(1)
        board.expect(None, "FILE_DELETE", name="x.npy")
        assert not board.store.exists("x.npy")
    finally:
        board.close()


def test_the_downloads_limit_is_the_file_services_parameter(tmp_path: Path) -> None:
    board = Board(tmp_path / "state", max_downloads=2)
    try:
        board.upload("a.npy", b"a" * 5000)
        board.backlog = 1 << 30
        for download_id in range(2):
            board.expect(None, "FILE_DOWNLOAD", download_id=download_id, name="a.npy", offset=0,
                         length=0)  # fmt: skip
        board.expect(
            "TOO_MANY_TRANSFERS", "FILE_DOWNLOAD", download_id=9, name="a.npy", offset=0, length=0
        )
        assert board.files.active_downloads == 2
    finally:
        board.close()
    with pytest.raises(ValueError, match="max_downloads >= 1"):
        FileService(D, board.store, board.tm, EventReporter(D, board.tm), lambda: 0,
                    max_downloads=0)  # fmt: skip


def test_scattered_chunks_beyond_the_range_limit_are_refused_and_the_upload_kept(
    tmp_path: Path,
) -> None:
    board = Board(tmp_path / "state", max_ranges=4)
    try:
        data = bytes(range(40))
        board.expect(None, "FILE_UPLOAD_BEGIN", transfer_id=1, size=len(data), sha256=sha(data),
                     name="d.bin")  # fmt: skip
        for offset in range(0, 8, 2):
            board.expect(None, "FILE_UPLOAD_CHUNK", transfer_id=1, offset=offset,
                         data=data[offset : offset + 1])  # fmt: skip
        request = board.send("FILE_UPLOAD_CHUNK", transfer_id=1, offset=20, data=data[20:21])
        assert board.failure(request) == D.failure_named("RESOURCES_EXHAUSTED").code
        (failed,) = [r for r in board.reports(request) if not r.success]
        assert b"4 separate ranges received, at most 4" in failed.failure_data
        assert board.store.status(1).received_bytes == 4  # the upload is kept
        board.expect(None, "FILE_UPLOAD_STATUS", transfer_id=1)
        for offset in range(0, len(data), 10):  # in order: joins what is there
            board.expect(None, "FILE_UPLOAD_CHUNK", transfer_id=1, offset=offset,
                         data=data[offset : offset + 10])  # fmt: skip
        board.expect(None, "FILE_UPLOAD_COMMIT", transfer_id=1)
        assert board.store.read("d.bin") == data
    finally:
        board.close()


class CountingFile:
    """A stored file opened by a service, counting the octets it reads."""

    def __init__(self, file: io.BufferedReader, counts: list[int]) -> None:
        self._file = file
        self._counts = counts

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        self._counts.append(len(data))
        return data

    def fileno(self) -> int:
        return self._file.fileno()

    def __enter__(self) -> CountingFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()


def test_job_submit_reads_only_the_header_of_its_input(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready_for_a_job(board)
    big = npy(np.ones((1 << 16, 16), np.float32))  # 4 MiB
    board.store.put("big.npy", big)
    counts: list[int] = []
    opened = board.store.open
    monkeypatch.setattr(board.store, "open", lambda name: CountingFile(opened(name), counts))
    board.expect(None, "JOB_SUBMIT", **job_args(input="big.npy"))
    assert 0 < sum(counts) < 256 < len(big)


@pytest.mark.parametrize(
    "data",
    [
        npy(np.ones((2, 16), np.float64)),
        npy(np.ones(16, np.float32)),
        npy(np.ones((2, 15), np.float32)),
        npy(np.ones((0, 16), np.float32)),
        npy(np.ones((2, 16), np.float32))[:-1],
        b"not a tensor",
    ],
    ids=["dtype", "rank", "dimension", "empty batch", "truncated", "not npy"],
)
def test_job_submit_refuses_an_input_as_its_run_would(board: Board, data: bytes) -> None:
    ready_for_a_job(board)
    board.store.put("bad.npy", data)
    with pytest.raises(InputMismatch) as at_run:
        check_input(board.registry.entry("tiny", 0).signature, load_input(data))
    request = board.send("JOB_SUBMIT", **job_args(input="bad.npy"))
    assert board.failure(request) == D.failure_named(input_failure(at_run.value)).code
    (failed,) = [r for r in board.reports(request) if not r.success]
    assert failed.failure_data == detail_octets(str(at_run.value))
    assert board.jobs.counts()[JobState.QUEUED] == 0
