"""Which dictionary failure code reports each file store error."""

from __future__ import annotations

import errno

from flight.files.errors import (
    BadFileName,
    BadFileSize,
    BadTransferParameters,
    ChecksumMismatch,
    ChunkOutOfRange,
    DiskFull,
    FileExists,
    FileStoreError,
    NoSuchFile,
    NotRegularFile,
    QuotaExceeded,
    TooManyRanges,
    TooManyUploads,
    TransferConflict,
    TransferIncomplete,
    UnknownTransfer,
)

_FAILURES: dict[type[FileStoreError], str] = {
    BadFileName: "FILE_NAME_INVALID",
    FileExists: "FILE_EXISTS",
    QuotaExceeded: "QUOTA_EXCEEDED",
    DiskFull: "DISK_FULL",
    UnknownTransfer: "UNKNOWN_TRANSFER",
    TransferConflict: "TRANSFER_CONFLICT",
    ChunkOutOfRange: "CHUNK_OUT_OF_RANGE",
    TransferIncomplete: "TRANSFER_INCOMPLETE",
    ChecksumMismatch: "CHECKSUM_MISMATCH",
    NoSuchFile: "NO_SUCH_FILE",
    BadFileSize: "BAD_APPLICATION_DATA",
    BadTransferParameters: "BAD_APPLICATION_DATA",
    NotRegularFile: "FILE_NOT_REGULAR",
    TooManyUploads: "TOO_MANY_TRANSFERS",
    # The payload keeps no more ranges per upload: its memory, not the store's room.
    TooManyRanges: "RESOURCES_EXHAUSTED",
}


def store_failure_name(exc: Exception) -> str:
    """The failure name for a file store error, or for an I/O error under the store."""
    if isinstance(exc, FileStoreError):
        return _FAILURES.get(type(exc), "EXECUTION_FAILED")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "DISK_FULL"
    return "EXECUTION_FAILED"
