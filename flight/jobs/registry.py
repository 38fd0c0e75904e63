"""The model registry: validated ONNX models by name and version, with their signatures and the
golden checksums of their weights, in a directory of the state directory.

Files are `<name>-v<version>.onnx`, with a second copy in `copies/` (radiation protection: each
copy is checked against the SHA-256 and repaired from the other) and the known answer recorded
at registration in `<name>-v<version>.answer.npz`. `index.json` lists them and is replaced
atomically after each file is durable, so a crash leaves either the old index or the new one,
never a model the index does not describe (an orphan file is removed at the next open).

Model names come from the ground and from the index: both are checked before they make a path,
and no file of the registry is read through a symbolic link.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flight.durable import TMP_SUFFIX, fsync_directory, replace_atomically
from flight.files.upload_store import (
    BadFileName,
    NotRegularFile,
    check_name,
    is_regular,
    read_regular,
)
from flight.jobs.model_check import ModelSignature, TensorSpec, validate_model, weight_checksums
from flight.protection import known_answer
from flight.protection.known_answer import KnownAnswer
from flight.protection.upsets import UpsetLocation, UpsetLog

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
COPIES_DIR = "copies"
MAX_VERSION = 0xFFFF
_INDEX_VERSION = 2


class RegistryError(Exception):
    """Base of the model registry's errors."""


class UnknownModel(RegistryError):
    """No model of that name (and version) is registered."""


class ModelExists(RegistryError):
    """That name and version are registered already."""


class BadModelName(RegistryError):
    """A model name the registry cannot store."""


class BadTolerance(RegistryError):
    """A comparison tolerance that is negative or not a number."""


class ModelCorrupt(RegistryError):
    """Both stored copies of a model fail its SHA-256: only the ground can replace it."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One registered model."""

    name: str
    version: int
    size: int
    sha256: bytes
    signature: ModelSignature
    checksums: dict[str, int]
    registered_at: float
    path: Path
    tolerance: float = 0.0
    answer: KnownAnswer | None = None
    #: ABFT residual threshold, calibrated at the model's first ABFT job (None: not yet).
    abft_threshold: float | None = None

    @property
    def key(self) -> str:
        """What names the model's content (the session cache key)."""
        return self.sha256.hex()

    @property
    def copy_path(self) -> Path:
        """The second stored copy."""
        return self.path.parent / COPIES_DIR / self.path.name

    @property
    def answer_path(self) -> Path:
        return self.path.with_name(f"{self.name}-v{self.version}.answer.npz")

    def label(self) -> str:
        return f"{self.name} v{self.version}"


def signature_text(signature: ModelSignature) -> str:
    """`image float32[?,3,64,64] -> probabilities float32[?,10]`, as operators read it."""

    def one(specs: tuple[TensorSpec, ...]) -> str:
        parts = []
        for spec in specs:
            shape = ",".join("?" if d is None else str(d) for d in spec.shape)
            parts.append(f"{spec.name} {spec.dtype}[{shape}]")
        return ", ".join(parts)

    return f"{one(signature.inputs)} -> {one(signature.outputs)}"


class ModelRegistry:
    """Registered models under `root`; validation limits given at construction."""

    def __init__(
        self,
        root: Path,
        *,
        max_model_bytes: int,
        clock: Callable[[], float] = time.time,
        upsets: UpsetLog | None = None,
    ) -> None:
        self.root = root
        self.max_model_bytes = max_model_bytes
        self._clock = clock
        self.upsets = upsets or UpsetLog()
        root.mkdir(parents=True, exist_ok=True)
        copies = root / COPIES_DIR
        if copies.is_symlink():
            # The registry never makes one: the copies it names are not the registry's.
            log.error("%s is a symbolic link: removed, second copies are made again", copies)
            copies.unlink()
        copies.mkdir(exist_ok=True)
        # The job worker looks models up while commands register and delete them.
        self._lock = threading.RLock()
        self._models: dict[tuple[str, int], ModelEntry] = {}
        # Intact stored copies of each model at its last check.
        self.intact: dict[tuple[str, int], int] = {}
        # Models found with both copies corrupt (reported once).
        self._corrupt: set[tuple[str, int]] = set()
        self._load()

    def _file(self, name: str, version: int) -> Path:
        return self.root / f"{name}-v{version}.onnx"

    def _load(self) -> None:
        index = self.root / INDEX_FILE
        self._remove_debris()
        try:
            raw = json.loads(read_regular(index))
            for item in raw["models"]:
                if not _valid_key(item["name"], item["version"]):
                    # A damaged index must not make a path outside the registry.
                    log.error("model index %s: entry %r skipped", index, item["name"])
                    continue
                entry = ModelEntry(
                    name=item["name"],
                    version=int(item["version"]),
                    size=int(item["size"]),
                    sha256=bytes.fromhex(item["sha256"]),
                    signature=ModelSignature.from_json(item["signature"]),
                    checksums={k: int(v) for k, v in item["checksums"].items()},
                    registered_at=float(item["registered_at"]),
                    path=self._file(item["name"], int(item["version"])),
                    tolerance=float(item.get("tolerance", 0.0)),
                    abft_threshold=_optional_float(item.get("abft_threshold")),
                )
                if not is_regular(entry.path) and not is_regular(entry.copy_path):
                    log.error(
                        "model %s v%d: file %s missing", entry.name, entry.version, entry.path
                    )
                    continue
                entry = self._with_answer(entry, item.get("answer"))
                self._models[(entry.name, entry.version)] = entry
                self.intact[(entry.name, entry.version)] = 2
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, NotRegularFile) as exc:
            # The files are kept: an operator can register them again from a ground copy.
            log.error("model index %s unreadable (%s): registry starts empty", index, exc)
        # A registry from before the second copy existed gets one now (not an upset).
        for entry in list(self._models.values()):
            if entry.copy_path.is_file():
                continue
            data = _read_or_none(entry.path)
            if data is None or hashlib.sha256(data).digest() != entry.sha256:
                continue  # the first check reports it
            try:
                replace_atomically(entry.copy_path, data)
                log.info("model %s: second copy made", entry.label())
            except OSError as exc:
                log.error("model %s: no second copy made: %s", entry.label(), exc)

    def _remove_debris(self) -> None:
        """Remove what interrupted writes leave: hidden files and atomic replacements' temporary
        files (before anything is written through their names)."""
        for directory in (self.root, self.root / COPIES_DIR):
            for path in directory.iterdir():
                debris = path.name.startswith(".") or path.name.endswith(TMP_SUFFIX)
                if debris and (path.is_symlink() or not path.is_dir()):
                    path.unlink(missing_ok=True)

    def _with_answer(self, entry: ModelEntry, raw: object) -> ModelEntry:
        if not isinstance(raw, dict):
            return entry
        try:
            data = read_regular(entry.answer_path)
            digest = bytes.fromhex(raw["digest"])
            answer = known_answer.from_bytes(str(raw["provider"]), digest, data)
        except (
            OSError,
            EOFError,
            zipfile.BadZipFile,
            ValueError,
            KeyError,
            TypeError,
            NotRegularFile,
        ) as exc:
            # Recorded again at the model's next check: the answer is derived, not precious.
            log.warning("model %s: known answer unreadable (%s)", entry.label(), exc)
            return entry
        if known_answer.digest(answer.outputs) != digest:
            log.warning("model %s: known answer file corrupt: recorded again", entry.label())
            return entry
        return dataclasses.replace(entry, answer=answer)

    def _save(self) -> None:
        models = [
            {
                "name": e.name,
                "version": e.version,
                "size": e.size,
                "sha256": e.sha256.hex(),
                "signature": e.signature.to_json(),
                "checksums": e.checksums,
                "registered_at": e.registered_at,
                "tolerance": e.tolerance,
                "abft_threshold": e.abft_threshold,
                "answer": None
                if e.answer is None
                else {"provider": e.answer.provider, "digest": e.answer.digest.hex()},
            }
            for e in self.entries()
        ]
        raw = json.dumps({"version": _INDEX_VERSION, "models": models}, indent=1, sort_keys=True)
        replace_atomically(self.root / INDEX_FILE, raw.encode())

    def register(self, name: str, version: int, data: bytes, tolerance: float = 0.0) -> ModelEntry:
        """Validate `data` and register it; ModelRejected (model_check) when it is refused."""
        if not tolerance >= 0.0 or tolerance == float("inf"):
            raise BadTolerance(f"tolerance: expected a finite value of 0 or more, got {tolerance}")
        try:
            check_name(name)
        except BadFileName:
            raise BadModelName(
                f"a model name is 1 to 64 of A-Z a-z 0-9 . _ - not starting with a dot, "
                f"got {name!r}"
            ) from None
        with self._lock:
            self._check_new(name, version)
        signature = validate_model(data, max_size=self.max_model_bytes)
        entry = ModelEntry(
            name=name,
            version=version,
            size=len(data),
            sha256=hashlib.sha256(data).digest(),
            signature=signature,
            checksums=weight_checksums(data),
            registered_at=self._clock(),
            path=self._file(name, version),
            tolerance=tolerance,
        )
        with self._lock:
            self._check_new(name, version)
            replace_atomically(entry.path, data)
            replace_atomically(entry.copy_path, data)
            self._models[(name, version)] = entry
            self.intact[(name, version)] = 2
            self._save()
        log.info("model %s v%d registered: %s", name, version, signature_text(signature))
        return entry

    def _check_new(self, name: str, version: int) -> None:
        if (name, version) in self._models:
            raise ModelExists(f"model {name} version {version} is registered already")
        # Names that differ only by case share their files on a case-insensitive file system:
        # the second would overwrite the first's.
        for known, _ in self._models:
            if known != name and known.lower() == name.lower():
                raise ModelExists(
                    f"model {known} is registered: {name} differs from it only by case"
                )

    def entry(self, name: str, version: int = 0) -> ModelEntry:
        """The model `name` at `version` (0: the highest registered)."""
        with self._lock:
            return self._entry(name, version)

    def _entry(self, name: str, version: int) -> ModelEntry:
        if version == 0:
            versions = [v for (n, v) in self._models if n == name]
            if versions:
                return self._models[(name, max(versions))]
        elif (name, version) in self._models:
            return self._models[(name, version)]
        known = ", ".join(f"{n} v{v}" for n, v in sorted(self._models)) or "none"
        which = f"{name} version {version}" if version else name
        raise UnknownModel(f"no model {which} is registered (registered: {known})")

    def entries(self) -> list[ModelEntry]:
        """Every registered model, by name and version."""
        with self._lock:
            return [self._models[k] for k in sorted(self._models)]

    def delete(self, name: str, version: int) -> ModelEntry:
        with self._lock:
            entry = self._entry(name, version)
            del self._models[(entry.name, entry.version)]
            self.intact.pop((entry.name, entry.version), None)
            self._corrupt.discard((entry.name, entry.version))
            self._save()
        for path in (entry.path, entry.copy_path, entry.answer_path):
            path.unlink(missing_ok=True)
        fsync_directory(self.root)
        fsync_directory(self.root / COPIES_DIR)
        log.info("model %s v%d deleted", name, version)
        return entry

    def set_answer(self, entry: ModelEntry, answer: KnownAnswer) -> ModelEntry:
        """Record `answer` as the model's known answer (durably); the updated entry."""
        with self._lock:
            current = self._entry(entry.name, entry.version)
            replace_atomically(current.answer_path, known_answer.to_bytes(answer))
            updated = dataclasses.replace(current, answer=answer)
            self._models[(entry.name, entry.version)] = updated
            self._save()
        return updated

    def set_abft_threshold(self, entry: ModelEntry, threshold: float) -> ModelEntry:
        """Record the model's calibrated ABFT threshold (durably); the updated entry."""
        with self._lock:
            current = self._entry(entry.name, entry.version)
            updated = dataclasses.replace(current, abft_threshold=threshold)
            self._models[(entry.name, entry.version)] = updated
            self._save()
        return updated

    # -- the two stored copies ----------------------------------------------------------------

    def read_verified(self, entry: ModelEntry) -> bytes:
        """The model's bytes, from a copy that matches its SHA-256; a bad copy is repaired.

        Raises ModelCorrupt when neither copy matches.
        """
        first = _read_or_none(entry.path)
        if first is not None and hashlib.sha256(first).digest() == entry.sha256:
            return first
        self.verify_copies(entry)  # repairs the first copy from the second, or raises
        return read_regular(entry.path)

    def verify_copies(self, entry: ModelEntry) -> int:
        """Check both stored copies against the SHA-256 and repair a bad one from the other;
        the number of copies that were intact. Raises ModelCorrupt when none was."""
        paths = (entry.path, entry.copy_path)
        contents = [_read_or_none(path) for path in paths]
        good = [
            data
            for data in contents
            if data is not None and hashlib.sha256(data).digest() == entry.sha256
        ]
        bad = [path for path, data in zip(paths, contents, strict=True) if data not in good]
        with self._lock:
            self.intact[(entry.name, entry.version)] = len(good)
            first_time = not good and (entry.name, entry.version) not in self._corrupt
            if first_time:
                self._corrupt.add((entry.name, entry.version))
        if not good:
            # Once per model: it stays corrupt until deleted, and every later check would
            # count the same damage again.
            if first_time:
                self.upsets.uncorrectable(UpsetLocation.MODEL_FILE, entry.label(), len(bad))
            raise ModelCorrupt(
                f"model {entry.label()}: both stored copies fail the SHA-256 recorded at "
                "registration: delete the model and register it again"
            )
        for path in bad:
            replace_atomically(path, good[0])
        if bad:
            names = ", ".join(str(p.relative_to(self.root)) for p in bad)
            self.upsets.corrected(UpsetLocation.MODEL_FILE, f"{entry.label()}: {names}", len(bad))
            with self._lock:
                self.intact[(entry.name, entry.version)] = 2
        return len(good)


def _optional_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _valid_key(name: object, version: object) -> bool:
    if not isinstance(name, str) or not isinstance(version, int) or isinstance(version, bool):
        return False
    try:
        check_name(name)
    except BadFileName:
        return False
    return 1 <= version <= MAX_VERSION


def _read_or_none(path: Path) -> bytes | None:
    """The file's content; None when it is missing or not a regular file (never followed)."""
    try:
        return read_regular(path)
    except (FileNotFoundError, NotRegularFile):
        return None
