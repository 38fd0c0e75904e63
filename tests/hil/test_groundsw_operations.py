"""The operator's commands against a payload on the emulated link: `groundsw cmd`, `tm live`,
the archive behind `tm query`, `tm plot` and `events`, and every way they refuse bad input."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from hil.bench import Bench
from telemetry_defs.loader import DEFAULT_DIRECTORY, default_dictionary
from tests.harness import run_tool
from tests.hil.onboard import with_quick_idle

pytestmark = pytest.mark.hil


def one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def bench(make_bench: Callable[..., Bench], tmp_path: Path) -> Bench:
    """At 921600 baud with an idle frame every 0.14 s: each groundsw command is a new session
    that waits for the payload's CLCW (half a second on average at the ICD's 1 s idle interval)
    and for its reports; what is checked here is what the operator is told."""
    return make_bench(baud=921600, flight_args=with_quick_idle(tmp_path, 921600))


def groundsw(bench: Bench, data: Path, *args: str) -> tuple[int, str, str]:
    result = run_tool(
        "groundsw", "--port", bench.ground_port, "--baud", str(bench.baud),
        "--data-dir", str(data), *args,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def test_commands_live_table_and_archive(bench: Bench, tmp_path: Path) -> None:
    data = tmp_path / "ground"
    d = default_dictionary()
    code, out, err = groundsw(bench, data, "cmd", "HK_GENERATE", "sids=PAYLOAD_STATUS,LINK_STATUS")
    assert code == 0, err
    assert "completed" in out
    assert f"DICTIONARY_HASH=0x{d.hash32:08X}" in out
    assert "TM[3,25] LINK_STATUS" in out and "FARM_STATE=OPEN" in out

    code, out, err = groundsw(bench, data, "cmd", "PARAM_SET", "DOWNLINK_IDLE_INTERVAL=700")
    assert code == 0, err
    code, out, err = groundsw(bench, data, "cmd", "PARAM_REPORT", "ids=DOWNLINK_IDLE_INTERVAL")
    assert code == 0, err
    assert "DOWNLINK_IDLE_INTERVAL=700 ms" in out

    code, out, err = groundsw(bench, data, "tm", "live", "--duration", "2", "--refresh")
    assert code == 0, err
    lines = out.splitlines()
    assert "[PAYLOAD_STATUS]" in lines and "[LINK_DISCARDS]" in lines
    uptime = next(line for line in lines if line.strip().startswith("UPTIME"))
    assert uptime.split()[1].isdigit() and "—" not in uptime

    # Everything received above is in the archive, readable without the link.
    offline = ["--port", "/dev/null/none", "--data-dir", str(data)]
    result = run_tool(
        "groundsw", *offline, "tm", "query", "DOWNLINK_IDLE_INTERVAL", "--since", "10m"
    )
    assert result.returncode == 0, result.stderr
    # Ground receipt, then onboard generation, then the value.
    assert result.stdout.splitlines()[-1].split()[2:] == ["700", "ms"]
    result = run_tool("groundsw", *offline, "events", "--since", "10m", "--severity", "low")
    assert result.returncode == 0, result.stderr
    assert "LOW    PARAMETER_SET  id=DOWNLINK_IDLE_INTERVAL" in result.stdout
    assert "HK_CHANGED" not in result.stdout  # informative, below the severity asked for
    # The same records for other tools, with both times.
    query = ["tm", "query", "DOWNLINK_IDLE_INTERVAL", "--since", "10m", "--format", "csv"]
    result = run_tool("groundsw", *offline, *query)
    assert result.returncode == 0, result.stderr
    last = list(csv.DictReader(result.stdout.splitlines()))[-1]
    assert (last["value"], last["unit"], last["limit"]) == ("700", "ms", "nominal")
    assert last["onboard"] <= last["received"]  # ISO texts of one clock: generated, then received
    events = ["events", "--since", "10m", "--severity", "low", "--format", "json"]
    result = run_tool("groundsw", *offline, *events)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert any(
        r["event"] == "PARAMETER_SET" and r["severity"] == "LOW" and r["onboard"] for r in records
    ), records
    png = tmp_path / "plot.png"
    result = run_tool(
        "groundsw",
        *offline,
        "tm",
        "plot",
        "UPTIME",
        "DISK_USED",
        "--out",
        str(png),
        "--since",
        "1h",
    )
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["cmd", "HK_SET_INTERVAL", "sid=1", "interval_ms=5"], "interval_ms: 5 is outside"),
        (["cmd", "HK_GENRATE", "sids=1"], "did you mean HK_GENERATE?"),
        (["cmd", "PARAM_SET", "UPTIME=4"], "parameter UPTIME is not settable"),
        (["cmd", "HK_ENABLE", "sids"], "'sids' is not key=value"),
        (["tm", "query", "UPTIM"], "no parameter 'UPTIM' in the dictionary (did you mean UPTIME?)"),
        (["tm", "query", "UPTIME", "--since", "yesterday"], "'yesterday' is not a time"),
        (["tm", "plot", "UPTIME", "--out", "x.bmp"], "use one of .png, .svg, .pdf"),
        (["events", "--follow", "--format", "json"], "--format json exports the archive only"),
        (
            ["tm", "query", "UPTIME", "--format", "xml"],
            "unknown format 'xml': use text, csv or json",
        ),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(
    tmp_path: Path, args: list[str], sentence: str
) -> None:
    # No payload is needed: every one of these is refused before the link is opened.
    result = run_tool("groundsw", "--port", "/dev/null/none", "--data-dir", str(tmp_path), *args)
    assert result.returncode == 2
    assert sentence in one_sentence(result.stderr)


def test_a_dictionary_mismatch_refuses_commands_and_warns_on_telemetry(
    bench: Bench, tmp_path: Path
) -> None:
    other = tmp_path / "dictionary"
    shutil.copytree(DEFAULT_DIRECTORY, other)
    events = other / "events.toml"
    events.write_text(events.read_text().replace('severity = "low"', 'severity = "medium"', 1))
    data = tmp_path / "ground"
    code, out, err = groundsw(
        bench, data, "--dictionary", str(other), "cmd", "HK_GENERATE", "sids=1"
    )
    assert code == 4
    sentence = one_sentence(err)
    assert "the payload's dictionary (hash 0x" in sentence and "use --force" in sentence
    assert "HK_GENERATE" not in out  # nothing was sent
    code, out, err = groundsw(
        bench, data, "--dictionary", str(other), "tm", "live", "--duration", "2", "--refresh"
    )
    assert code == 0, err
    assert "WARNING DICTIONARY MISMATCH" in err
    assert "--refresh not sent" in err  # TC[3,27] waits for --force like any command
    assert "DICTIONARY MISMATCH" in out
    code, out, err = groundsw(
        bench, data, "--dictionary", str(other), "cmd", "--force", "HK_GENERATE", "sids=1"
    )
    assert code == 0, err
