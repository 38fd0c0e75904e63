"""A download's resumable state on the ground: `<out>.part` and its received ranges in
`<out>.part.json`, so an interrupted download asks only for the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from pathlib import Path

from groundsw.transfer.errors import TransferFailed
from groundsw.transfer.file_checks import file_sha256
from spacelink.fsync import fsync_directory
from spacelink.ranges import RangeSet

log = logging.getLogger(__name__)

_SHA256_OCTETS = hashlib.sha256().digest_size


class PartialDownload:
    """`<out>.part` filled at each chunk's offset, with its received ranges in `<out>.part.json`.

    The sidecar names only octets already fsynced in `.part`, so a crash loses at most what
    arrived since the last checkpoint.
    """

    def __init__(self, out: Path, name: str) -> None:
        self.out = out
        self.name = name
        self.part = out.with_name(out.name + ".part")
        self.sidecar = out.with_name(out.name + ".part.json")
        self.size: int | None = None
        self.sha256: bytes | None = None
        self.received = RangeSet()
        self.dropped = 0
        self._fd: int | None = None
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            saved = json.loads(self.sidecar.read_text())
            if saved["name"] != self.name:
                return
            size, sha = int(saved["size"]), bytes.fromhex(saved["sha256"])
            ranges = RangeSet((int(o), int(n)) for o, n in saved["ranges"])
            if len(sha) != _SHA256_OCTETS or self.part.stat().st_size != size:
                return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if self.sidecar.exists():
                log.warning("ignoring the download state in %s: %s", self.sidecar, exc)
            return
        self.size, self.sha256, self.received = size, sha, ranges

    @property
    def resumable(self) -> bool:
        return self.size is not None

    def start(self, size: int, sha256: bytes) -> bool:
        """Take the file's size and SHA-256; False when what was kept belongs to another file."""
        kept = self.size == size and self.sha256 == sha256
        if not kept:
            self.received = RangeSet()
        self.size, self.sha256 = size, sha256
        if self._fd is None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | (0 if kept else os.O_TRUNC)
            self._fd = os.open(self.part, flags, 0o644)
        elif not kept:
            os.ftruncate(self._fd, 0)
        os.ftruncate(self._fd, size)
        self._dirty = True
        return kept

    def accept(self, offset: int, data: bytes, crc32: int) -> bool:
        """Write one chunk if its CRC-32 holds and it lies within the file; False if dropped."""
        if self._fd is None or self.size is None:
            raise RuntimeError("a chunk arrived before the download's size was known")
        if zlib.crc32(data) != crc32 or not data or offset + len(data) > self.size:
            self.dropped += 1
            return False
        written = os.pwrite(self._fd, data, offset)
        if written != len(data):
            raise OSError(f"wrote {written} of {len(data)} octets to {self.part}")
        self.received.add(offset, len(data))
        self._dirty = True
        return True

    def missing(self) -> list[tuple[int, int]]:
        if self.size is None:
            raise RuntimeError("the download's size is not known yet")
        return list(self.received.missing(self.size))

    @property
    def complete(self) -> bool:
        return self.size is not None and not self.missing()

    def checkpoint(self) -> None:
        """Make what arrived durable and record it in the sidecar (atomically replaced)."""
        if self._fd is None or not self._dirty or self.size is None or self.sha256 is None:
            return
        os.fsync(self._fd)
        state = {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256.hex(),
            "ranges": [list(r) for r in self.received.ranges],
        }
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.sidecar)
        self._dirty = False

    def finish(self) -> bytes:
        """Check the whole file's SHA-256, then move it to its final path; TransferFailed if the
        octets do not match (they are discarded)."""
        if self._fd is None or self.sha256 is None or not self.complete:
            raise RuntimeError("finish() before the download is complete")
        os.fsync(self._fd)
        found, announced = file_sha256(self.part), self.sha256
        if found != announced:
            self.discard()
            raise TransferFailed(
                f"{self.name} arrived with SHA-256 {found.hex()[:16]}..., the payload announced "
                f"{announced.hex()[:16]}...: discarded"
            )
        os.close(self._fd)
        self._fd = None
        os.replace(self.part, self.out)
        fsync_directory(self.out.parent)
        self.sidecar.unlink(missing_ok=True)
        return found

    def discard(self) -> None:
        self.close()
        self.part.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)
        self.size, self.sha256, self.received = None, None, RangeSet()

    def close(self) -> None:
        if self._fd is not None:
            try:
                self.checkpoint()
            finally:
                os.close(self._fd)
                self._fd = None
