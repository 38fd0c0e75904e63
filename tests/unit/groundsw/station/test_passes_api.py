"""The station's pass routes over a pass log on disk: the contacts, the results and a fetched
result's octets; 404 for a payload, a pass log or a result the station does not have."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from groundsw.station.config import PayloadConfig, StationConfig
from groundsw.station.pass_log import PASS_LOG_FILE, PassLog
from groundsw.station.passes_api import add_pass_routes
from groundsw.station.station import Station


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[TestClient, PassLog]]:
    station = Station(StationConfig((PayloadConfig("fm1", "loop://"),), data_dir=tmp_path))
    # The routes look the payload up among the links, then read its pass operations' log.
    station.links["fm1"] = object()  # type: ignore[assignment]
    station.links["fm2"] = object()  # type: ignore[assignment]
    log = PassLog(tmp_path / PASS_LOG_FILE)
    station.passes["fm1"] = SimpleNamespace(pass_log=log)  # type: ignore[assignment]
    app = FastAPI()
    add_pass_routes(app, station)
    with TestClient(app) as http:
        yield http, log
    log.close()


def test_contacts_results_and_a_results_octets(
    logged: tuple[TestClient, PassLog], tmp_path: Path
) -> None:
    http, log = logged
    first = log.begin_contact(100.0)
    log.update_contact(first, los=103.0, commands_sent=2, packets=40, open_gaps=0)
    log.add_result(first, 5)
    log.begin_contact(200.0)
    log.note_job(1, "SUCCEEDED", True)
    log.note_result(1, "job-1.npy", 5, "ab" * 32)
    (tmp_path / "job-1.npy").write_bytes(b"12345")
    log.fetched(1, tmp_path / "job-1.npy", 101.0, first)
    log.note_job(2, "SUCCEEDED", True)
    contacts = http.get("/api/v1/payloads/fm1/contacts").json()
    assert [(c["number"], c["los"], c["results"]) for c in contacts] == [
        (1, 103.0, 1),
        (2, None, 0),
    ]
    assert [c["number"] for c in http.get("/api/v1/payloads/fm1/contacts?limit=1").json()] == [2]
    results = http.get("/api/v1/payloads/fm1/results").json()
    assert [(r["job_id"], r["contact"], r["path"]) for r in results] == [
        (1, 1, str(tmp_path / "job-1.npy")),
        (2, None, None),
    ]
    assert http.get("/api/v1/payloads/fm1/results/1/content").content == b"12345"


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/v1/payloads/fm9/contacts", "no payload named 'fm9'"),
        ("/api/v1/payloads/fm2/results", "the station keeps no pass log for fm2"),
        ("/api/v1/payloads/fm1/results/2/content", "no result of job 2 of fm1 on the ground"),
    ],
)
def test_what_the_station_does_not_have_is_404_in_one_sentence(
    logged: tuple[TestClient, PassLog], path: str, detail: str
) -> None:
    http, log = logged
    log.note_job(2, "SUCCEEDED", True)
    answer = http.get(path)
    assert answer.status_code == 404 and answer.json()["detail"] == detail
