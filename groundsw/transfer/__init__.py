"""File transfer with the payload (service 128) and the request and answer exchange every ground
operation on models, jobs and files shares.

The parts, each in its module: `exchange` (a command, its reports and replies), `upload` and
`download` (resumable, checked against the file's SHA-256), `partial_download` (a download's
state on disk), `file_checks` and `errors`, `operations` (the context and CLI edge operations
share) and `file_commands` (`groundsw file`). The names other modules use are importable from
here; the rest from their module.
"""

from groundsw.transfer.download import (
    Downloader,
    coalesce,
    downlink_seconds,
)
from groundsw.transfer.errors import (
    GroundInputError,
    TransferFailed,
)
from groundsw.transfer.exchange import (
    Exchange,
    event_values,
    failure_code,
)
from groundsw.transfer.file_checks import check_file_name, file_sha256, readable_file
from groundsw.transfer.file_commands import (
    add_file_commands,
    describe_file_list,
)
from groundsw.transfer.operations import (
    OneSentenceParser,
    Operation,
    OperationContext,
    add_operation,
    download_to,
)
from groundsw.transfer.partial_download import PartialDownload
from groundsw.transfer.upload import (
    UPLOAD_CHUNK_OCTETS,
    Uploader,
    chunk_octets,
    plan_chunks,
    transfer_id_for,
)

__all__ = [
    "UPLOAD_CHUNK_OCTETS",
    "Downloader",
    "Exchange",
    "GroundInputError",
    "OneSentenceParser",
    "Operation",
    "OperationContext",
    "PartialDownload",
    "TransferFailed",
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
    "transfer_id_for",
]
