"""Power-mode control through a fake `nvpmodel`: a real executable run as a real subprocess."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from flight.thermal.power import (
    NoPowerControl,
    Nvpmodel,
    PowerControl,
    PowerModeError,
    parse_mode,
)

# Keeps its mode in `mode` beside itself and answers like L4T's nvpmodel. Modes in REBOOT ask
# whether to reboot and record the answer in `answer`; they are applied only after YES (which
# "reboots": it writes `rebooted`).
FAKE_NVPMODEL = """\
#!{python}
import sys, time
from pathlib import Path

HERE = Path(__file__).parent
NAMES = {{0: "MAXN", 1: "MODE_15W", 2: "MODE_30W", 3: "MODE_10W"}}
REBOOT = {reboot!r}
WARN = {warn!r}
SLEEP = {sleep!r}
QUERY_OUTPUT = {query_output!r}

time.sleep(SLEEP)
mode_file = HERE / "mode"
args = sys.argv[1:]
if WARN:
    print("NVPM WARN: fan mode is not set!")
if args == ["-q"]:
    if QUERY_OUTPUT is not None:
        sys.stdout.write(QUERY_OUTPUT)
        sys.exit(0)
    mode = int(mode_file.read_text())
    print(f"NV Power Mode: {{NAMES[mode]}}")
    print(mode)
elif len(args) == 2 and args[0] == "-m":
    mode = int(args[1])
    if mode not in NAMES:
        print(f"NVPM ERROR: Invalid power mode: {{mode}}", file=sys.stderr)
        print("NVPM ERROR: failed to set power mode", file=sys.stderr)
        sys.exit(1)
    if mode in REBOOT:
        print("NVPM WARN: Reboot required for changing to this power mode: ", mode)
        print("NVPM WARN: DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:")
        answer = sys.stdin.readline()
        (HERE / "answer").write_text(answer)
        if answer.strip().upper() != "YES":
            sys.exit(0)
        (HERE / "rebooted").write_text("")
    mode_file.write_text(str(mode))
else:
    print("usage: nvpmodel [-q] [-m MODE]", file=sys.stderr)
    sys.exit(2)
"""


@dataclass
class Fake:
    """A fake nvpmodel: its path and the directory holding its state."""

    path: Path

    @property
    def mode(self) -> int:
        return int((self.path.parent / "mode").read_text())

    def control(self, timeout_s: float = 10.0) -> Nvpmodel:
        return Nvpmodel((str(self.path),), timeout_s=timeout_s)


def make_fake(
    directory: Path,
    mode: int = 0,
    *,
    warn: bool = False,
    reboot: tuple[int, ...] = (),
    sleep: float = 0.0,
    query_output: str | None = None,
) -> Fake:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nvpmodel"
    path.write_text(
        FAKE_NVPMODEL.format(
            python=sys.executable,
            reboot=set(reboot),
            warn=warn,
            sleep=sleep,
            query_output=query_output,
        )
    )
    path.chmod(0o755)
    (directory / "mode").write_text(str(mode))
    return Fake(path)


@pytest.mark.parametrize(
    ("output", "mode"),
    [
        ("NV Power Mode: MAXN\n0\n", 0),
        ("NVPM WARN: fan mode is not set!\nNV Power Mode: MODE_15W\n1\n", 1),
        ("NV Power Mode: MODE_30W\n  2  \n\n", 2),
        ("NV Power Mode: MODE_10W\n", None),
        ("", None),
        ("NV Power Mode: MAXN\n0 1\n", None),
    ],
)
def test_parse_mode(output: str, mode: int | None) -> None:
    assert parse_mode(output) == mode


@pytest.mark.parametrize("warn", [False, True])
def test_current_reads_the_mode(tmp_path: Path, warn: bool) -> None:
    fake = make_fake(tmp_path, mode=2, warn=warn)
    assert fake.control().current() == 2


def test_set_switches_and_reads_back(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, mode=0)
    control: PowerControl = fake.control()
    control.set(3)
    assert fake.mode == 3
    assert control.current() == 3


def test_set_answers_no_to_the_reboot_question(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, mode=0, reboot=(2,))
    with pytest.raises(PowerModeError, match="asked for power mode 2, nvpmodel reports 0"):
        fake.control().set(2)
    assert (tmp_path / "answer").read_text() == "NO\n"
    assert not (tmp_path / "rebooted").exists()
    assert fake.mode == 0


def test_set_an_unknown_mode_fails_with_the_first_line_of_stderr(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, mode=1)
    with pytest.raises(PowerModeError) as raised:
        fake.control().set(9)
    message = str(raised.value)
    assert "exit status 1" in message
    assert "NVPM ERROR: Invalid power mode: 9" in message
    assert "failed to set" not in message
    assert "\n" not in message
    assert fake.mode == 1


@pytest.mark.parametrize("mode", [-1, True, 1.0])
def test_set_refuses_a_mode_that_is_not_a_mode_number(tmp_path: Path, mode: object) -> None:
    fake = make_fake(tmp_path, mode=1)
    with pytest.raises(PowerModeError, match="non-negative integer"):
        fake.control().set(mode)  # type: ignore[arg-type]
    assert fake.mode == 1


def test_set_fails_when_the_mode_cannot_be_read_back(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, mode=0, query_output="NV Power Mode: ???\n")
    with pytest.raises(PowerModeError, match="asked for power mode 1, nvpmodel reports unknown"):
        fake.control().set(1)


def test_a_missing_binary(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    control = Nvpmodel((str(tmp_path / "absent" / "nvpmodel"),))
    with pytest.raises(PowerModeError, match="cannot run: No such file or directory"):
        control.set(0)
    with caplog.at_level(logging.WARNING, logger="flight.thermal.power"):
        assert control.current() is None
        assert control.current() is None
    assert len(caplog.records) == 1
    assert "No such file or directory" in caplog.records[0].getMessage()


def test_a_binary_that_is_not_executable(tmp_path: Path) -> None:
    fake = make_fake(tmp_path)
    fake.path.chmod(0o644)
    # Run as root the file is still not executable: exec needs an x bit somewhere.
    with pytest.raises(PowerModeError, match="cannot run: Permission denied"):
        fake.control().set(1)


def test_a_hung_nvpmodel_times_out(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, mode=0, sleep=60.0)
    control = fake.control(timeout_s=0.5)
    with pytest.raises(PowerModeError, match=r"timed out after 0\.5 s"):
        control.set(1)
    assert control.current() is None


def test_current_logs_each_distinct_failure_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = make_fake(tmp_path, mode=0, query_output="nothing useful\n")
    control = fake.control()
    with caplog.at_level(logging.WARNING, logger="flight.thermal.power"):
        assert control.current() is None
        assert control.current() is None
        fake.path.unlink()
        assert control.current() is None
        assert control.current() is None
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "no mode number" in messages[0]
    assert "nothing useful" in messages[0]
    assert "No such file or directory" in messages[1]


def test_a_failure_is_logged_again_after_a_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = make_fake(tmp_path / "bin", mode=0)
    control = fake.control()
    hidden = tmp_path / "hidden"
    with caplog.at_level(logging.WARNING, logger="flight.thermal.power"):
        fake.path.rename(hidden)
        assert control.current() is None
        hidden.rename(fake.path)
        assert control.current() == 0
        fake.path.rename(hidden)
        assert control.current() is None
    assert len(caplog.records) == 2


def test_sudo_style_command_prefixes_are_kept(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, mode=1)
    # `env` stands in for `sudo -n`: a prefix that runs the real command.
    control = Nvpmodel(("env", "NVPM_TEST=1", str(fake.path)))
    assert control.current() == 1
    control.set(0)
    assert fake.mode == 0


def test_no_power_control() -> None:
    control: PowerControl = NoPowerControl()
    assert control.current() is None
    with pytest.raises(PowerModeError, match="no power-mode control on this payload"):
        control.set(0)


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        Nvpmodel(())


def test_a_long_error_is_shortened_to_one_line(tmp_path: Path) -> None:
    script = tmp_path / "nvpmodel"
    script.write_text(f"#!/bin/sh\necho '{'E' * 300}' >&2\necho second line >&2\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(PowerModeError) as raised:
        Nvpmodel((str(script),)).set(0)
    message = str(raised.value)
    assert message.startswith(f"{script} -m 0: exit status 3: EEE")
    assert message.endswith("...")
    assert len(message) < len(str(script)) + 100
    assert "second line" not in message
