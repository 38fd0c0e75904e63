"""The notify protocol against a real datagram socket, path and abstract; the variables."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from flight.lifecycle.sd_notify import (
    Notifier,
    NotifyError,
    NotifySettings,
    socket_address,
    take_settings,
)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def test_each_notification_is_one_datagram_of_lines(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier(socket_address(path))
    assert notifier.ready("serving /dev/ttyTHS1\nat 115200 baud")
    assert notifier.watchdog()
    assert notifier.stopping("stopping: signal")
    assert notifier.status("watchdog withheld: worker: no heartbeat")
    got = [sock.recv(4096) for _ in range(4)]
    assert got == [
        b"READY=1\nSTATUS=serving /dev/ttyTHS1 at 115200 baud",  # a status is one line
        b"WATCHDOG=1",
        b"STOPPING=1\nSTATUS=stopping: signal",
        b"STATUS=watchdog withheld: worker: no heartbeat",
    ]
    notifier.close()


def test_an_abstract_socket_is_reached_by_its_at_name() -> None:
    name = f"test-notify-{os.getpid()}-{secrets.token_hex(4)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier(socket_address("@" + name)).watchdog()
        assert sock.recv(64) == b"WATCHDOG=1"


def test_a_supervisor_that_is_gone_makes_the_send_fail_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nobody"))
    assert not notifier.watchdog()
    assert not notifier.watchdog()
    assert caplog.text.count("cannot notify the supervisor") == 1  # logged once per outage


@pytest.mark.parametrize("value", ["relative/path", "vsock:2:1234", "x"])
def test_an_address_we_cannot_use_is_refused(value: str) -> None:
    with pytest.raises(NotifyError, match="expected an absolute path or @name"):
        socket_address(value)


def test_settings_are_taken_out_of_the_environment() -> None:
    environ = {"NOTIFY_SOCKET": "@bench", "WATCHDOG_USEC": "3000000", "OTHER": "kept"}
    assert take_settings(environ, pid=42) == NotifySettings("\0bench", 3.0)
    assert environ == {"OTHER": "kept"}  # child processes do not inherit them


def test_the_watchdog_is_another_process_s_when_its_pid_is_not_ours() -> None:
    environ = {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}
    assert take_settings(environ, pid=42) == NotifySettings("/run/n", None)
    environ = {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}
    assert take_settings(environ, pid=42) == NotifySettings("/run/n", 30.0)


def test_no_supervisor_is_no_settings() -> None:
    assert take_settings({}, pid=1) == NotifySettings(None, None)
    assert take_settings({"NOTIFY_SOCKET": ""}, pid=1) == NotifySettings(None, None)


@pytest.mark.parametrize("usec", ["soon", "0", "-5"])
def test_a_bad_watchdog_time_is_refused(usec: str) -> None:
    with pytest.raises(NotifyError, match="WATCHDOG_USEC"):
        take_settings({"WATCHDOG_USEC": usec}, pid=1)
