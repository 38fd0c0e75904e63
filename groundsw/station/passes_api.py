"""The station's passes through its API: each contact (AOS, LOS, what it carried) and the
results fetched pass by pass, with their content."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from groundsw.station.http_lookup import link_or_404
from groundsw.station.pass_log import PassLog, PassLogError
from groundsw.station.station import Station

PREFIX = "/api/v1"
T = TypeVar("T")


class ContactItem(BaseModel):
    number: int = Field(description="Passes as the station lived them, counted from 1.")
    aos: float = Field(description="UNIX time of the first frame of the pass.")
    los: float | None = Field(description="UNIX time of its last frame; null while it lasts.")
    commands_sent: int
    packets: int = Field(description="TM packets received during the pass.")
    results: int = Field(description="Job results fetched during the pass.")
    result_octets: int
    open_gaps: int | None = Field(description="Telemetry gaps still open at LOS.")


class ResultItem(BaseModel):
    job_id: int
    state: str = Field(description="The job's state when last heard of (JobState).")
    final: bool
    finished: float = Field(description="Onboard UNIX time it ended; 0: not yet or not known.")
    result: str = Field(description="The result's onboard file name; empty: none.")
    size: int
    sha256: str = Field(description="Hex; the job's own, against which the file was checked.")
    path: str | None = Field(description="Where the station put it; null: not fetched (yet).")
    fetched_at: float | None
    contact: int | None = Field(description="The pass that brought it down.")
    failures: int
    last_error: str | None
    model: str = Field(description="What it ran, once the station asked: the model,")
    version: int = Field(description="its version")
    input: str = Field(description="and its input file.")


def add_pass_routes(app: FastAPI, station: Station) -> None:
    """The contact and result routes on `app`."""

    def read(name: str, what: Callable[[PassLog], T]) -> T:
        """`what` of payload `name`'s pass log; 404 without one, 503 when it cannot be read."""
        link_or_404(station, name)
        operations = station.passes.get(name)
        if operations is None:
            raise HTTPException(404, f"the station keeps no pass log for {name}")
        try:
            return what(operations.pass_log)
        except PassLogError as exc:
            raise HTTPException(503, str(exc)) from None

    @app.get(f"{PREFIX}/payloads/{{name}}/contacts", summary="The passes, with what each carried")
    def contacts(name: str, limit: int = Query(0, ge=0)) -> list[ContactItem]:
        return [ContactItem(**asdict(c)) for c in read(name, lambda log: log.contacts(limit))]

    @app.get(
        f"{PREFIX}/payloads/{{name}}/results",
        summary="The jobs heard of and their results, fetched or not",
    )
    def results(name: str) -> list[ResultItem]:
        return [ResultItem(**asdict(r)) for r in read(name, PassLog.jobs)]

    @app.get(
        f"{PREFIX}/payloads/{{name}}/results/{{job_id}}/content",
        summary="A fetched result's file",
        response_class=FileResponse,
    )
    def content(name: str, job_id: int) -> FileResponse:
        record = read(name, lambda log: log.job(job_id))
        if record is None or record.path is None or not Path(record.path).exists():
            raise HTTPException(404, f"no result of job {job_id} of {name} on the ground")
        return FileResponse(record.path, media_type="application/octet-stream")
