"""XTCE and Markdown exports: complete, faithful to the codecs, checked-in copies current."""

from __future__ import annotations

import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from spacelink.crc import crc16
from spacelink.spacepacket import PusTc, PusTm
from telemetry_defs.loader import DEFAULT_DIRECTORY, default_dictionary, load_dictionary
from telemetry_defs.model import Dictionary, Field, Layout, ParameterValuesType
from telemetry_defs.valuetypes import GREEDY, BytesType
from tests.dictionary_samples import samples
from tests.xtce_reader import NS, Xtce
from tools import dictionary_export
from tools.dictionary_reference import markdown_reference
from tools.xtce_export import ROOT_CONTAINER, xtce_text

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    return default_dictionary()


@pytest.fixture(scope="module")
def xtce(dictionary: Dictionary) -> Xtce:
    return Xtce.parse(xtce_text(dictionary))


def test_xtce_has_a_container_per_packet_structure_and_event(
    dictionary: Dictionary, xtce: Xtce
) -> None:
    concrete = {n for n, c in xtce.containers.items() if not c.abstract and c.base is not None}
    expected = set(dictionary.packets) | set(dictionary.housekeeping) | set(dictionary.events)
    assert concrete == expected
    # The others: an item of a list of length-prefixed values, repeated in a packet.
    items = {n for n, c in xtce.containers.items() if not c.abstract and c.base is None}
    lists = {
        f"{p.name}_{f.name}_item"
        for p in dictionary.packets.values()
        for f in p.layout.fields
        if f.array is not None
        and isinstance(f.type, BytesType)
        and not isinstance(f.type.length, int)
    }
    assert items == lists
    repeated = {
        e.container for c in xtce.containers.values() for e in c.entries if e.repeat is not None
    }
    assert repeated == lists


def test_xtce_has_a_meta_command_per_command(dictionary: Dictionary, xtce: Xtce) -> None:
    concrete = {n for n, mc in xtce.commands.items() if mc.get("abstract") != "true"}
    assert concrete == set(dictionary.commands)


def test_xtce_header_carries_version_and_hash(dictionary: Dictionary, xtce: Xtce) -> None:
    assert xtce.root.get("name") == dictionary.name
    header = xtce.root.find("x:Header", NS)
    assert header is not None and header.get("version") == dictionary.version
    assert dictionary.sha256 in "".join(header.itertext())


def test_every_xtce_reference_resolves_and_names_are_unique(xtce: Xtce) -> None:
    text = ET.tostring(xtce.root, "unicode")
    root = ET.fromstring(text)
    names: dict[str, set[str]] = {}
    for kind in ("ParameterTypeSet", "ParameterSet", "ContainerSet", "ArgumentTypeSet"):
        found = root.find(f".//x:{kind}", NS)
        assert found is not None
        listed = [e.get("name", "") for e in found]
        assert len(listed) == len(set(listed)), f"duplicate names in {kind}"
        names[kind] = set(listed)
    refs = {
        "parameterTypeRef": "ParameterTypeSet",
        "parameterRef": "ParameterSet",
        "containerRef": "ContainerSet",
        "argumentTypeRef": "ArgumentTypeSet",
    }
    commands = {mc.get("name") for mc in root.iterfind(".//x:MetaCommand", NS)}
    base_containers = {c.get("name") for c in root.iterfind(".//x:CommandContainer", NS)}
    for e in root.iter():
        for attr, kind in refs.items():
            ref = e.get(attr)
            if ref is None:
                continue
            known = names[kind] | (base_containers if attr == "containerRef" else set())
            assert ref in known, f"{attr}={ref} is not defined"
        if e.get("arrayTypeRef") is not None:
            assert e.get("arrayTypeRef") in names["ParameterTypeSet"] | names["ArgumentTypeSet"]
        if e.get("metaCommandRef") is not None:
            assert e.get("metaCommandRef") in commands


def _same(expected: Any, got: Any) -> bool:
    if isinstance(expected, float):
        return math.isclose(expected, got, rel_tol=1e-6)
    if isinstance(expected, list):
        if len(expected) != len(got):
            return False
        return all(_same(a, b) for a, b in zip(expected, got, strict=True))
    return bool(expected == got)


def _telemetry(dictionary: Dictionary) -> list[tuple[str, int, int, bytes, Layout, str, int]]:
    """(name, service, subtype, id prefix, layout, field prefix, prefix octets) of every TM."""
    out = []
    for p in dictionary.packets.values():
        out.append((p.name, p.service, p.subtype, b"", p.layout, p.name, 0))
    for h in dictionary.housekeeping.values():
        out.append((h.name, 3, 25, h.sid.to_bytes(2, "big"), h.layout, "", 2))
    for e in dictionary.events.values():
        out.append((e.name, 5, int(e.severity), e.id.to_bytes(2, "big"), e.layout, e.name, 2))
    return out


def test_xtce_decodes_every_telemetry_packet_as_the_dictionary_does(
    dictionary: Dictionary, xtce: Xtce
) -> None:
    checked = 0
    for name, service, subtype, prefix, layout, owner, _ in _telemetry(dictionary):
        for values in samples(dictionary, layout):
            data = prefix + layout.build(values)
            packet = PusTm(dictionary.apid, service, subtype, data, seq_count=77).pack()
            container, decoded, consumed = xtce.decode(packet, ROOT_CONTAINER)
            assert container == name
            assert consumed == 8 * len(packet), f"{name}: the whole packet read"
            assert decoded["ccsds_apid"] == dictionary.apid
            assert decoded["ccsds_sequence_count"] == 77
            assert decoded["ccsds_packet_error_control"] == crc16(packet[:-2])
            for f in layout.fields:
                key = f"{owner}_{f.name}" if owner else f.name
                if isinstance(f.type, ParameterValuesType):
                    assert decoded[f"{key}_count"] == len(values[f.name])
                    continue
                assert _same(values[f.name], decoded[key]), f"{name}.{f.name}"
            checked += 1
    assert checked == 2 * len(_telemetry(dictionary))


def _xtce_arguments(f: Field, value: Any) -> dict[str, Any]:
    if isinstance(f.type, ParameterValuesType):
        pairs = f.construct().build(value)[1:]
        return {f"{f.name}_count": len(value), f"{f.name}_octets": len(pairs), f.name: pairs}
    if f.array is not None:
        return {f"{f.name}_count": len(value), f.name: value}
    if isinstance(f.type, BytesType) and f.type.length == GREEDY:
        return {f"{f.name}_octets": len(value), f.name: value}
    if isinstance(f.type, BytesType) and isinstance(f.type.length, str):
        octets = value.encode() if isinstance(value, str) else value
        return {f"{f.name}_length": len(octets), f.name: value}
    return {f.name: value}


def test_xtce_encodes_every_command_as_the_dictionary_does(
    dictionary: Dictionary, xtce: Xtce
) -> None:
    for command in dictionary.commands.values():
        for values in samples(dictionary, command.layout):
            ours = PusTc(
                dictionary.apid, command.service, command.subtype, command.encode(values)
            ).pack()
            arguments: dict[str, Any] = {}
            for f in command.arguments:
                arguments.update(_xtce_arguments(f, values[f.name]))
            theirs = xtce.encode_command(command.name, arguments)
            # Sequence count, length and PEC are the ground station's post-processor's.
            assert theirs[:4] == ours[:4], command.name
            assert theirs[4:6] == b"\x00\x00"
            assert theirs[6:] == ours[6:-2], command.name


def test_xtce_limits_and_calibrations_follow_the_parameters(
    dictionary: Dictionary, xtce: Xtce
) -> None:
    for p in dictionary.parameters.values():
        t = xtce.ptypes[xtce.parameters[p.name]]
        if p.calibration is not None:
            terms = t.findall(".//x:PolynomialCalibrator/x:Term", NS)
            assert [float(x.get("coefficient", "")) for x in terms] == list(p.calibration)
        warning = t.find(".//x:StaticAlarmRanges/x:WarningRange", NS)
        if p.limits is None or (p.limits.yellow_low is None and p.limits.yellow_high is None):
            assert warning is None
            continue
        assert warning is not None
        if p.limits.yellow_high is not None:
            assert float(warning.get("maxInclusive", "")) == p.limits.yellow_high


def test_a_reference_field_has_a_label_for_every_number_it_can_hold(
    dictionary: Dictionary, xtce: Xtce
) -> None:
    # JOB_REPORT's failure_code is 0 (none) until a job fails: a decoder of the export must
    # know 0, or a real report does not decode.
    referents = {
        "failure": {x.code: x.name for x in dictionary.failures.values()},
        "parameter": {p.id: p.name for p in dictionary.parameters.values()},
        "housekeeping": {h.sid: h.name for h in dictionary.housekeeping.values()},
    }
    checked = 0
    for name, _, _, _, layout, owner, _ in _telemetry(dictionary):
        for f in layout.fields:
            if f.refers is None:
                continue
            t = xtce.ptypes[xtce.parameters[f"{owner}_{f.name}" if owner else f.name]]
            labels = {
                int(e.get("value", "")): e.get("label") for e in t.iterfind(".//x:Enumeration", NS)
            }
            expected = dict(referents[f.refers])
            if f.none is not None:
                expected[f.none] = "NONE"
            assert labels == expected, f"{name}.{f.name}"
            checked += 1
    assert checked >= 8
    job_report = dictionary.packets["JOB_REPORT"].layout
    assert next(f.none for f in job_report.fields if f.name == "failure_code") == 0


def test_sizes_say_their_unit_and_adjustments_their_slope(xtce: Xtce) -> None:
    text = ET.tostring(xtce.root, "unicode")
    assert "LeadingSize" not in text  # a size tag's unit is left unsaid by XTCE 1.2
    adjustments = list(xtce.root.iter(f"{{{NS['x']}}}LinearAdjustment"))
    assert adjustments and all(a.get("slope") is not None for a in adjustments)


def test_markdown_reference_names_every_definition(dictionary: Dictionary) -> None:
    text = markdown_reference(dictionary)
    for group in (
        dictionary.commands,
        dictionary.packets,
        dictionary.housekeeping,
        dictionary.parameters,
        dictionary.events,
    ):
        for name in group:
            assert name in text
    for failure in dictionary.failures.values():
        assert f"### {failure.code} {failure.name}" in text
    assert dictionary.sha256 in text


def test_checked_in_exports_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    # CI fails here when a definition changed without `make docs`.
    code = dictionary_export.main(["all", str(REPO / "docs"), "--check"])
    assert code == dictionary_export.EXIT_OK, capsys.readouterr().err


def test_check_reports_a_stale_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dictionary_export.main(["all", str(tmp_path)]) == 0
    stale = tmp_path / dictionary_export.MARKDOWN_FILE
    stale.write_text(stale.read_text() + "edited by hand\n")
    capsys.readouterr()
    assert dictionary_export.main(["all", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "make docs" in err and "dictionary.md" in err


def test_check_reports_a_missing_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dictionary_export.main(["xtce", str(tmp_path / "none.xml"), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err


def test_an_inexpressible_layout_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "dictionary"
    shutil.copytree(DEFAULT_DIRECTORY, source)
    with open(source / "packets.toml", "a") as f:
        f.write(
            '\n[[packet]]\nname = "ODD"\nservice = 200\nsubtype = 1\ndescription = "x"\n'
            'fields = [{ name = "items", type = "u8", array = "u8" },'
            ' { name = "rest", type = "bytes", length = "greedy" }]\n'
        )
    load_dictionary(source)  # the codec can read it; XTCE cannot say it
    code = dictionary_export.main(["xtce", str(tmp_path / "x.xml"), "--dictionary", str(source)])
    assert code == dictionary_export.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "ODD field rest" in err and "\n" not in err
