"""File transfer with the payload (service 128) and the request and answer exchange every ground
operation on models, jobs and files shares.

The parts, each in its module: `exchange` (a command, its reports and replies), `upload` and
`download` (resumable, checked against the file's SHA-256), `partial_download` (a download's
state on disk), `file_checks` and `errors`, `operations` (the context and CLI edge operations
share) and `file_commands` (`groundsw file`). Every public name is importable from here.
"""

from groundsw.transfer.download import (
    CHECKPOINT_INTERVAL_S,
    DOWNLOAD_QUIET_S,
    MAX_DOWNLOAD_REQUESTS,
    Downloader,
    DownloadResult,
    coalesce,
    downlink_seconds,
)
from groundsw.transfer.errors import (
    MAX_STALLED_ROUNDS,
    GroundInputError,
    TransferFailed,
    TransferStalled,
)
from groundsw.transfer.exchange import (
    QUERY_ATTEMPTS,
    REPLY_GRACE_S,
    Exchange,
    event_values,
    failure_code,
)
from groundsw.transfer.file_checks import check_file_name, file_sha256, readable_file
from groundsw.transfer.file_commands import (
    add_file_commands,
    describe_file_list,
    run_delete,
    run_download,
    run_list,
    run_upload,
)
from groundsw.transfer.operations import (
    LocalCheck,
    OneSentenceParser,
    Operation,
    OperationContext,
    add_operation,
    download_to,
)
from groundsw.transfer.partial_download import PartialDownload
from groundsw.transfer.upload import (
    ACK_GRACE_S,
    CHECKSUM_MISMATCH,
    FILE_EXISTS,
    TRANSFER_CONFLICT,
    UPLOAD_CHUNK_OCTETS,
    UPLOAD_WINDOW,
    Uploader,
    UploadResult,
    chunk_octets,
    plan_chunks,
    transfer_id_for,
)

__all__ = [
    "ACK_GRACE_S",
    "CHECKPOINT_INTERVAL_S",
    "CHECKSUM_MISMATCH",
    "DOWNLOAD_QUIET_S",
    "FILE_EXISTS",
    "MAX_DOWNLOAD_REQUESTS",
    "MAX_STALLED_ROUNDS",
    "QUERY_ATTEMPTS",
    "REPLY_GRACE_S",
    "TRANSFER_CONFLICT",
    "UPLOAD_CHUNK_OCTETS",
    "UPLOAD_WINDOW",
    "DownloadResult",
    "Downloader",
    "Exchange",
    "GroundInputError",
    "LocalCheck",
    "OneSentenceParser",
    "Operation",
    "OperationContext",
    "PartialDownload",
    "TransferFailed",
    "TransferStalled",
    "UploadResult",
    "Uploader",
    "add_file_commands",
    "add_operation",
    "check_file_name",
    "chunk_octets",
    "coalesce",
    "describe_file_list",
    "downlink_seconds",
    "download_to",
    "event_values",
    "failure_code",
    "file_sha256",
    "plan_chunks",
    "readable_file",
    "run_delete",
    "run_download",
    "run_list",
    "run_upload",
    "transfer_id_for",
]
