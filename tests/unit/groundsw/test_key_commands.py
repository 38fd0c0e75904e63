"""`groundsw key`: key files generated through the real command line, refusals in one sentence,
and KEY_ROTATE against an in-process payload that verifies every frame under its current key
and unwraps the new key as the flight software does."""

from __future__ import annotations

import argparse
import queue
import stat
from pathlib import Path
from typing import Any

import pytest

from groundsw.cli import EXIT_USAGE, main
from groundsw.key_commands import pending_path, run_rotate
from groundsw.session import CommandEvent, CommandRecord, EventKind, LinkTimeout, ReceivedTm
from groundsw.transfer import GroundInputError, OperationContext
from groundsw.uplink_security import KEYS_ENV, ArsnCounter, UplinkSecurity, counter_path
from groundsw.verification import CommandFailed
from spacelink.icd import PAYLOAD_APID, SPACECRAFT_ID, TC_MAX_DATA_LENGTH, TC_VCID
from spacelink.keystore import read_keys, write_keys
from spacelink.pus import Stage, VerificationReport
from spacelink.sdls import (
    Algorithm,
    SecurityAssociation,
    SecurityError,
    SecurityFault,
    SecurityProcessor,
    unwrap_key,
)
from spacelink.spacepacket import AckFlags, PusTc
from spacelink.tcframe import TcFrame
from telemetry_defs.loader import default_dictionary
from tests.unit.groundsw.fakes import FastClock, umask

D = default_dictionary()
OLD = SecurityAssociation(1, Algorithm.AES_CMAC, bytes(range(32)))
OTHER = SecurityAssociation(2, Algorithm.HMAC_SHA256, bytes(range(64, 96)))


@pytest.fixture(autouse=True)
def no_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's $GROUNDSW_KEYS or $GROUNDSW_PORT must not reach these tests."""
    monkeypatch.delenv(KEYS_ENV, raising=False)
    monkeypatch.delenv("GROUNDSW_PORT", raising=False)


def groundsw(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `groundsw ARGV` run in this process."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's refusals
        assert isinstance(exc.code, int)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and lines[0].startswith("groundsw: ")
    return lines[0]


# -- key generate -------------------------------------------------------------------------------


def test_key_generate_writes_an_owner_only_file_with_one_sa(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.toml"
    with umask(0):  # the mode is the command's, not a umask's
        code, out, err = groundsw(capsys, "key", "generate", str(path))
    assert (code, err) == (0, "")
    assert str(path) in out and "SPI 1" in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (sa,) = read_keys(path)
    assert (sa.spi, sa.algorithm, len(sa.key)) == (1, Algorithm.HMAC_SHA256, 32)
    # The ground can use it as it is.
    assert UplinkSecurity.from_key_file(path).sa == sa


@pytest.mark.parametrize("algorithm", list(Algorithm), ids=lambda a: a.name)
def test_key_generate_with_an_spi_and_an_algorithm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], algorithm: Algorithm
) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    for path in (first, second):
        code, _, err = groundsw(
            capsys, "key", "generate", str(path), "--spi", "65535", "--algorithm", algorithm.name
        )
        assert code == 0, err
    (a,) = read_keys(first)
    (b,) = read_keys(second)
    assert (a.spi, a.algorithm) == (b.spi, b.algorithm) == (65535, algorithm)
    assert a.key != b.key  # random, not derived from anything given


def test_key_generate_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.toml"
    assert groundsw(capsys, "key", "generate", str(path))[0] == 0
    before = path.read_bytes()
    code, out, err = groundsw(capsys, "key", "generate", str(path), "--spi", "2")
    assert code == EXIT_USAGE and out == ""
    assert "exists already" in one_sentence(err)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--spi", "65536"], "SPI 65536 is outside 0 to 65535"),
        (["--spi", "-1"], "SPI -1 is outside 0 to 65535"),
        (["--spi", "one"], "argument --spi: invalid int value: 'one'"),
        (["--algorithm", "DES"], "argument --algorithm: invalid choice: 'DES'"),
        (["--algorithm", "hmac_sha256"], "invalid choice"),
    ],
)
def test_key_generate_refuses_bad_values_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    path = tmp_path / "keys.toml"
    code, out, err = groundsw(capsys, "key", "generate", str(path), *argv)
    assert code == EXIT_USAGE and out == ""
    assert expected in one_sentence(err)
    assert not path.exists()


def test_key_generate_into_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "none" / "keys.toml"
    code, _, err = groundsw(capsys, "key", "generate", str(path))
    assert code == EXIT_USAGE
    assert f"cannot create {path}" in one_sentence(err)


# -- key rotate on the command line -------------------------------------------------------------


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    write_keys(path, [OLD, OTHER])
    return path


def test_key_rotate_without_keys_is_refused_before_the_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = groundsw(capsys, "--data-dir", str(tmp_path / "data"), "key", "rotate")
    assert code == EXIT_USAGE and out == ""
    message = one_sentence(err)
    assert "--keys FILE" in message and KEYS_ENV in message
    assert not (tmp_path / "data").exists()  # refused before the archive, let alone the port


def test_key_rotate_takes_the_key_file_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = key_file(tmp_path)
    monkeypatch.setenv(KEYS_ENV, str(path))
    data = ["--data-dir", str(tmp_path / "data")]
    # With its keys in hand it goes on to the link, which is missing here.
    code, _, err = groundsw(capsys, *data, "key", "rotate")
    assert code == EXIT_USAGE and "no serial port given" in one_sentence(err)
    code, _, err = groundsw(capsys, *data, "--spi", "9", "key", "rotate")
    assert code == EXIT_USAGE
    assert "has no SPI 9 (it has 1, 2)" in one_sentence(err)
    path.chmod(0o644)
    code, _, err = groundsw(capsys, *data, "key", "rotate")
    assert code == EXIT_USAGE and "chmod 600" in one_sentence(err)
    assert not pending_path(path).exists()
    path.chmod(0o600)
    assert read_keys(path) == [OLD, OTHER]


# -- key rotate against a payload ---------------------------------------------------------------


class FakePayload:
    """The payload's end of the link for KEY_ROTATE, in memory and answering at once: each
    command travels in a TC frame secured by the ground's UplinkSecurity, as the session sends
    it, is verified by the payload's SecurityProcessor and carried out as flight does."""

    def __init__(self, security: UplinkSecurity, answer: str = "done") -> None:
        self.security = security
        self.processor = SecurityProcessor([OLD, OTHER])
        self.answer = answer
        self.source_id = 1
        self.error: BaseException | None = None
        self.max_packet_octets = TC_MAX_DATA_LENGTH - security.overhead
        self.received: list[dict[str, Any]] = []
        self.seq = 0
        self.order = 0

    def subscribe(self) -> queue.Queue[ReceivedTm]:
        return queue.Queue()

    def unsubscribe(self, q: queue.Queue[ReceivedTm]) -> None:
        pass

    def verify(self, tc: PusTc) -> PusTc:
        """`tc` as the payload receives it: secured now, checked under the current key."""
        frame = TcFrame(SPACECRAFT_ID, TC_VCID, self.seq & 0xFF, tc.pack())
        secured = self.security.secure(frame)
        verified = self.processor.process(TcFrame.unpack(secured.pack()))
        return PusTc.unpack(verified.frame.data)

    def command(
        self, service: int, subtype: int, data: bytes = b"", ack: AckFlags = AckFlags.ALL
    ) -> CommandRecord:
        self.seq += 1
        tc = PusTc(PAYLOAD_APID, service, subtype, data, self.seq, self.source_id, ack)
        record = CommandRecord(tc, 0.0)
        command = D.command_for(service, subtype)
        assert command is not None and command.name == "KEY_ROTATE"
        values = command.decode(self.verify(tc).app_data)
        self.received.append(values)
        self._event(record, EventKind.FRAME_ACKNOWLEDGED)
        if self.answer == "silent":
            return record
        if self.answer == "port fails":
            self.error = OSError(5, "Input/output error")
            return record
        self._report(record, Stage.ACCEPTANCE)
        if self.answer == "refused":
            failure = D.failure_named("KEY_UNWRAP_FAILED").code
            self._report(record, Stage.COMPLETION, failure, b"wrapped key does not unwrap")
            return record
        spi = values["spi"]
        self.processor.replace_key(
            spi, unwrap_key(values["wrapped"], self.processor.association(spi))
        )
        self._report(record, Stage.COMPLETION)
        return record

    def _event(
        self, record: CommandRecord, kind: EventKind, report: VerificationReport | None = None
    ) -> None:
        self.order += 1
        record._add(CommandEvent(kind, 0.0, self.order, report))

    def _report(
        self, record: CommandRecord, stage: Stage, code: int | None = None, data: bytes = b""
    ) -> None:
        report = VerificationReport(stage, code is None, record.request_id, None, code, data)
        self._event(record, EventKind.REPORT, report)


def rotation(
    tmp_path: Path, answer: str = "done"
) -> tuple[Path, FakePayload, OperationContext, list[str]]:
    path = key_file(tmp_path)
    security = UplinkSecurity(OLD, ArsnCounter(counter_path(path)))
    payload = FakePayload(security, answer)
    lines: list[str] = []
    ctx = OperationContext(
        payload, D, 5.0, 115200, lines.append, lines.append, clock=FastClock(), security=security
    )
    return path, payload, ctx, lines


def rotate(path: Path, ctx: OperationContext) -> int:
    return run_rotate(argparse.Namespace(keys=path), ctx)


def sent_key(payload: FakePayload) -> bytes:
    """The new key KEY_ROTATE carried, unwrapped under the SA it replaces."""
    (values,) = payload.received
    assert values["spi"] == OLD.spi
    return unwrap_key(values["wrapped"], OLD)


def test_a_confirmed_rotation_puts_the_new_key_in_the_file_and_in_use(tmp_path: Path) -> None:
    path, payload, ctx, lines = rotation(tmp_path)
    assert ctx.security is not None
    assert rotate(path, ctx) == 0
    new = sent_key(payload)
    assert len(new) == len(OLD.key) and new != OLD.key
    assert read_keys(path) == [SecurityAssociation(OLD.spi, OLD.algorithm, new), OTHER]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ctx.security.sa.key == new
    assert not pending_path(path).exists()
    assert "rotated" in lines[-1] and str(path) in lines[-1]
    # The next frame is secured under the new key, which the payload now holds.
    ping = PusTc(PAYLOAD_APID, 17, 1, b"", 9, 1)
    assert payload.verify(ping) == ping
    stale = SecurityProcessor([OLD])
    with pytest.raises(SecurityError) as refused:
        stale.process(ctx.security.secure(TcFrame(SPACECRAFT_ID, TC_VCID, 0, ping.pack())))
    assert refused.value.fault is SecurityFault.BAD_MAC


def test_a_refused_rotation_changes_nothing(tmp_path: Path) -> None:
    path, payload, ctx, _ = rotation(tmp_path, "refused")
    assert ctx.security is not None
    before = path.read_bytes()
    with pytest.raises(CommandFailed) as failed:
        rotate(path, ctx)
    assert "KEY_ROTATE failed at completion" in str(failed.value)
    assert "KEY_UNWRAP_FAILED" in str(failed.value)
    assert path.read_bytes() == before
    assert not pending_path(path).exists()
    assert ctx.security.sa == OLD
    assert payload.processor.association(OLD.spi) == OLD


@pytest.mark.parametrize("answer", ["silent", "port fails"])
def test_a_rotation_without_an_answer_keeps_the_pending_key(tmp_path: Path, answer: str) -> None:
    path, payload, ctx, _ = rotation(tmp_path, answer)
    assert ctx.security is not None
    before = path.read_bytes()
    with pytest.raises(LinkTimeout) as lost:
        rotate(path, ctx)
    message = str(lost.value)
    pending = pending_path(path)
    assert str(pending) in message and "KEY_ROTATED" in message and str(path) in message
    assert "\n" not in message
    # The payload may use the key that was sent: the pending file holds it, owner only.
    assert read_keys(pending) == [
        SecurityAssociation(OLD.spi, OLD.algorithm, sent_key(payload)),
        OTHER,
    ]
    assert stat.S_IMODE(pending.stat().st_mode) == 0o600
    assert path.read_bytes() == before
    assert ctx.security.sa == OLD


def test_a_pending_key_is_never_replaced_by_another_rotation(tmp_path: Path) -> None:
    path, payload, ctx, _ = rotation(tmp_path, "silent")
    with pytest.raises(LinkTimeout):
        rotate(path, ctx)
    pending = pending_path(path)
    kept = pending.read_bytes()
    payload.answer = "done"
    with pytest.raises(GroundInputError) as refused:
        rotate(path, ctx)
    message = str(refused.value)
    assert str(pending) in message and "KEY_ROTATED" in message and "\n" not in message
    assert pending.read_bytes() == kept
    assert len(payload.received) == 1  # nothing more was sent


def test_a_key_file_not_replaced_after_the_payload_confirmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, payload, ctx, _ = rotation(tmp_path)
    assert ctx.security is not None
    before = path.read_bytes()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("groundsw.key_commands.write_keys", disk_full)
    with pytest.raises(GroundInputError) as failed:
        rotate(path, ctx)
    pending = pending_path(path)
    message = str(failed.value)
    assert str(pending) in message and str(path) in message and "No space left" in message
    new = sent_key(payload)
    # The ground goes on with the key the payload uses; the operator finds it in the pending file.
    assert ctx.security.sa.key == new
    assert read_keys(pending)[0].key == new
    assert path.read_bytes() == before


def test_rotate_needs_the_security_in_use(tmp_path: Path) -> None:
    path, payload, ctx, _ = rotation(tmp_path)
    ctx.security = None
    with pytest.raises(GroundInputError):
        rotate(path, ctx)
    assert payload.received == [] and not pending_path(path).exists()
