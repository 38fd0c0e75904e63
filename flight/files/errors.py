"""The file store's errors: one class per refusal, each translated to a failure code by
flight.files.failures."""

from __future__ import annotations


class FileStoreError(Exception):
    """Base of the file store's errors."""


class BadFileName(FileStoreError):
    """The name is not 1..64 characters of [A-Za-z0-9._-] not starting with '.'."""


class BadFileSize(FileStoreError):
    """The announced size is not a positive number of octets."""


class BadTransferParameters(FileStoreError):
    """The transfer ID is not a u16 or the SHA-256 is not 32 octets."""


class QuotaExceeded(FileStoreError):
    """Committed files and announced uploads would exceed the store's quota."""


class DiskFull(FileStoreError):
    """The disk would keep less free space than the reserve."""


class FileExists(FileStoreError):
    """A committed file already has that name."""


class NoSuchFile(FileStoreError):
    """No committed file has that name."""


class TransferConflict(FileStoreError):
    """The transfer ID or the file name is already used by another upload."""


class UnknownTransfer(FileStoreError):
    """No upload is in progress with that transfer ID."""


class ChunkOutOfRange(FileStoreError):
    """The chunk is empty or lies (partly) outside the announced size."""


class TransferIncomplete(FileStoreError):
    """Commit asked while some octets have not been received."""


class ChecksumMismatch(FileStoreError):
    """The assembled file's SHA-256 is not the announced one; its data was discarded."""


class TooManyUploads(FileStoreError):
    """As many uploads as the store allows are in progress: one must be committed or aborted."""


class TooManyRanges(FileStoreError):
    """The chunk would start one more separate range than an upload may hold; it is refused and
    the upload kept: the missing ranges between those received must be sent first."""


class NotRegularFile(FileStoreError):
    """A path in the store is a symbolic link, a directory or a special file: not followed."""
