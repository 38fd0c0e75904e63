"""The dictionary loader: it accepts the shipped dictionary, refuses broken definitions with the
file and entry, and its hash follows the definitions, not the layout of the files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacelink.errors import DiscardReason
from spacelink.pus import FailureCode
from telemetry_defs.loader import DEFAULT_DIRECTORY, DictionaryError, load_dictionary
from telemetry_defs.model import CodecError, Parameter, UnknownName
from telemetry_defs.valuetypes import (
    BadText,
    BoolType,
    EnumType,
    FloatType,
    IntType,
    ValueOutOfRange,
)
from tests.dictionary_samples import samples

D = load_dictionary()


def copy_dictionary(tmp_path: Path) -> Path:
    target = tmp_path / "dictionary"
    shutil.copytree(DEFAULT_DIRECTORY, target)
    return target


def append(directory: Path, name: str, text: str) -> None:
    with open(directory / name, "a") as f:
        f.write(text)


def test_the_shipped_dictionary_agrees_with_the_icd_and_the_link() -> None:
    assert D.apid == 100
    for code in FailureCode:
        assert D.failures[code.value].name == code.name
    discard_parameters = {p.name for p in D.parameters.values() if p.name.startswith("DISCARDED_")}
    uplink_reasons = {
        f"DISCARDED_{r.name}"
        for r in DiscardReason
        if not r.name.startswith("TM_") and r is not DiscardReason.PACKET_TIME
    }
    assert discard_parameters == uplink_reasons
    assert len(D.sha256) == 64 and D.hash32 == int(D.sha256[:8], 16)


def test_hash_ignores_comments_and_follows_definitions(tmp_path: Path) -> None:
    copy = copy_dictionary(tmp_path)
    append(copy, "events.toml", "\n# a comment changes nothing\n")
    assert load_dictionary(copy).sha256 == D.sha256
    text = (copy / "events.toml").read_text().replace('severity = "low"', 'severity = "medium"', 1)
    (copy / "events.toml").write_text(text)
    assert load_dictionary(copy).sha256 != D.sha256


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        (
            "events.toml",
            '[[event]]\nname = "X"\nid = 1\nseverity = "info"\n',
            "events PAYLOAD_STARTED and X share id 1",
        ),
        (
            "events.toml",
            '[[event]]\nname = "Y"\nid = 90\nseverity = "urgent"\n',
            "events.toml [[event]] Y: severity must be one of",
        ),
        (
            "commands.toml",
            '[[command]]\nname = "Z"\nservice = 3\nsubtype = 99\ncolour = "red"\n',
            "commands.toml [[command]] Z: unknown key 'colour'",
        ),
        (
            "commands.toml",
            '[[command]]\nname = "Z"\nservice = 3\nsubtype = 99\narguments = [\n'
            '{ name = "a", type = "u8", range = [0, 300] }]\n',
            "range [0, 300] exceeds u8",
        ),
        (
            "commands.toml",
            '[[command]]\nname = "Z"\nservice = 3\nsubtype = 99\narguments = [\n'
            '{ name = "a", type = "bytes" }, { name = "b", type = "u8" }]\n',
            "greedy field a must come last",
        ),
        (
            "commands.toml",
            '[[command]]\nname = "Z"\nservice = 3\nsubtype = 99\narguments = [\n'
            '{ name = "a", type = "u24" }]\n',
            "unknown type 'u24'",
        ),
        (
            "parameters.toml",
            '[[housekeeping]]\nname = "H"\nsid = 9\ninterval_ms = 1000\nparameters = ["NOPE"]\n',
            "no parameter named 'NOPE'",
        ),
        (
            "parameters.toml",
            '[[parameter]]\nname = "P"\nid = 999\ntype = "u8"\nsettable = true\n',
            "a settable parameter needs a default",
        ),
        (
            "packets.toml",
            '[[packet]]\nname = "Z"\nservice = 200\nsubtype = 1\nfields = [\n'
            '{ name = "a", type = "u16", none = 0 }]\n',
            "Z field a: none applies to integer fields that refer",
        ),
        (
            "packets.toml",
            '[[packet]]\nname = "Z"\nservice = 200\nsubtype = 1\nfields = [\n'
            '{ name = "a", type = "u16", refers = "failure", none = 6 }]\n',
            "packet Z field a: none = 6 is also a failure",
        ),
        ("extra.toml", "[[widget]]\nname = 'w'\n", "extra.toml: unknown section [widget]"),
        ("extra.toml", "this is = = not toml", "extra.toml is not valid TOML"),
    ],
)
def test_broken_definitions_are_refused_with_file_and_entry(
    tmp_path: Path, file: str, text: str, message: str
) -> None:
    copy = copy_dictionary(tmp_path)
    append(copy, file, "\n" + text)
    with pytest.raises(DictionaryError) as info:
        load_dictionary(copy)
    assert message in str(info.value)


def test_a_missing_directory_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(DictionaryError, match="does not exist"):
        load_dictionary(tmp_path / "nowhere")


def test_commands_from_operator_text() -> None:
    command, data = D.command_from_text("hk_set_interval", ["sid=LINK_STATUS", "interval_ms=0x3e8"])
    assert command.decode(data) == {"sid": 2, "interval_ms": 1000}
    _, data = D.command_from_text("PARAM_SET", ["log_level=warning"])
    assert D.command("PARAM_SET").decode(data) == {"values": [{"id": 100, "value": 30}]}
    for name, pairs, error, text in [
        (
            "HK_SET_INTERVAL",
            ["sid=1", "interval_ms=5"],
            ValueOutOfRange,
            "5 is outside 100..86400000",
        ),
        ("HK_SET_INTERVAL", ["sid=1"], ValueOutOfRange, "needs 'interval_ms'"),
        ("HK_ENABLE", ["sids=BOGUS"], BadText, "neither a housekeeping name nor a number"),
        ("HK_ENABLE", ["sids"], BadText, "is not key=value"),
        ("PARAM_SET", ["UPTIME=1"], ValueOutOfRange, "UPTIME is not settable"),
        ("PARAM_SET", ["LOG_LEVEL=LOUD"], BadText, "not a LogLevel (DEBUG, INFO, WARNING, ERROR)"),
        ("HK_GENRATE", [], UnknownName, "did you mean HK_GENERATE?"),
    ]:
        with pytest.raises(error) as info:
            D.command_from_text(name, pairs)
        assert text in str(info.value), (name, str(info.value))


def test_a_reference_to_nothing_reads_as_none() -> None:
    # JOB_REPORT's failure_code before a job fails: 0, which no failure code is.
    report = D.packets["JOB_REPORT"]
    failure_code = next(f for f in report.layout.fields if f.name == "failure_code")
    assert failure_code.none == 0 and D.failure(0) is None
    assert failure_code.from_text("none", D.resolve) == 0
    cancelled = D.failure_named("JOB_CANCELLED").code
    assert failure_code.from_text("JOB_CANCELLED", D.resolve) == cancelled
    for code, text in ((0, "failure_code=0 (none)"), (cancelled, "(JOB_CANCELLED)")):
        values = {**samples(D, report.layout)[0], "failure_code": code}
        decoded = D.decode_tm(report.service, report.subtype, report.layout.build(values))
        assert text in D.describe_values(decoded)


def test_application_data_that_does_not_fit_is_a_codec_error() -> None:
    command = D.command("HK_SET_INTERVAL")
    with pytest.raises(CodecError, match="octets left over"):
        command.decode(command.encode({"sid": 1, "interval_ms": 100}) + b"\x00")
    with pytest.raises(CodecError, match="interval_ms: too few octets"):
        command.decode(b"\x00\x01\x00")
    with pytest.raises(ValueOutOfRange, match=r"99 is outside 100\.\.86400000"):
        command.decode(b"\x00\x01\x00\x00\x00\x63")


@given(
    sid=st.sampled_from([h.sid for h in D.housekeeping.values()]),
    interval=st.integers(100, 86_400_000),
)
def test_any_valid_interval_command_round_trips(sid: int, interval: int) -> None:
    command = D.command("HK_SET_INTERVAL")
    values = {"sid": sid, "interval_ms": interval}
    assert command.decode(command.encode(values)) == values


def _raw_values(p: Parameter) -> st.SearchStrategy[Any]:
    if isinstance(p.type, EnumType):
        return st.sampled_from(sorted(p.type.values.values()))
    if isinstance(p.type, BoolType):
        return st.booleans()
    if isinstance(p.type, FloatType):  # NaN (no reading) is left out: it equals nothing
        low_f, high_f = p.range if p.range is not None else (None, None)
        return st.floats(low_f, high_f, width=32, allow_nan=False)
    assert isinstance(p.type, IntType), p.name
    low, high = p.type.bounds
    if p.range is not None:  # a settable parameter holds only values in its range
        low, high = max(low, int(p.range[0])), min(high, int(p.range[1]))
    return st.integers(low, high)


@given(st.data())
def test_any_housekeeping_report_round_trips(data: st.DataObject) -> None:
    structure = data.draw(st.sampled_from(list(D.housekeeping.values())))
    values = {p.name: data.draw(_raw_values(p)) for p in structure.parameters}
    decoded = D.decode_tm(3, 25, D.encode_housekeeping(structure.sid, values))
    assert decoded.name == structure.name
    assert decoded.parameters == values


def test_limits_and_calibration() -> None:
    cpu = D.parameter("CPU_PROCESS")
    assert cpu.engineering(805) == pytest.approx(80.5)
    assert cpu.limit_state(700).value == "nominal"
    assert cpu.limit_state(805).value == "yellow"
    assert cpu.limit_state(951).value == "red"
    disk_free = D.parameter("DISK_FREE")
    assert disk_free.limit_state(100).value == "red"
    assert disk_free.limit_state(300).value == "yellow"
    assert cpu.to_text(805) == "80.5 %"
    assert D.parameter("DICTIONARY_HASH").to_text(0xAB) == "0x000000AB"
