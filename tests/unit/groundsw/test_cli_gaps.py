"""`groundsw tm gaps [--all]`: the gaps in a payload's archive, read without a link."""

from __future__ import annotations

from pathlib import Path

import pytest

from groundsw.archive import Archive
from groundsw.cli import main
from groundsw.gaps import Gap, GapState
from groundsw.station.config import payload_data_dir
from telemetry_defs.loader import default_dictionary

D = default_dictionary()
T0 = 1_795_600_800.25  # 2026-11-25T10:00:00.250Z


def archive_with(data_dir: Path, payload: str, gaps: list[Gap]) -> None:
    with Archive(payload_data_dir(data_dir, payload), D) as archive:
        for gap in gaps:
            archive.add_gap(gap)


def gaps_output(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out.splitlines()


GAPS = [
    Gap(100, 1201, 4, 1205, T0, T0 + 5, GapState.RECOVERED, attempts=1),
    Gap(100, 16383, 3, 2, T0 + 60, T0 + 64, GapState.OPEN),
    Gap(100, 502, None, 0, T0 + 100, T0 + 130.5, GapState.RETRIEVING, attempts=1),
    Gap(100, 40, 2, 42, T0 + 200, T0 + 201, GapState.UNRECOVERABLE, attempts=3,
        reason="2 packets still missing after 3 retrievals"),
]  # fmt: skip


def test_the_gaps_still_open_with_their_counts_times_state_and_attempts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive_with(tmp_path, "payload", GAPS)

    lines = gaps_output(capsys, "--data-dir", str(tmp_path), "tm", "gaps")

    assert lines[0].split() == [
        "APID", "missing", "sequence", "counts", "onboard", "time", "(UTC)", "state", "attempts"
    ]  # fmt: skip
    assert lines[1].split() == ["100", "16383..1", "(3)", "2026-11-25T10:01:00.250Z", "..",
                                "2026-11-25T10:01:04.250Z", "open", "0"]  # fmt: skip
    assert lines[2].split() == ["100", "from", "502,", "number", "unknown", "(restart)",
                                "2026-11-25T10:01:40.250Z", "..", "2026-11-25T10:02:10.750Z",
                                "retrieving", "1"]  # fmt: skip
    assert len(lines) == 3
    # The columns line up.
    assert {line.index("20") for line in lines[1:]} == {lines[0].index("onboard")}


def test_all_adds_those_recovered_and_given_up_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive_with(tmp_path, "fm1", GAPS)

    lines = gaps_output(capsys, "--data-dir", str(tmp_path), "--payload", "fm1", "tm", "gaps",
                        "--all")  # fmt: skip

    assert [line.split()[1] for line in lines[1:]] == ["1201..1204", "16383..1", "from", "40..41"]
    assert lines[1].split()[-2:] == ["recovered", "1"]
    assert lines[4].endswith("unrecoverable  3  (2 packets still missing after 3 retrievals)")


def test_no_gap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive_with(tmp_path, "payload", [GAPS[0]])
    assert gaps_output(capsys, "--data-dir", str(tmp_path), "tm", "gaps") == ["no gap"]
    assert gaps_output(capsys, "--data-dir", str(tmp_path / "none"), "tm", "gaps", "--all") == [
        "no gap"
    ]
