"""The committed files under files/ and their index, index.json: the size and SHA-256 of each
(replaced atomically), a cache that is made to agree with files/ at every open."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from flight.durable import TMP_SUFFIX, replace_atomically
from flight.files.errors import NotRegularFile
from flight.files.file_names import valid_name
from flight.files.regular_files import is_regular, read_regular, sha256_of

log = logging.getLogger(__name__)

_INDEX_VERSION = 1


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A committed file."""

    name: str
    size: int
    sha256: bytes


class FileIndex:
    """The committed files by name, written to index.json now (`add`, `remove`) or at the next
    `flush` (`add_later`)."""

    def __init__(self, path: Path, files_dir: Path) -> None:
        self.path = path
        self.files_dir = files_dir
        self._entries: dict[str, StoredFile] = {}
        self._dirty = False

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> StoredFile | None:
        """The committed file named `name`, or None."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """The names of the committed files, in no particular order."""
        return list(self._entries)

    def files(self) -> list[StoredFile]:
        """Every committed file, by name."""
        return [self._entries[name] for name in sorted(self._entries)]

    def total_bytes(self) -> int:
        """Octets of every committed file."""
        return sum(f.size for f in self._entries.values())

    def add(self, stored: StoredFile) -> None:
        """Record a committed file and write the index."""
        self._entries[stored.name] = stored
        self.write()

    def add_later(self, stored: StoredFile) -> None:
        """Record a committed file; the index is written at the next flush, change or close
        (a file it lacks after a crash is hashed at the next open)."""
        self._entries[stored.name] = stored
        self._dirty = True

    def remove(self, name: str) -> None:
        """Forget a committed file and write the index."""
        del self._entries[name]
        self.write()

    def flush(self) -> None:
        """Write the index if a file was added since it was last written."""
        if self._dirty:
            self.write()

    def write(self) -> None:
        """Replace index.json, atomically, by the files recorded."""
        self._dirty = False
        entries = {f.name: {"size": f.size, "sha256": f.sha256.hex()} for f in self.files()}
        raw = json.dumps({"version": _INDEX_VERSION, "files": entries}, indent=1, sort_keys=True)
        replace_atomically(self.path, raw.encode())

    def recover(self) -> None:
        """Load the index and make it agree with files/, hashing files it lacks."""
        recorded: dict[str, StoredFile] = {}
        try:
            raw = json.loads(read_regular(self.path))
            for name, entry in raw["files"].items():
                digest = bytes.fromhex(entry["sha256"])
                recorded[name] = StoredFile(name, int(entry["size"]), digest)
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, AttributeError, NotRegularFile) as exc:
            log.warning("file index %s unreadable (%s): rebuilding it", self.path, exc)
        self.path.with_name(self.path.name + TMP_SUFFIX).unlink(missing_ok=True)
        changed = False
        for path in sorted(self.files_dir.iterdir()):
            name = path.name
            if path.is_symlink():
                # The store never makes one: whatever it names is outside the store.
                log.warning("removing %s: a symbolic link, not a stored file", path)
                path.unlink()
                changed = True
                continue
            if not is_regular(path) or not valid_name(name):
                log.warning("ignoring %s: not a stored file", path)
                continue
            entry = recorded.get(name)
            size = path.lstat().st_size
            if entry is None or entry.size != size:
                entry = StoredFile(name, size, sha256_of(path))
                changed = True
            self._entries[name] = entry
        if changed or set(recorded) != set(self._entries):
            self.write()
