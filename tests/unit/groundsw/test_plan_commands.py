"""`groundsw plan` through its entry point: the plan's table, the naive plan beside it, the JSON
document, the bench's clock, every refusal one sentence with exit 2, and the planner and the
orbit package loaded only by this command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from groundsw.cli import EXIT_USAGE
from tests.unit.groundsw.cli_runs import groundsw, in_process, unix
from tests.unit.groundsw.plan.plan_samples import SAMPLE_TLE

# The day of docs/planning.md ("An example"), as its job file.
SAMPLE_JOBS = """\
[defaults]
model = "cnn"
result_octets = 400_000

[[jobs]]
name = "wildfire-1"
input = "tiles/wildfire-1.npy"
redundancy = "tmr"
run_s = 240.0
deadline = "+2h30m"

[[jobs]]
name = "wildfire-2"
input = "tiles/wildfire-2.npy"
redundancy = "tmr"
run_s = 240.0
deadline = "+2h30m"

[[jobs]]
name = "flood-1"
input = "tiles/flood-1.npy"
redundancy = "tmr"
priority = 10
run_s = 300.0
deadline = "+4h"

[[jobs]]
name = "flood-2"
input = "tiles/flood-2.npy"
redundancy = "tmr"
priority = 10
run_s = 300.0
deadline = "+4h"

[[jobs]]
name = "ships-1"
input = "tiles/ships-1.npy"
priority = 200
job_s = 600.0
deadline = "+5h30m"

[[jobs]]
name = "ships-2"
input = "tiles/ships-2.npy"
priority = 200
job_s = 600.0
deadline = "+7h"

[[jobs]]
name = "crops-1"
input = "tiles/crops-1.npy"
redundancy = "tmr"
priority = 100
run_s = 300.0
deadline = "+7h"

[[jobs]]
name = "crops-2"
input = "tiles/crops-2.npy"
redundancy = "tmr"
priority = 100
run_s = 300.0
deadline = "+8h30m"

[[jobs]]
name = "ice-1"
input = "tiles/ice-1.npy"
redundancy = "dmr"
priority = 50
run_s = 400.0
deadline = "+8h30m"

[[jobs]]
name = "ice-2"
input = "tiles/ice-2.npy"
redundancy = "dmr"
priority = 50
run_s = 400.0
deadline = "+10h"
"""
START = "2026-11-30T23:00:00Z"


@pytest.fixture
def jobs_file(tmp_path: Path) -> Path:
    path = tmp_path / "day.toml"
    path.write_text(SAMPLE_JOBS)
    return path


def plan_args(jobs: Path, *extra: str) -> list[str]:
    return ["plan", "--jobs", str(jobs), "--tle", str(SAMPLE_TLE), "--station", "48.1,11.6,550",
            "--from", START, "--soc", "55", *extra]  # fmt: skip


def test_the_plan_and_the_naive_plan_side_by_side(jobs_file: Path) -> None:
    done = groundsw(*plan_args(jobs_file, "--compare"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "station 48.1000N 11.6000E 550 m, minimum elevation 10 deg"
    assert lines[1] == (
        "plan from 2026-11-30T23:00:00Z for 24 h: 7 passes, 16 eclipses; times UTC (orbit)"
    )
    assert (
        lines[3] == "uploaded in the pass 11-30 23:13:39-23:18:23, first release at 11-30 23:14:39"
    )
    assert "10 jobs planned, 0 left out" in lines
    rows = [line for line in lines if line.split()[:1] and line.split()[0].startswith("wildfire")]
    assert len(rows) == 4  # the plan's rows and the comparison's
    wildfire = next(line for line in lines if line.startswith("wildfire-1 ") and "TMR" in line)
    # Computed in sunlight before the second pass, which takes it down before its deadline.
    # Released at 00:15:23, it waits for flood-1 (the battery below the slow level slows it).
    assert wildfire.split()[:7] == ["wildfire-1", "0", "TMR", "12m00s", "12-01", "00:15:23",
                                    "00:18:41-00:30:42"]  # fmt: skip
    assert wildfire.split()[7:] == ["sunlit", "12-01", "00:52:02", "#2", "12-01", "01:30:00",
                                    "met,", "37m58s", "early"]  # fmt: skip
    naive = next(line for line in lines if line.startswith("wildfire-1 ") and "TMR" not in line)
    assert naive.endswith("-                  MISSED: timed out on board")
    summary = {line[:38].strip(): line[38:].split() for line in lines if "  " in line[30:40]}
    assert summary["jobs on the ground by their deadline"] == ["10", "of", "10", "8", "of", "10"]
    assert summary["lowest battery charge"] == ["37.9", "%", "30.2", "%"]
    assert summary["jobs timed out on board"] == ["0", "2"]


def test_json_carries_the_plan_and_the_naive_plan(
    jobs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = in_process(capsys, *plan_args(jobs_file, "--compare", "--json"))
    assert code == 0, err
    record = json.loads(out)
    assert record["summary"]["by_deadline"] == 10 and record["naive"]["summary"]["by_deadline"] == 8
    assert record["summary"]["min_soc_pct"] == pytest.approx(37.9, abs=0.05)
    planned = {j["job"]: j for j in record["planned"]}
    assert set(planned) == {f"{k}-{n}" for k in ("wildfire", "flood", "ships", "crops", "ice")
                            for n in (1, 2)}  # fmt: skip
    for job in planned.values():
        assert job["met_deadline"] and job["fate"] == "ON_GROUND"
        assert job["release_payload_clock"] == job["release"]  # flight: one clock
        assert job["release"] >= record["first_release"]
        assert job["placement"] in ("SUNLIT", "ECLIPSE", "RESERVE")
    assert record["unplanned"] == []
    curve = record["summary"]["battery"]
    assert curve[0] == ["2026-11-30T23:00:00.000Z", 55.0]
    assert min(soc for _, soc in curve) == record["summary"]["min_soc_pct"]


def test_on_a_bench_the_releases_are_on_its_clock(
    jobs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A bench four times faster: its margins are its own real seconds, a few of them.
    power = tmp_path / "bench.toml"
    power.write_text("[link]\npass_margin_s = 2.0\nresult_overhead_s = 1.0\n[plan]\nlead_s = 5\n")
    bench = ["--time-scale", "4", "--orbit-start", START, "--bench-start", "1800000000"]
    code, out, err = in_process(capsys, *plan_args(jobs_file, "--json", "--power", str(power),
                                                   *bench))  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    t0 = unix("2026-11-30T23:00:00Z")
    # Four times faster, each job's compute and download take four times the orbit's
    # seconds: fewer fit than in flight (10), and these are on the bench's clock.
    assert 3 <= len(record["planned"]) < 10
    assert len(record["planned"]) + len(record["unplanned"]) == 10
    for job in record["planned"]:
        release = unix(job["release"])
        assert unix(job["release_payload_clock"]) == pytest.approx(
            1_800_000_000 + (release - t0) / 4, abs=0.01
        )
        # The onboard deadline in the bench's seconds: a quarter of the orbit's, at most.
        assert 0 < job["onboard_deadline_s"] <= (unix(job["deadline"]) - release) / 4 + 1
        assert job["met_deadline"]
    assert unix(record["first_release"]) == pytest.approx(
        unix("2026-11-30T23:13:38.558Z") + 4 * 5, abs=0.01
    )


@pytest.mark.parametrize(
    ("extra", "sentence"),
    [
        (["--station", "48.1"], "expected the station as LAT,LON or LAT,LON,ALT_M"),
        (["--station", "-33.9,18.4"], "(a southern latitude as --station=-33.9,18.4)"),
        (["--from", "tomorrow"], "--from 'tomorrow' is not a time"),
        (["--time-scale", "10"], "--time-scale and --bench-start map a bench's clock"),
        (["--horizon", "0"], "expected more than 0 and at most 168 hours"),
        (["--soc", "120"], "expected 0 to 100 %"),
        (["--thermal-duty", "0"], "the thermal duty must be above 0"),
        (["--orbit-start", "yesterday"], "--orbit-start 'yesterday' is not a time"),
    ],
)
def test_bad_flags_are_one_sentence_and_exit_2(
    jobs_file: Path, capsys: pytest.CaptureFixture[str], extra: list[str], sentence: str
) -> None:
    code, out, err = in_process(capsys, *plan_args(jobs_file, *extra))
    assert code == EXIT_USAGE
    lines = err.strip().splitlines()
    assert len(lines) == 1 and sentence in lines[0], err
    assert out == ""


@pytest.mark.parametrize(
    ("content", "name", "sentence"),
    [
        ("[[jobs]\nname = 1", "bad.toml", "is not valid TOML"),
        ("{\"jobs\": [}", "bad.json", "is not valid JSON"),
        ("[[jobs]]\nname = \"a\"\nmodel = \"m\"\ninput = \"a.npy\"\njob_s = 5\nprio = 1\n",
         "typo.toml", "job a has unknown key 'prio'"),
        ("[[jobs]]\nname = \"a\"\nmodel = \"m\"\ninput = \"a.npy\"\njob_s = 5\n"
         "deadline = \"-1h\"\n", "past.toml", "the deadline '-1h' is not a time"),
    ],
)  # fmt: skip
def test_a_bad_job_file_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, name: str, sentence: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    code, out, err = in_process(capsys, *plan_args(path))
    assert code == EXIT_USAGE and out == ""
    assert len(err.strip().splitlines()) == 1 and sentence in err, err


def test_missing_files_through_the_real_entry_point(jobs_file: Path, tmp_path: Path) -> None:
    done = groundsw(*plan_args(tmp_path / "none.toml"))
    assert done.returncode == EXIT_USAGE
    assert done.stderr.startswith("groundsw: cannot read the job file ") and "Traceback" not in (
        done.stderr
    )
    power = tmp_path / "power.toml"
    power.write_text("[battery]\ncapacity_wh = -1\n")
    done = groundsw(*plan_args(jobs_file, "--power", str(power)))
    assert done.returncode == EXIT_USAGE
    assert done.stderr == "groundsw: capacity_wh must be above 0, found -1\n"
    args = plan_args(jobs_file)
    args[args.index("--tle") + 1] = str(tmp_path / "no.tle")
    done = groundsw(*args)
    assert done.returncode == EXIT_USAGE and len(done.stderr.splitlines()) == 1
    assert "no.tle" in done.stderr and "Traceback" not in done.stderr


def test_the_jobs_left_out_are_listed_with_their_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "late.toml"
    path.write_text(
        '[[jobs]]\nname = "too-soon"\nmodel = "m"\ninput = "a.npy"\njob_s = 60\n'
        'deadline = "+10m"\n'
        '[[jobs]]\nname = "fine"\nmodel = "m"\ninput = "a.npy"\njob_s = 60\ndeadline = "+3h"\n'
    )
    code, out, err = in_process(capsys, *plan_args(path))
    assert code == 0, err
    assert "1 jobs planned, 1 left out" in out
    assert (
        "left out: too-soon: its deadline is before the plan's first release "
        "(2026-11-30T23:10:00.000Z; the first release is at 2026-11-30T23:14:38.558Z)"
    ) in out.splitlines()


def test_other_commands_start_without_the_planner_or_the_orbit_package() -> None:
    # Only `passes` and `plan` load them (numpy and sgp4 take a while to import).
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, groundsw.cli; print(sorted(m for m in sys.modules "
         "if m.split('.')[0] in ('orbit', 'sgp4') or m.startswith('groundsw.plan.') "
         "or m == 'groundsw.plan_upload'))"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert loaded.stdout.strip() == "[]"


def test_upload_checks_the_inputs_before_the_link_is_opened(
    jobs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The tiles do not exist: refused once the plan is printed, before the port is opened.
    link = ["--port", "/dev/null/none", "--data-dir", str(tmp_path / "ground")]
    code, out, err = in_process(capsys, *link, *plan_args(jobs_file, "--upload"))
    assert code == EXIT_USAGE
    assert "10 jobs planned, 0 left out" in out
    assert err == f"groundsw: {jobs_file.parent}/tiles/flood-2.npy does not exist\n"
