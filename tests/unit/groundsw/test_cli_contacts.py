"""`groundsw contacts` and `groundsw results`: the station's pass log read without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from groundsw.cli import main
from groundsw.station.config import payload_data_dir
from groundsw.station.pass_log import PASS_LOG_FILE, PassLog

T0 = 1_795_600_800.25  # 2026-11-25T10:00:00.250Z


def output(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out.splitlines()


def pass_log(data: Path) -> PassLog:
    return PassLog(payload_data_dir(data, "payload") / PASS_LOG_FILE)


def test_contacts_list_each_pass_with_what_it_carried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pass_log(tmp_path) as log:
        one = log.begin_contact(T0)
        log.add_result(one, 168)
        log.update_contact(one, los=T0 + 2.5, commands_sent=40, packets=900, open_gaps=0)
        log.begin_contact(T0 + 30)
    lines = output(capsys, "--data-dir", str(tmp_path), "contacts")
    assert lines[0].split()[:3] == ["PASS", "AOS", "(UTC)"]
    assert lines[1].split() == [
        "1", "2026-11-25T10:00:00.250Z", "2026-11-25T10:00:02.750Z", "2.5", "s", "40", "900", "1",
        "168", "0",
    ]  # fmt: skip
    assert "under way" in lines[2]
    assert lines[-1] == "2 passes, 1 results fetched (168 octets)"
    last = output(capsys, "--data-dir", str(tmp_path), "contacts", "--limit", "1")
    assert last[1].split()[0] == "2" and len(last) == 3


def test_results_say_where_each_result_is_and_which_are_still_to_fetch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pass_log(tmp_path) as log:
        log.note_job(1, "SUCCEEDED", True)
        log.note_result(1, "job-1.npy", 168, "ab" * 32)
        log.fetched(1, tmp_path / "job-1.npy", T0, 2)
        log.note_job(2, "SUCCEEDED", True)
        log.note_job(3, "RUNNING", False)
    lines = output(capsys, "--data-dir", str(tmp_path), "results")
    assert lines[1].split()[:5] == ["1", "SUCCEEDED", "job-1.npy", "168", "abababababababab"]
    assert lines[1].endswith(str(tmp_path / "job-1.npy"))
    assert lines[-1] == (
        "3 jobs heard of: 1 results on the ground, 1 to fetch, 1 not finished when last heard of"
    )
    missing = output(capsys, "--data-dir", str(tmp_path), "results", "--missing")
    assert [line.split()[0] for line in missing[1:-1]] == ["2"]


def test_without_a_pass_log_the_answer_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data-dir", str(tmp_path), "contacts"]) == 2
    err = capsys.readouterr().err
    assert "no pass log for payload" in err and err.count("\n") == 1
