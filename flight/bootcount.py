"""The boot counter: how many times the payload manager has started, in protected state.

The count lives in a `TripleStore` (three voted copies, in memory and on disk) in the state
directory. Earlier versions kept it in a single file, `boot_count`: its count is taken over
(the larger of the two, in case a power cut came between the takeover and its removal), then
the file is removed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flight.durable import fsync_directory
from flight.protection.triplicate import TripleStore
from flight.protection.upsets import UpsetLog

log = logging.getLogger(__name__)

BOOT_STATE_DIR = "boot"
BOOT_COUNT_KEY = "boot_count"
LEGACY_BOOT_COUNT_FILE = "boot_count"


def next_boot_count(state_dir: Path, upsets: UpsetLog | None = None) -> int:
    """Read, increment and durably store the boot count; 1 on a fresh state directory.

    Damage to the count's copies is repaired by vote and reported to `upsets`; when every copy
    is lost the count starts again from 0 (it is telemetry) and that is reported too.
    OSError when the state directory cannot be written.
    """
    store = TripleStore(state_dir / BOOT_STATE_DIR, {BOOT_COUNT_KEY: 0}, upsets)
    legacy = state_dir / LEGACY_BOOT_COUNT_FILE
    previous = _legacy_count(legacy)
    if previous is not None and previous > int(store.get(BOOT_COUNT_KEY)):
        store.set(BOOT_COUNT_KEY, previous)
        log.info("boot count %d taken over from %s", previous, legacy)
    count = store.increment(BOOT_COUNT_KEY)
    if previous is not None or legacy.exists():
        legacy.unlink(missing_ok=True)
        fsync_directory(state_dir)
    return count


def _legacy_count(path: Path) -> int | None:
    """The count in an earlier version's single file; None when there is none or it is bad."""
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("old boot count file %s unreadable (%s): not taken over", path, exc)
        return None
