"""How the payload starts and watches one worker (WorkerConfig)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flight.worker.backoff import BackoffPolicy
from flight.worker.connection import Address
from flight.worker.limits import Limits


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How to start and watch one worker.

    `factory` is 'module:function' building the worker's handlers. The worker listens on
    `address` if given (a Unix path or (host, port)), else on `<socket_dir>/worker-<name>.sock`.
    """

    factory: str
    name: str = "board0"
    socket_dir: Path | None = None
    address: Address | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    heartbeat_s: float = 0.5
    heartbeat_timeout_s: float = 3.0
    #: From spawning the process to its Hello (the factory loads models meanwhile).
    start_timeout_s: float = 30.0
    #: How long a call waits for a worker to come up before WorkerUnavailable.
    ready_timeout_s: float = 30.0
    #: How long stop() lets the worker end by itself before killing it.
    stop_grace_s: float = 2.0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    python: str = sys.executable
    #: Added to the payload's environment for the worker.
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    log_level: str = "INFO"
