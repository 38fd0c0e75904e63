"""The boot counter in the state directory: how many times the payload manager has started."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

BOOT_COUNT_FILE = "boot_count"


def next_boot_count(state_dir: Path) -> int:
    """Read, increment and durably store the boot count; 1 on a fresh state directory.

    A damaged count file restarts the count rather than stopping the payload (it is only
    telemetry); the damage is logged.
    """
    path = state_dir / BOOT_COUNT_FILE
    previous = 0
    try:
        previous = int(path.read_text().strip())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("boot count file %s unreadable (%s): counting from 0", path, exc)
    count = previous + 1
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(f"{count}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return count
