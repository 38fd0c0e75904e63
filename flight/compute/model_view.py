"""The registered models as a worker process sees them.

The payload process owns the registry (its index, its files, their repair). A worker learns the
entries it needs from the payload's requests, reads the model files from the registry's
directory without ever writing them, and sends back what the model guard records (a known
answer, an ABFT threshold) and a damaged copy it read past, for the registry to keep or repair.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flight.files.upload_store import NotRegularFile, read_regular
from flight.jobs.registry import ModelCorrupt, ModelEntry, UnknownModel
from flight.protection.known_answer import KnownAnswer


@dataclass(frozen=True)
class AnswerRecorded:
    """The guard recorded a model's known answer: the registry keeps it."""

    name: str
    version: int
    answer: KnownAnswer


@dataclass(frozen=True)
class ThresholdCalibrated:
    """The guard calibrated a model's ABFT threshold: the registry keeps it."""

    name: str
    version: int
    threshold: float


@dataclass(frozen=True)
class CopyDamaged:
    """A stored copy of a model failed its SHA-256: the registry repairs it from the other."""

    name: str
    version: int


CatalogUpdate = AnswerRecorded | ThresholdCalibrated | CopyDamaged


class ModelView:
    """Entries learnt from requests, model files read in place, records sent back by `tell`."""

    def __init__(self, tell: Callable[[CatalogUpdate], None]) -> None:
        self._tell = tell
        self._entries: dict[tuple[str, int], ModelEntry] = {}
        self._lock = threading.Lock()

    def learn(self, entry: ModelEntry) -> None:
        """The payload's current entry of a model (it comes with every request naming one)."""
        with self._lock:
            self._entries[(entry.name, entry.version)] = entry

    def forget(self, name: str, version: int) -> None:
        with self._lock:
            self._entries.pop((name, version), None)

    def read_verified(self, entry: ModelEntry) -> bytes:
        """The model's bytes from a copy that matches its SHA-256 (ModelCorrupt if none)."""
        for path in (entry.path, entry.copy_path):
            data = _read_or_none(path)
            if data is not None and hashlib.sha256(data).digest() == entry.sha256:
                if path != entry.path:
                    self._tell(CopyDamaged(entry.name, entry.version))
                return data
        self._tell(CopyDamaged(entry.name, entry.version))
        raise ModelCorrupt(
            f"model {entry.label()}: both stored copies fail the SHA-256 recorded at "
            "registration: delete the model and register it again"
        )

    def entry(self, name: str, version: int = 0) -> ModelEntry:
        """The entry of `name` at `version` (0: the latest this view knows)."""
        with self._lock:
            if version:
                found = self._entries.get((name, version))
            else:
                versions = [e for (n, _), e in self._entries.items() if n == name]
                found = max(versions, key=lambda e: e.version) if versions else None
        if found is None:
            raise UnknownModel(f"model {name} v{version} is not known to this worker")
        return found

    def entries(self) -> list[ModelEntry]:
        with self._lock:
            return list(self._entries.values())

    def set_answer(self, entry: ModelEntry, answer: KnownAnswer) -> ModelEntry:
        updated = dataclasses.replace(self.entry(entry.name, entry.version), answer=answer)
        self.learn(updated)
        self._tell(AnswerRecorded(entry.name, entry.version, answer))
        return updated

    def set_abft_threshold(self, entry: ModelEntry, threshold: float) -> ModelEntry:
        current = self.entry(entry.name, entry.version)
        updated = dataclasses.replace(current, abft_threshold=threshold)
        self.learn(updated)
        self._tell(ThresholdCalibrated(entry.name, entry.version, threshold))
        return updated


def _read_or_none(path: Path) -> bytes | None:
    try:
        return read_regular(path)
    except (FileNotFoundError, NotRegularFile):
        return None
