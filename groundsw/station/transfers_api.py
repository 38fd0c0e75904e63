"""File transfers through the station's API, for scripts: a file PUT to the station is uploaded
to the payload's store (resumable, SHA-256 checked, as `groundsw file upload`), a stored file is
downloaded to the station, then fetched from it; each transfer runs in the station and is
followed by its ID. Models and jobs are then dictionary commands (MODEL_REGISTER, JOB_SUBMIT)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from groundsw.station.config import payload_data_dir
from groundsw.station.http_lookup import link_or_404
from groundsw.station.owned_link import OwnedLink
from groundsw.station.station import FIRST_CLIENT_SOURCE_ID, LAST_CLIENT_SOURCE_ID, Station
from groundsw.transfer import Downloader, Exchange, GroundInputError, Uploader
from groundsw.verification import CommandFailed
from spacelink.errors import LinkError

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
TRANSFER_TIMEOUT_S = 10.0
LOG_LINES = 20


class DownloadRequest(BaseModel):
    name: str = Field(description="The stored file's name on the payload.")
    client: str = Field(default="http", description="Who asks: kept in the command history.")


class TransferStatus(BaseModel):
    id: int
    kind: str = Field(description="upload or download")
    name: str
    state: str = Field(description="running, done or failed")
    size: int | None
    sha256: str | None
    error: str | None
    log: list[str] = Field(description="The transfer's last progress lines.")


@dataclass
class _Transfer:
    id: int
    kind: str
    name: str
    path: Path
    state: str = "running"
    size: int | None = None
    sha256: str | None = None
    error: str | None = None
    log: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.log.append(line)
        del self.log[:-LOG_LINES]

    def status(self) -> TransferStatus:
        return TransferStatus(
            id=self.id,
            kind=self.kind,
            name=self.name,
            state=self.state,
            size=self.size,
            sha256=self.sha256,
            error=self.error,
            log=list(self.log),
        )


def add_transfer_routes(app: FastAPI, station: Station) -> None:
    """The upload, download and transfer routes on `app`."""
    transfers: dict[tuple[str, int], _Transfer] = {}
    ids = itertools.count(1)
    lock = threading.Lock()

    def owned(name: str) -> OwnedLink:
        return link_or_404(station, name)

    def start(link: OwnedLink, transfer: _Transfer, client: str, job: Callable[..., None]) -> None:
        with lock:
            transfers[(link.name, transfer.id)] = transfer

        def run() -> None:
            source_id = link.free_source_id(FIRST_CLIENT_SOURCE_ID, LAST_CLIENT_SOURCE_ID)
            end = link.client(f"{client} ({transfer.kind} {transfer.name})", source_id)
            exchange = Exchange(end, link.dictionary, TRANSFER_TIMEOUT_S, time.monotonic)
            try:
                job(exchange)
                transfer.state = "done"
            except (CommandFailed, LinkError, GroundInputError, OSError) as exc:
                transfer.error = str(exc)
                transfer.state = "failed"
            except Exception as exc:  # a transfer must never take the station down
                log.exception("transfer %d failed", transfer.id)
                transfer.error = f"internal error: {exc}"
                transfer.state = "failed"
            finally:
                end.close()

        threading.Thread(target=run, name=f"transfer-{transfer.id}", daemon=True).start()

    def staging(link: OwnedLink, kind: str) -> Path:
        directory = payload_data_dir(station.config.data_dir, link.name) / kind
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    @app.put(
        f"{PREFIX}/payloads/{{name}}/files/{{file}}",
        summary="Upload the request body to the payload's store as FILE",
        status_code=202,
    )
    async def upload(
        name: str, file: str, request: Request, client: str = "http"
    ) -> TransferStatus:
        link = owned(name)
        transfer_id = next(ids)
        path = staging(link, "uploads") / f"{transfer_id}.part"
        with path.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        transfer = _Transfer(transfer_id, "upload", file, path)

        def job(exchange: Exchange) -> None:
            result = Uploader(exchange, transfer.say).upload(path, file)
            transfer.size, transfer.sha256 = result.size, result.sha256.hex()
            path.unlink(missing_ok=True)

        start(link, transfer, client, job)
        return transfer.status()

    @app.post(
        f"{PREFIX}/payloads/{{name}}/downloads",
        summary="Download a stored file to the station (then GET its content)",
        status_code=202,
    )
    def download(name: str, request: DownloadRequest) -> TransferStatus:
        link = owned(name)
        transfer_id = next(ids)
        path = staging(link, "downloads") / f"{transfer_id}.bin"
        transfer = _Transfer(transfer_id, "download", request.name, path)
        baud = station.config.payload(name).baud

        def job(exchange: Exchange) -> None:
            result = Downloader(exchange, transfer.say, baud).download(request.name, path)
            transfer.size, transfer.sha256 = result.size, result.sha256.hex()

        start(link, transfer, request.client, job)
        return transfer.status()

    def find(name: str, transfer_id: int) -> _Transfer:
        owned(name)
        with lock:
            transfer = transfers.get((name, transfer_id))
        if transfer is None:
            raise HTTPException(404, f"no transfer {transfer_id} for {name}")
        return transfer

    @app.get(f"{PREFIX}/payloads/{{name}}/transfers/{{transfer_id}}", summary="A transfer's state")
    def transfer_status(name: str, transfer_id: int) -> TransferStatus:
        return find(name, transfer_id).status()

    @app.get(
        f"{PREFIX}/payloads/{{name}}/transfers/{{transfer_id}}/content",
        summary="The content of a finished download",
        response_class=FileResponse,
    )
    def content(name: str, transfer_id: int) -> FileResponse:
        transfer = find(name, transfer_id)
        if transfer.kind != "download" or transfer.state != "done":
            raise HTTPException(409, f"transfer {transfer_id} is no finished download")
        return FileResponse(transfer.path, media_type="application/octet-stream")
