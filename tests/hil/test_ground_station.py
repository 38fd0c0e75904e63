"""The ground station through the real path: `groundsw serve` owns the emulated link of a payload
process; groundsw commands, an event follower, a script over HTTP and a link-socket client work
on it at once; each client gets only its own replies; commands sent while the link is cut wait in
the station's queue (one cancelled) and go out when it is back; the archive and the command
history hold everything."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import unix_connect

from groundsw.archive import Archive
from groundsw.station.config import payload_data_dir
from groundsw.station.remote import ServiceLink
from hil.bench import Bench
from spacelink.pus import ARE_YOU_ALIVE, ARE_YOU_ALIVE_REPORT, TEST_SERVICE
from telemetry_defs.loader import default_dictionary
from tests.harness import BIN
from tests.hil.station import (
    PAYLOAD,
    archived,
    groundsw,
    http,
    sequence_count,
    start_serve,
    wait_link_up,
)

pytestmark = pytest.mark.hil

D = default_dictionary()


def test_many_clients_at_once_each_with_its_own_replies(
    station: tuple[Bench, Path, Path], spawn: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    _, data, sock = station
    with http(sock) as api:
        wait_link_up(api)
        follower = spawn([str(BIN / "groundsw"), "--data-dir", str(data), "events", "--follow"])
        # A client on the link socket, listening to everything it is given meanwhile, and a
        # script reading decoded live telemetry.
        link = ServiceLink("http://station", PAYLOAD, "test client", sock)
        seen = link.subscribe()
        telemetry = unix_connect(
            str(sock), f"ws://station/api/v1/payloads/{PAYLOAD}/telemetry"
        ).__enter__()
        ping = [str(BIN / "groundsw"), "--data-dir", str(data), "ping", "--count", "4"]
        pings = [spawn(ping) for _ in range(2)]
        # A script over HTTP: parameter reports, each waited for.
        script_results: list[dict[str, Any]] = []

        def script() -> None:
            for _ in range(6):
                sent = api.post(
                    f"/api/v1/payloads/{PAYLOAD}/commands",
                    json={
                        "command": "PARAM_REPORT",
                        "arguments": ["ids=UPTIME"],
                        "client": "script",
                    },
                )
                assert sent.status_code == 202, sent.text
                request = sent.json()["request"]
                with unix_connect(
                    str(sock), f"ws://station/api/v1/payloads/{PAYLOAD}/commands/{request}/stages"
                ) as stages:
                    streamed = [json.loads(text) for text in stages]
                done = api.get(
                    f"/api/v1/payloads/{PAYLOAD}/commands/{request}", params={"wait": 20}
                )
                script_results.append(done.json())
                assert [x["stage"] for x in streamed] == [x["stage"] for x in done.json()["stages"]]
                assert streamed[-1]["state"] == "completed"

        worker = threading.Thread(target=script)
        worker.start()
        mine = []
        for _ in range(4):
            record = link.command(TEST_SERVICE, ARE_YOU_ALIVE)
            assert record.finished.wait(30) and record.failure is None
            mine.append(record)
        worker.join(60)
        for ping in pings:
            out, err = ping.communicate(timeout=60)
            assert ping.returncode == 0, err
            assert "4 pings sent, 4 answered, 0 lost" in out
            assert "through the ground station (payload fm1)" in out
        # The script's commands completed, each with its own PARAM_VALUES reply.
        assert [r["state"] for r in script_results] == ["completed"] * 6
        assert all([x["name"] for x in r["replies"]] == ["PARAM_VALUES"] for r in script_results)
        # This client saw its own four TM[17,2] replies and nobody else's.
        received = []
        while not seen.empty():
            received.append(seen.get_nowait().tm)
        replies = [tm for tm in received if (tm.service, tm.subtype) == (17, ARE_YOU_ALIVE_REPORT)]
        assert len(replies) == 4
        assert {tm.destination_id for tm in received} <= {0, link.source_id}
        link.close()
        decoded: list[dict[str, Any]] = []
        deadline = time.monotonic() + 8  # PAYLOAD_STATUS goes out every 5 s
        while "PAYLOAD_STATUS" not in {d["name"] for d in decoded}:
            decoded.append(json.loads(telemetry.recv(max(0.1, deadline - time.monotonic()))))
        telemetry.close()
        # Housekeeping the payload sent to everyone meanwhile, decoded; no one's replies.
        assert "PAYLOAD_STATUS" in {d["name"] for d in decoded}
        assert not {d["name"] for d in decoded} & {"ARE_YOU_ALIVE_REPORT", "PARAM_VALUES"}
        follower.send_signal(signal.SIGINT)
        try:
            follower.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            follower.kill()
            out, err = follower.communicate()
            kept_on = f"events --follow kept on after SIGINT: {out[-2000:]}{err}"
            raise AssertionError(kept_on) from None
        assert follower.returncode == 0

        status = groundsw(data, "status")
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith(f"{PAYLOAD:<12} UP ")
        history = groundsw(data, "history", "--since", "5m")
        assert history.returncode == 0, history.stderr
        lines = history.stdout.splitlines()
        assert sum("ARE_YOU_ALIVE" in line and "groundsw ping" in line for line in lines) == 8
        assert sum("by test client" in line for line in lines) == 4
        assert sum("PARAM_REPORT" in line and "by script" in line for line in lines) == 6
        assert all("completed" in line for line in lines)

    # Every TM packet the payload sent meanwhile is in the archive once: no gap, no repeat.
    sequence = [sequence_count(p) for p in archived(data)]
    assert sequence == list(range(sequence[0], sequence[0] + len(sequence)))


def test_commands_wait_for_a_cut_link_and_can_be_cancelled(
    station: tuple[Bench, Path, Path],
) -> None:
    bench, data, sock = station
    with http(sock) as api:
        wait_link_up(api)
        bench.link.cut(10.0)
        deadline = time.monotonic() + 10
        while api.get(f"/api/v1/payloads/{PAYLOAD}").json()["link"]["up"]:
            assert time.monotonic() < deadline, "the station did not see the cut"
            time.sleep(0.2)
        # A groundsw command meanwhile says it is queued, and that it was not sent.
        early = groundsw(data, "--timeout", "2", "cmd", "PARAM_REPORT", "ids=UPTIME")
        assert early.returncode == 3
        assert "queued" in early.stdout and "link down: sent when the link is back" in early.stdout
        assert "the link is down and it was not sent" in early.stderr
        # A query says why no answer came (not the keys'), and is not asked again: one waits.
        query = groundsw(data, "--timeout", "1", "model", "list")
        assert query.returncode == 3
        assert "waits in the ground station's queue" in query.stderr
        assert "uplink key" not in query.stderr
        sent = [
            api.post(
                f"/api/v1/payloads/{PAYLOAD}/commands",
                json={"command": "LINK_SEQUENCE_CHECK", "arguments": [f"number={n}", "filler="]},
            ).json()
            # The payload expects 0, 1, 2...: the third goes out as 1 again, and is in order
            # only if the second, cancelled, never reached it.
            for n in (0, 1, 1)
        ]
        assert [s["state"] for s in sent] == ["queued"] * 3
        refused = api.post(
            f"/api/v1/payloads/{PAYLOAD}/commands",
            json={"command": "LINK_SEQUENCE_CHECK", "arguments": ["number=1"]},
        )
        assert refused.status_code == 422
        assert refused.json()["detail"] == "LINK_SEQUENCE_CHECK needs 'filler'"
        queued = [item["request"] for item in api.get(f"/api/v1/payloads/{PAYLOAD}/queue").json()]
        assert queued[2:] == [s["request"] for s in sent]  # behind groundsw cmd's and query's
        cancelled = groundsw(data, "queue", "--cancel", sent[1]["request"])
        assert cancelled.returncode == 0, cancelled.stderr
        listed = groundsw(data, "queue")
        assert sent[1]["request"] not in listed.stdout and sent[2]["request"] in listed.stdout
        finals = [
            api.get(
                f"/api/v1/payloads/{PAYLOAD}/commands/{s['request']}", params={"wait": 30}
            ).json()
            for s in sent
        ]
    assert [f["state"] for f in finals] == ["completed", "dropped", "completed"]
    assert finals[1]["stages"][-1]["detail"] == "cancelled in the queue"
    # The command of the groundsw that gave up went out too, first, once the link was back.
    history = groundsw(data, "history", "--since", "5m").stdout.splitlines()
    gave_up = [line for line in history if "groundsw cmd" in line]
    assert len(gave_up) == 1 and "PARAM_REPORT" in gave_up[0] and "completed" in gave_up[0]
    assert groundsw(data, "queue").stdout.startswith("no command waiting")


def test_two_payloads_on_one_station_never_cross(make_bench: Any, tmp_path: Path) -> None:
    benches: list[Bench] = [make_bench(baud=115200) for _ in range(2)]
    data, sock = tmp_path / "data", tmp_path / "station.sock"
    config = tmp_path / "station.toml"
    config.write_text(
        f'[station]\nlisten = "unix:{sock}"\ndata_dir = "{data}"\n'
        + "".join(
            f'[[payload]]\nname = "fm{n}"\nport = "{b.ground_port}"\nkeys = "{b.key_file}"\n'
            for n, b in enumerate(benches, 1)
        )
    )
    serve = start_serve(["serve", "--config", str(config)], data)
    try:
        with http(sock) as api:
            for name in ("fm1", "fm2"):
                deadline = time.monotonic() + 20
                while not api.get(f"/api/v1/payloads/{name}").json()["link"]["up"]:
                    assert time.monotonic() < deadline, f"{name}'s link did not come up"
                    time.sleep(0.2)
            # Alternately: each payload's sequence check goes 0, 1, 2 on its own counter.
            for n in range(3):
                for name in ("fm1", "fm2"):
                    sent = api.post(
                        f"/api/v1/payloads/{name}/commands",
                        json={
                            "command": "LINK_SEQUENCE_CHECK",
                            "arguments": [f"number={n}", "filler="],
                        },
                    ).json()
                    done = api.get(
                        f"/api/v1/payloads/{name}/commands/{sent['request']}", params={"wait": 20}
                    ).json()
                    assert done["state"] == "completed", (name, n, done)
            status = groundsw(data, "status")
            assert status.returncode == 0, status.stderr
            lines = status.stdout.splitlines()
            assert [line.split()[:2] for line in lines] == [["fm1", "UP"], ["fm2", "UP"]]
            assert [line.split()[2] for line in lines] == [b.ground_port for b in benches]
            for name, bench in (("fm1", benches[0]), ("fm2", benches[1])):
                pinged = groundsw(data, "--payload", name, "ping")
                assert pinged.returncode == 0, pinged.stderr
                assert (
                    f"{bench.ground_port} through the ground station (payload {name})"
                    in pinged.stdout
                )
            # Without --payload a command cannot guess which one is meant.
            unnamed = groundsw(data, "ping")
            assert unnamed.returncode == 2
        for name in ("fm1", "fm2"):
            with Archive(payload_data_dir(data, name), D) as archive:
                history = archive.commands()
            # The station's own: the payload's dictionary asked once when the link came up.
            assert [c.name for c in history if c.client == "ground station"] == ["PARAM_REPORT"]
            assert [c.name for c in history if c.client != "ground station"] == [
                "LINK_SEQUENCE_CHECK"
            ] * 3 + ["ARE_YOU_ALIVE"]
        serve.send_signal(signal.SIGUSR1)  # every thread's stack, and the station carries on
        assert groundsw(data, "status").returncode == 0
    finally:
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=20)
    assert serve.returncode == 0, err
    assert "(most recent call first)" in err and "_supervise" in err


def test_a_script_uploads_and_downloads_files_through_the_station(
    station: tuple[Bench, Path, Path],
) -> None:
    _, data, sock = station
    content = bytes(range(256)) * 80  # 20 kB
    with http(sock) as api:
        wait_link_up(api)

        def finished(transfer: dict[str, Any]) -> dict[str, Any]:
            deadline = time.monotonic() + 60
            while transfer["state"] == "running":
                assert time.monotonic() < deadline, transfer
                time.sleep(0.2)
                transfer = api.get(f"/api/v1/payloads/{PAYLOAD}/transfers/{transfer['id']}").json()
            return transfer

        up = api.put(f"/api/v1/payloads/{PAYLOAD}/files/blob.bin", content=content)
        assert up.status_code == 202, up.text
        done = finished(up.json())
        assert (done["state"], done["size"]) == ("done", len(content)), done
        assert done["sha256"] == hashlib.sha256(content).hexdigest()
        down = finished(
            api.post(f"/api/v1/payloads/{PAYLOAD}/downloads", json={"name": "blob.bin"}).json()
        )
        assert down["state"] == "done", down
        fetched = api.get(f"/api/v1/payloads/{PAYLOAD}/transfers/{down['id']}/content")
        assert fetched.content == content
        missing = finished(
            api.post(f"/api/v1/payloads/{PAYLOAD}/downloads", json={"name": "nothing.bin"}).json()
        )
        assert missing["state"] == "failed" and "nothing.bin" in missing["error"]
    listed = groundsw(data, "file", "list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[-1] == "blob.bin" for line in listed.stdout.splitlines())


def test_the_station_rides_out_a_payload_restart(station: tuple[Bench, Path, Path]) -> None:
    bench, data, sock = station
    with http(sock) as api:
        wait_link_up(api)
        assert bench.stop_flight() == 0
        bench.start_flight()
        # The restarted payload's FARM is back at V(R) = 0: the station starts COP-1 again
        # by itself, and the next command, from any client, goes through.
        pinged = groundsw(data, "ping", "--timeout", "30")
        assert pinged.returncode == 0, pinged.stderr
        state = api.get(f"/api/v1/payloads/{PAYLOAD}").json()["link"]
        assert state["up"] and state["cop1"] == "active"
        assert state["refusals"] is None  # no frame of ours refused across the restart


def test_a_client_rides_out_a_station_restart(make_bench: Any, tmp_path: Path) -> None:
    bench: Bench = make_bench(baud=115200)
    data, sock = tmp_path / "data", tmp_path / "station.sock"
    serve = ["--port", bench.ground_port, "--data-dir", str(data),
             "serve", "--name", PAYLOAD, "--listen", f"unix:{sock}"]  # fmt: skip

    def start() -> subprocess.Popen[str]:
        return start_serve(serve, data)

    first = start()
    link = ServiceLink("http://station", PAYLOAD, "live view", sock)
    try:
        with http(sock) as api:
            wait_link_up(api)
        # A script's live telemetry feed, open across the stop: closed by the station (1012,
        # restarting), which neither waits for it nor logs a traceback over it.
        feed = unix_connect(str(sock), uri=f"ws://station/api/v1/payloads/{PAYLOAD}/telemetry")
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=20)
        assert first.returncode == 0 and "Traceback" not in err, err
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                feed.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        feed.close()
        deadline = time.monotonic() + 5
        while link.error is None:
            assert time.monotonic() < deadline, "the client did not notice the station stop"
            time.sleep(0.1)
        second = start()
        try:
            deadline = time.monotonic() + 20
            while link.error is not None:
                assert time.monotonic() < deadline, "the client did not connect again"
                time.sleep(0.2)
            with http(sock) as api:
                wait_link_up(api)
            record = link.command(TEST_SERVICE, ARE_YOU_ALIVE)
            assert record.finished.wait(20) and record.failure is None
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0
    finally:
        link.close()
