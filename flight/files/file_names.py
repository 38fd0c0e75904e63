"""Which names the ground may give a file: checked before a name reaches a path."""

from __future__ import annotations

import re

from flight.files.errors import BadFileName

MAX_NAME_LENGTH = 64
# Names the payload gives the files it makes (job results, flight.jobs.runner.result_file_name):
# an upload under one of them would be deleted when that job's result is stored. Any case: on a
# case-insensitive file system JOB-1.NPY is job-1.npy.
RESULT_NAMES = re.compile(r"job-[0-9]+\.np[yz]", re.IGNORECASE)

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def valid_name(name: str) -> bool:
    """Whether `name` is 1..64 characters of [A-Za-z0-9._-] not starting with '.'."""
    return 1 <= len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None


def check_name(name: str) -> None:
    """BadFileName unless `name` is a valid file name (see `valid_name`)."""
    if not valid_name(name):
        raise BadFileName(
            f"a file name must be 1..{MAX_NAME_LENGTH} characters of [A-Za-z0-9._-] not starting"
            f" with '.', got {name!r}"
        )


def fold(name: str) -> str:
    """The name as a case-insensitive file system sees it (names are ASCII)."""
    return name.lower()
