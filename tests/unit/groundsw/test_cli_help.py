"""What groundsw tells without a link: the dictionary's commands and parameters, a command's
arguments, its version; global options after the subcommand; Ctrl-C's exit status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from groundsw import cli, link_open
from telemetry_defs.loader import default_dictionary

D = default_dictionary()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's own exits (--version, usage errors)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_commands_lists_every_command_with_its_type(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "commands")
    assert code == 0
    names = [
        line.split()[0]
        for line in out.splitlines()
        if line.startswith(tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    ]
    assert set(names) >= set(D.commands)
    assert any(line.split()[:2] == ["HK_GENERATE", "TC[3,27]"] for line in out.splitlines())
    assert run(capsys, "cmd", "--list")[1] == out


def test_a_commands_help_gives_its_arguments_ranges_and_units(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "cmd", "HK_SET_INTERVAL", "--help")
    assert code == 0
    assert out.splitlines()[0] == "HK_SET_INTERVAL: TC[3,31]"
    assert "  interval_ms      u32, 100 to 8.64e+07, ms" in out.splitlines()
    assert "a housekeeping name or number" in out
    assert run(capsys, "commands", "HK_SET_INTERVAL")[1] == out
    code, _, err = run(capsys, "cmd", "NO_SUCH", "--help")
    assert code == 2 and "NO_SUCH" in err and "Traceback" not in err
    code, _, err = run(capsys, "cmd")
    assert (code, err) == (2, "groundsw: cmd needs a command name: groundsw commands lists them\n")


def test_parameters_and_one_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "parameters", "--settable")
    assert code == 0
    listed = {line.split()[0] for line in out.splitlines()}
    assert listed == {p.name for p in D.parameters.values() if p.settable}
    code, out, _ = run(capsys, "parameters", "CPU_PROCESS")
    assert code == 0
    assert "limits (engineering): yellow above 80, red above 95" in out
    assert "engineering value: 0.1*raw^1" in out


def test_version_names_the_dictionary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("groundsw ") and f"dictionary {D.name} {D.version}" in out


def test_global_options_may_follow_the_subcommand(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    before = run(capsys, "--port", "/dev/null/none", "--data-dir", str(tmp_path), "ping")
    after = run(capsys, "ping", "--port", "/dev/null/none", "--data-dir", str(tmp_path))
    assert before == after and before[0] == 2 and "/dev/null/none" in before[2]
    # A value given before the subcommand is not replaced by the subcommand's default.
    parsed = cli.build_parser().parse_args(["--timeout", "7", "ping", "--count", "2"])
    assert (parsed.timeout, parsed.count) == (7.0, 2)
    # An option the subcommand defines for itself stays its own.
    parsed = cli.build_parser().parse_args(
        ["--spi", "3", "key", "generate", "k.toml", "--spi", "4"]
    )
    assert (parsed.spi, parsed.new_spi) == (3, 4)


def test_ctrl_c_exits_130(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(link_open, "own_link", interrupted)
    code, _, err = run(capsys, "--port", "/dev/x", "--data-dir", str(tmp_path), "ping")
    assert (code, err) == (130, "groundsw: interrupted\n")
