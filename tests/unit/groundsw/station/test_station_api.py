"""The station's API on a link that stays down (a pyserial loop:// port, no payload): commands
are checked against the dictionary, queued, listed, cancelled, recorded; the link socket greets
a client with its own source ID and carries its command's events. The OpenAPI document is the
checked-in one and valid by an OpenAPI validator we did not write."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from groundsw.archive import Archive
from groundsw.session import LinkSession
from groundsw.station import link_protocol as wire
from groundsw.station.api import create_app
from groundsw.station.config import PayloadConfig, StationConfig
from groundsw.station.owned_link import OwnedLink
from groundsw.station.station import FIRST_CLIENT_SOURCE_ID, Station
from spacelink.spacepacket import PusTc
from telemetry_defs.loader import default_dictionary
from tools.api_export import openapi_text

D = default_dictionary()
REPO = Path(__file__).resolve().parents[4]


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return Station(StationConfig((PayloadConfig("fm1", "loop://"),), data_dir=tmp_path))


@pytest.fixture
def client(station: Station, tmp_path: Path) -> Iterator[TestClient]:
    port = serial.serial_for_url("loop://", timeout=0.05)
    archive = Archive(tmp_path / "fm1", D)
    link = OwnedLink("fm1", LinkSession(port), D, archive).start()
    station.links["fm1"] = link
    try:
        with TestClient(create_app(station)) as http:
            yield http
    finally:
        link.close()
        archive.close()
        port.close()


def test_a_down_link_queues_commands_which_can_be_cancelled(client: TestClient) -> None:
    summary = client.get("/api/v1/payloads").json()
    assert [(s["name"], s["link"]["up"], s["link"]["queued"]) for s in summary] == [
        ("fm1", False, 0)
    ]
    sent = client.post(
        "/api/v1/payloads/fm1/commands",
        json={"command": "HK_GENERATE", "arguments": ["sids=PAYLOAD_STATUS"], "client": "ops"},
    )
    assert sent.status_code == 202
    status = sent.json()
    assert status["state"] == "queued" and status["command"] == "HK_GENERATE"
    assert [s["stage"] for s in status["stages"]] == ["queued"]
    queue = client.get("/api/v1/payloads/fm1/queue").json()
    assert [(q["request"], q["command"], q["client"]) for q in queue] == [
        (status["request"], "HK_GENERATE", "ops")
    ]
    assert client.delete(f"/api/v1/payloads/fm1/queue/{status['request']}").status_code == 204
    assert client.delete(f"/api/v1/payloads/fm1/queue/{status['request']}").status_code == 404
    final = client.get(f"/api/v1/payloads/fm1/commands/{status['request']}").json()
    assert final["state"] == "dropped"
    assert final["stages"][-1]["detail"] == "cancelled in the queue"
    history = client.get("/api/v1/payloads/fm1/history").json()
    assert [(h["command"], h["client"], h["outcome"]) for h in history] == [
        ("HK_GENERATE", "ops", "dropped: cancelled in the queue")
    ]
    assert [s["stage"] for s in history[0]["stages"]] == ["queued", "dropped"]


def test_a_long_poll_answers_as_the_station_stops(client: TestClient, station: Station) -> None:
    sent = client.post(
        "/api/v1/payloads/fm1/commands",
        json={"command": "HK_GENERATE", "arguments": ["sids=PAYLOAD_STATUS"]},
    ).json()
    answers: list[dict[str, object]] = []
    poll = threading.Thread(
        target=lambda: answers.append(
            client.get(
                f"/api/v1/payloads/fm1/commands/{sent['request']}", params={"wait": 60}
            ).json()
        )
    )
    poll.start()
    time.sleep(0.5)
    assert poll.is_alive()  # the command waits in the queue: so does the poll
    station.stopping.set()
    poll.join(10)
    assert not poll.is_alive()
    assert answers[0]["state"] == "queued"


@pytest.mark.parametrize(
    ("path", "body", "code", "detail"),
    [
        ("/api/v1/payloads/fm9/commands", {"command": "HK_GENERATE"}, 404, "no payload named"),
        ("/api/v1/payloads/fm1/commands", {"command": "NO_SUCH"}, 422, "NO_SUCH"),
        (
            "/api/v1/payloads/fm1/commands",
            {"command": "HK_SET_INTERVAL", "arguments": ["sid=PAYLOAD_STATUS", "interval_ms=x"]},
            422,
            "interval_ms",
        ),
    ],
)
def test_bad_requests_get_their_code_and_one_sentence(
    client: TestClient, path: str, body: dict[str, object], code: int, detail: str
) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == code
    assert detail in answer.json()["detail"]
    assert client.get("/api/v1/payloads/fm1/queue").json() == []


def test_the_link_socket_greets_and_carries_a_commands_events(client: TestClient) -> None:
    with client.websocket_connect("/api/v1/payloads/fm1/link?client=tester") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["source_id"] == FIRST_CLIENT_SOURCE_ID
        ws.send_text(wire.encode_message(wire.command_message(7, 17, 1, b"", 15)))
        messages = [ws.receive_json(), ws.receive_json()]
        kinds = {m["type"] for m in messages}
        assert kinds == {"event", "submitted"}
        submitted = next(m for m in messages if m["type"] == "submitted")
        tc = PusTc.unpack(bytes.fromhex(submitted["packet"]))
        assert (tc.service, tc.subtype, tc.source_id, submitted["tag"]) == (
            17, 1, FIRST_CLIENT_SOURCE_ID, 7,
        )  # fmt: skip
        event = next(m for m in messages if m["type"] == "event")
        assert event["kind"] == "queued" and event["request"] == tc.request_id.pack().hex()
        ws.send_text(json.dumps({"op": "command", "tag": 8, "service": 999}))
        refused = ws.receive_json()
        assert refused == {
            "type": "refused",
            "tag": 8,
            "error": "a command needs service, subtype, data (hex) and ack",
        }
    with client.websocket_connect("/api/v1/payloads/fm1/link") as again:
        # The first client's source ID is free again.
        assert again.receive_json()["source_id"] == FIRST_CLIENT_SOURCE_ID


def test_the_openapi_document_is_current_and_valid() -> None:
    checked_in = (REPO / "docs" / "ground-api.json").read_text()
    assert checked_in == openapi_text(), "docs/ground-api.json is stale: run make docs"
    validate(json.loads(checked_in))
