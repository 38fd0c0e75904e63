"""Protected state: critical configuration and counters kept in triplicate, voted and scrubbed.

A `TripleStore` holds a fixed set of keys (each with a default) three times in memory and three
times on disk. Every copy of every value carries its own CRC-32, so a vote never counts a copy
that an upset changed: a value stands when the copies whose checksum holds agree, by majority
of those copies (the newest file wins a tie on disk), and a single intact copy is enough to
repair the others. Only a key with no intact copy anywhere, in memory or on disk, is lost: it
falls back to its default and is reported uncorrectable.

Files, one per copy, in the store's directory (`copy-0.state` ...):

    tristate 1 <generation>
    <crc32 hex> ["key", value]        one record per key, sorted, each with its own CRC
    end <crc32 hex of every octet before this line>

A write replaces the three files one after the other, each atomically and durably, with the
next generation. A power cut between two of them leaves intact files of two generations: that
is an interrupted write, outvoted and rewritten without an upset report. An upset shows as a
CRC that fails; only those are reported (UpsetLocation.STATE).

Fault injection: `fault_sites()` lists every buffer an upset may hit (each in-memory record of
each copy, each file) and `corrupt(site, mutate)` hands one to a function that changes it in
place, without touching its checksum, under the store's lock.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import re
import stat
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from flight.durable import (
    NotRegularError,
    fsync_directory,
    open_regular_file,
    replace_atomically,
)
from flight.protection.upsets import UpsetLocation, UpsetLog

log = logging.getLogger(__name__)

Value = bool | int | float | str
T = TypeVar("T")

COPIES = 3
FILE_NAMES = tuple(f"copy-{i}.state" for i in range(COPIES))
MAX_KEY_LENGTH = 64
MAX_TEXT_OCTETS = 255
_HEADER = "tristate 1"
_HEADER_RE = re.compile(rb"tristate 1 (\d{1,20})\Z")
_TRAILER_RE = re.compile(rb"end ([0-9a-f]{8})\n\Z")


class StateError(Exception):
    """Base of the protected state's errors."""


class UnknownKey(StateError):
    """The key is not one of the store's keys (those given with their defaults)."""


class InvalidValue(StateError):
    """The value is not of the key's type (that of its default) or cannot be stored."""


class Medium(enum.Enum):
    """Where a copy lives."""

    MEMORY = "memory"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class FaultSite:
    """A buffer a fault may hit: one key's record in one memory copy, or one copy's file."""

    medium: Medium
    copy: int
    key: str | None
    octets: int

    def describe(self) -> str:
        if self.medium is Medium.MEMORY:
            return f"memory copy {self.copy} record {self.key}"
        return f"file {FILE_NAMES[self.copy]}"


@dataclass(frozen=True, slots=True)
class StateCheck:
    """What a load, a scrub or a read found.

    `memory_repaired`: in-memory records that failed their CRC (or were outvoted) and were
    rewritten; `files_repaired`: files with a failing CRC, rewritten; `files_rewritten`: files
    missing or left behind by an interrupted write, rewritten (not upsets); `lost`: keys with
    no intact copy anywhere, now at their defaults (their damaged copies are not counted as
    repaired).
    """

    memory_repaired: int = 0
    files_repaired: int = 0
    files_rewritten: int = 0
    lost: tuple[str, ...] = ()

    @property
    def corrected(self) -> int:
        """Copies found corrupt and repaired: the count reported as corrected."""
        return self.memory_repaired + self.files_repaired

    @property
    def clean(self) -> bool:
        return self == StateCheck()


# -- records: one key and its value, with a CRC-32 ------------------------------------------

_RECORD_RE = re.compile(rb"([0-9a-f]{8}) (\[.*\])\Z", re.DOTALL)


def kind_of(value: object) -> type | None:
    """bool, int, float or str: the value's kind in this store; None for anything else."""
    # Exact types: True is an int to isinstance, not to this store.
    for kind in (bool, int, float, str):
        if type(value) is kind:
            return kind
    return None


def encode_record(key: str, value: Value) -> bytes:
    """`<crc32 hex> ["key",value]`: a record, in memory and as a line of a file."""
    payload = json.dumps([key, value], separators=(",", ":"), allow_nan=False).encode("ascii")
    return b"%08x %s" % (zlib.crc32(payload), payload)


def decode_record(data: bytes | bytearray) -> tuple[str, Value] | None:
    """The key and value of a record whose CRC holds; None for any damage."""
    match = _RECORD_RE.match(data)
    if match is None or int(match.group(1), 16) != zlib.crc32(match.group(2)):
        return None
    try:
        item = json.loads(match.group(2))
    except ValueError:  # only a CRC collision gets here
        return None
    if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
        return None
    key, value = item
    return (key, value) if kind_of(value) is not None else None


def same(a: Value, b: Value) -> bool:
    """Equal values of the same kind (1, 1.0 and True are three different values here)."""
    return type(a) is type(b) and a == b


def vote(candidates: Sequence[tuple[Value, int] | None]) -> Value | None:
    """The value of the intact copies, given as (value, generation); None when none is intact.

    The value most copies hold wins; between as many, the newest generation (the later write).
    """
    tally: Counter[str] = Counter()
    newest: dict[str, tuple[int, Value]] = {}
    for candidate in candidates:
        if candidate is None:
            continue
        value, generation = candidate
        token = json.dumps([type(value).__name__, value])
        tally[token] += 1
        if token not in newest or generation > newest[token][0]:
            newest[token] = (generation, value)
    if not tally:
        return None
    best = max(tally, key=lambda token: (tally[token], newest[token][0]))
    return newest[best][1]


# -- files ------------------------------------------------------------------------------------


class FileState(enum.Enum):
    """What reading a copy's file found."""

    MISSING = "missing"
    INTACT = "intact"
    DAMAGED = "damaged"


@dataclass(slots=True)
class FileCopy:
    """One file: whether its whole-file CRC held, its generation, its records that are intact."""

    state: FileState
    generation: int = -1
    records: dict[str, Value] = field(default_factory=dict)


def encode_file(values: Mapping[str, Value], generation: int) -> bytes:
    """A file's content: header, one record per key (sorted), trailer with the file's CRC."""
    lines = [f"{_HEADER} {generation}\n".encode()]
    lines += [encode_record(key, values[key]) + b"\n" for key in sorted(values)]
    body = b"".join(lines)
    return body + b"end %08x\n" % zlib.crc32(body)


def parse_file(data: bytes) -> FileCopy:
    """Every record whose own CRC holds, even from a file whose whole-file CRC fails."""
    end = data.rfind(b"end ")
    trailer = _TRAILER_RE.match(data, end) if end >= 0 else None
    intact = trailer is not None and int(trailer.group(1), 16) == zlib.crc32(data[:end])
    lines = data.split(b"\n")
    header = _HEADER_RE.match(lines[0])
    if header is None and intact:
        # An intact file of another format: none of its lines can be trusted as a record.
        return FileCopy(FileState.DAMAGED)
    copy = FileCopy(FileState.INTACT if intact else FileState.DAMAGED)
    if header is not None:
        copy.generation = int(header.group(1))
    for line in lines[1:]:
        record = decode_record(line)
        if record is not None:
            copy.records.setdefault(*record)
    return copy


def read_file(path: Path) -> FileCopy:
    """Parse one copy's file; a missing one is MISSING, an unreadable one DAMAGED, and so is a
    symbolic link or special file in its place (not followed, not read: rewritten as a file)."""
    try:
        with os.fdopen(open_regular_file(path), "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return FileCopy(FileState.MISSING)
    except NotRegularError as exc:
        log.warning("protected state file %s is %s: a damaged copy", path, exc.strerror)
        return FileCopy(FileState.DAMAGED)
    except OSError as exc:  # an unreadable sector is damage like any other
        log.warning("protected state file %s unreadable: %s", path, exc)
        return FileCopy(FileState.DAMAGED)
    return parse_file(data)


# -- the store --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Findings:
    """What one operation found, reported once the lock is released."""

    memory_repaired: int = 0
    files_repaired: int = 0
    files_rewritten: int = 0
    lost: list[str] = field(default_factory=list)

    def check(self) -> StateCheck:
        return StateCheck(
            self.memory_repaired, self.files_repaired, self.files_rewritten, tuple(self.lost)
        )


class TripleStore:
    """Keys with defaults, three copies in memory and three files on disk, voted and scrubbed.

    Thread-safe: the scrubber and the main loop share it. Upsets go to `upsets` after the
    store's lock is released, since a listener may write to this store (lifetime counters).
    """

    def __init__(
        self,
        directory: Path,
        defaults: Mapping[str, Value],
        upsets: UpsetLog | None = None,
        name: str | None = None,
    ) -> None:
        """Load the files (voted; missing, damaged or stale ones rewritten), or create them.

        `defaults`: every key of the store, with the value it has until set and when every
        copy of it is lost. `name` labels upset reports (default: the directory's name).
        OSError when the directory or the files cannot be written.
        """
        if not defaults:
            raise ValueError("a protected store needs at least one key")
        self._defaults = {key: _checked(key, value, value) for key, value in defaults.items()}
        self._dir = directory
        self._paths = [directory / file_name for file_name in FILE_NAMES]
        self._upsets = upsets if upsets is not None else UpsetLog()
        self.name = name or directory.name
        self._lock = threading.Lock()
        self._generation = 0
        # Copy -> key -> record: three separate dictionaries of separate buffers.
        self._memory: list[dict[str, bytearray]] = [{} for _ in range(COPIES)]
        found = _Findings()
        with self._lock:
            self._load(found)
        self.loaded = found.check()  # what loading found: also reported to `upsets`
        self._report(self.loaded)

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def paths(self) -> tuple[Path, ...]:
        """The three files, copy 0 first."""
        return tuple(self._paths)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(self._defaults))

    # -- reads --------------------------------------------------------------------------------

    def get(self, key: str) -> Value:
        """The key's value by vote of its memory copies (of the files when none is intact)."""
        self._known(key)
        return self._locked(lambda found: self._voted(key, found, None))

    def values(self) -> dict[str, Value]:
        """Every key's value, each by vote."""
        return self._locked(lambda found: self._all_voted(found, None))

    # -- writes -------------------------------------------------------------------------------

    def set(self, key: str, value: Value) -> None:
        """Store one value; durable in the three files when this returns."""
        self.update({key: value})

    def update(self, changes: Mapping[str, Value]) -> None:
        """Store several values at once; durable in the three files when this returns.

        OSError when a file cannot be written: memory keeps the old values; whether the new
        ones survive a restart depends on how many files were written (the files' vote).
        """
        checked = {}
        for key, value in changes.items():
            self._known(key)
            checked[key] = _checked(key, value, self._defaults[key])
        self._locked(lambda found: self._apply(checked, found))

    def increment(self, key: str, by: int = 1) -> int:
        """Add `by` to an integer key, durably; the new value."""
        self._known(key)
        if kind_of(self._defaults[key]) is not int:
            raise InvalidValue(f"{key}: expected an integer key, found {self._defaults[key]!r}")

        def add(found: _Findings) -> int:
            current = self._voted(key, found, None)
            assert isinstance(current, int)
            self._apply({key: current + by}, found)
            return current + by

        return self._locked(add)

    # -- scrubbing ----------------------------------------------------------------------------

    def scrub(self) -> StateCheck:
        """Vote every key in memory and on disk and rewrite every copy that lost; reported."""
        found = _Findings()
        try:
            with self._lock:
                files = [read_file(path) for path in self._paths]
                values = self._all_voted(found, files)
                self._repair_files(files, values, found)
        finally:
            self._report(found.check())
        return found.check()

    # -- fault injection ----------------------------------------------------------------------

    def fault_sites(self) -> list[FaultSite]:
        """Every buffer a fault may hit, with its size: memory records, then the files."""
        with self._lock:
            sites = [
                FaultSite(Medium.MEMORY, copy, key, len(self._memory[copy][key]))
                for copy in range(COPIES)
                for key in sorted(self._memory[copy])
            ]
            for copy, path in enumerate(self._paths):
                try:
                    found = os.lstat(path)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(found.st_mode):  # what a link names is not the store's
                    sites.append(FaultSite(Medium.FILE, copy, None, found.st_size))
        return sites

    def corrupt(self, site: FaultSite, mutate: Callable[[bytearray], T]) -> T:
        """Hand the site's octets to `mutate`, which changes them in place; checksums stay.

        A file is written back in place without a sync, as an upset in the flash leaves it.
        """
        with self._lock:
            if site.medium is Medium.MEMORY:
                memory = self._memory[site.copy]
                if site.key is None or site.key not in memory:
                    raise ValueError(f"no record {site.key!r} in memory copy {site.copy}")
                return mutate(memory[site.key])
            path = self._paths[site.copy]
            with os.fdopen(open_regular_file(path, os.O_RDWR), "r+b") as file:
                data = bytearray(file.read())
                size = len(data)
                result = mutate(data)
                if len(data) != size:
                    raise ValueError(f"corrupt: {path.name} must keep its {size} octets")
                file.seek(0)
                file.write(data)
            return result

    # -- inside the lock ----------------------------------------------------------------------

    def _locked(self, operation: Callable[[_Findings], T]) -> T:
        found = _Findings()
        try:
            with self._lock:
                result = operation(found)
                if found.lost:
                    # The files must not bring a lost value back at the next load.
                    files = [read_file(path) for path in self._paths]
                    self._repair_files(files, self._all_voted(found, files), found)
                return result
        finally:
            self._report(found.check())

    def _load(self, found: _Findings) -> None:
        if not self._dir.exists():
            self._dir.mkdir(parents=True)
            fsync_directory(self._dir.parent)
        files = [read_file(path) for path in self._paths]
        if all(f.state is FileState.MISSING for f in files):
            log.info("protected state %s: new store in %s", self.name, self._dir)
            self._write_all(self._defaults)
            for key, default in self._defaults.items():
                self._set_memory(key, default)
            return
        self._generation = max(0, *(f.generation for f in files))
        values: dict[str, Value] = {}
        for key, default in self._defaults.items():
            voted = self._file_vote(key, files)
            if voted is None:
                if any(f.state is FileState.INTACT for f in files):
                    # An intact file lacks it too: written before the key existed.
                    log.info("protected state %s: new key %s = %r", self.name, key, default)
                else:
                    found.lost.append(key)
            values[key] = default if voted is None else voted
            self._set_memory(key, values[key])
        self._repair_files(files, values, found)

    def _voted(self, key: str, found: _Findings, files: list[FileCopy] | None) -> Value:
        """Vote the memory copies of `key` and repair those that lost; when none is intact,
        take the files' vote, and when none of those either, the default (lost)."""
        kind = kind_of(self._defaults[key])
        records = [decode_record(self._memory[copy].get(key, b"")) for copy in range(COPIES)]
        candidates = [
            (record[1], 0) if record and record[0] == key and kind_of(record[1]) is kind else None
            for record in records
        ]
        value = vote(candidates)
        if value is None:
            if files is None:
                files = [read_file(path) for path in self._paths]
            value = self._file_vote(key, files)
        if value is None:
            value = self._defaults[key]
            found.lost.append(key)
            self._set_memory(key, value)  # its copies are the uncorrectable upset, not repairs
            return value
        for copy, record in enumerate(records):
            if record is None or record[0] != key or not same(record[1], value):
                found.memory_repaired += 1
                self._memory[copy][key] = bytearray(encode_record(key, value))
        return value

    def _all_voted(self, found: _Findings, files: list[FileCopy] | None) -> dict[str, Value]:
        return {key: self._voted(key, found, files) for key in sorted(self._defaults)}

    def _file_vote(self, key: str, files: Sequence[FileCopy]) -> Value | None:
        kind = kind_of(self._defaults[key])
        return vote(
            [
                (f.records[key], f.generation)
                if key in f.records and kind_of(f.records[key]) is kind
                else None
                for f in files
            ]
        )

    def _apply(self, changes: Mapping[str, Value], found: _Findings) -> None:
        values = self._all_voted(found, None)
        if all(same(values[key], value) for key, value in changes.items()):
            return  # flash wears: nothing to write
        new = {**values, **changes}
        self._write_all(new)
        for key in changes:
            self._set_memory(key, new[key])

    def _write_all(self, values: Mapping[str, Value]) -> None:
        """The three files of the next generation, one after the other."""
        self._generation += 1
        content = encode_file(values, self._generation)
        for path in self._paths:
            replace_atomically(path, content)

    def _repair_files(
        self, files: Sequence[FileCopy], values: Mapping[str, Value], found: _Findings
    ) -> None:
        """Rewrite the files that do not hold `values`: damaged ones are upsets; missing ones
        and those an interrupted write left behind are not."""
        content = encode_file(values, self._generation)
        for copy, file in enumerate(files):
            if file.state is FileState.DAMAGED:
                # Damage to lost keys only is the uncorrectable upset, not a repair.
                if values.keys() - file.records.keys() - set(found.lost) or not found.lost:
                    found.files_repaired += 1
            elif file.state is FileState.MISSING:
                log.warning("protected state %s: %s missing, rebuilt", self.name, FILE_NAMES[copy])
                found.files_rewritten += 1
            elif not _holds(file.records, values):
                log.info("protected state %s: %s left by an interrupted write, rewritten",
                         self.name, FILE_NAMES[copy])  # fmt: skip
                found.files_rewritten += 1
            else:
                continue
            replace_atomically(self._paths[copy], content)
            file.state, file.records = FileState.INTACT, dict(values)

    def _set_memory(self, key: str, value: Value) -> None:
        # Three separate encodings: no two copies share a buffer.
        for copy in range(COPIES):
            self._memory[copy][key] = bytearray(encode_record(key, value))

    def _known(self, key: str) -> None:
        if key not in self._defaults:
            raise UnknownKey(f"{self.name}: no key {key!r}; keys are {', '.join(self.keys)}")

    def _report(self, check: StateCheck) -> None:
        if check.corrected:
            parts = [
                f"{n} {what}"
                for n, what in (
                    (check.memory_repaired, "memory copies"),
                    (check.files_repaired, "files"),
                )
                if n
            ]
            self._upsets.corrected(
                UpsetLocation.STATE, f"{self.name}: {', '.join(parts)} repaired", check.corrected
            )
        if check.lost:
            self._upsets.uncorrectable(
                UpsetLocation.STATE,
                f"{self.name}: {', '.join(check.lost)} lost, back to default",
                len(check.lost),
            )


def _holds(records: Mapping[str, Value], values: Mapping[str, Value]) -> bool:
    return records.keys() == values.keys() and all(same(records[k], values[k]) for k in values)


def _checked(key: object, value: object, default: object) -> Value:
    """`value` as `key` stores it: of its default's kind, finite, short enough."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise InvalidValue(f"key {key!r}: expected 1 to {MAX_KEY_LENGTH} characters")
    expected = kind_of(default)
    if expected is None:
        raise InvalidValue(f"{key}: expected a bool, int, float or str default, found {default!r}")
    if expected is float and type(value) is int:
        value = float(value)
    if kind_of(value) is not expected:
        raise InvalidValue(f"{key}: expected a {expected.__name__}, found {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidValue(f"{key}: expected a finite number, found {value!r}")
    if isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT_OCTETS:
        raise InvalidValue(f"{key}: expected at most {MAX_TEXT_OCTETS} octets of text")
    return value  # type: ignore[return-value]
