"""The model registry: validated ONNX models by name and version, with their signatures and the
golden checksums of their weights, in a directory of the state directory.

Files are `<name>-v<version>.onnx`; `index.json` lists them and is replaced atomically after
each file is durable, so a crash leaves either the old index or the new one, never a model the
index does not describe (an orphan file is removed at the next open).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flight.durable import fsync_directory, replace_atomically
from flight.files.upload_store import BadFileName, check_name
from flight.jobs.model_check import ModelSignature, TensorSpec, validate_model, weight_checksums

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
_INDEX_VERSION = 1


class RegistryError(Exception):
    """Base of the model registry's errors."""


class UnknownModel(RegistryError):
    """No model of that name (and version) is registered."""


class ModelExists(RegistryError):
    """That name and version are registered already."""


class BadModelName(RegistryError):
    """A model name the registry cannot store."""


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

    @property
    def key(self) -> str:
        """What names the model's content (the session cache key)."""
        return self.sha256.hex()


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
        self, root: Path, *, max_model_bytes: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = root
        self.max_model_bytes = max_model_bytes
        self._clock = clock
        root.mkdir(parents=True, exist_ok=True)
        # The job worker looks models up while commands register and delete them.
        self._lock = threading.RLock()
        self._models: dict[tuple[str, int], ModelEntry] = {}
        self._load()

    def _file(self, name: str, version: int) -> Path:
        return self.root / f"{name}-v{version}.onnx"

    def _load(self) -> None:
        index = self.root / INDEX_FILE
        try:
            raw = json.loads(index.read_bytes())
            for item in raw["models"]:
                entry = ModelEntry(
                    name=item["name"],
                    version=int(item["version"]),
                    size=int(item["size"]),
                    sha256=bytes.fromhex(item["sha256"]),
                    signature=ModelSignature.from_json(item["signature"]),
                    checksums={k: int(v) for k, v in item["checksums"].items()},
                    registered_at=float(item["registered_at"]),
                    path=self._file(item["name"], int(item["version"])),
                )
                if not entry.path.is_file():
                    log.error(
                        "model %s v%d: file %s missing", entry.name, entry.version, entry.path
                    )
                    continue
                self._models[(entry.name, entry.version)] = entry
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as exc:
            # The files are kept: an operator can register them again from a ground copy.
            log.error("model index %s unreadable (%s): registry starts empty", index, exc)
        known = {e.path.name for e in self._models.values()} | {INDEX_FILE}
        for path in self.root.iterdir():
            if path.name not in known and path.name.startswith("."):
                path.unlink(missing_ok=True)  # an interrupted write

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
            }
            for e in self.entries()
        ]
        raw = json.dumps({"version": _INDEX_VERSION, "models": models}, indent=1, sort_keys=True)
        replace_atomically(self.root / INDEX_FILE, raw.encode())

    def register(self, name: str, version: int, data: bytes) -> ModelEntry:
        """Validate `data` and register it; ModelRejected (model_check) when it is refused."""
        try:
            check_name(name)
        except BadFileName:
            raise BadModelName(
                f"a model name is 1 to 64 of A-Z a-z 0-9 . _ - not starting with a dot, "
                f"got {name!r}"
            ) from None
        with self._lock:
            if (name, version) in self._models:
                raise ModelExists(f"model {name} version {version} is registered already")
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
        )
        with self._lock:
            if (name, version) in self._models:
                raise ModelExists(f"model {name} version {version} is registered already")
            replace_atomically(entry.path, data)
            self._models[(name, version)] = entry
            self._save()
        log.info("model %s v%d registered: %s", name, version, signature_text(signature))
        return entry

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
            self._save()
        entry.path.unlink(missing_ok=True)
        fsync_directory(self.root)
        log.info("model %s v%d deleted", name, version)
        return entry
