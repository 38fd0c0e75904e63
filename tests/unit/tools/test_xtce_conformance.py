"""The XTCE export against code we did not write: the OMG's XTCE 1.2 schema (as
space_packet_parser ships it, validated with xmlschema, offline), and space_packet_parser
decoding a packet of every TM definition with docs/ai-payload.xtce.xml alone.

space_packet_parser lacks ArrayParameterType and RepeatEntry, which the export keeps: those
packets (FILE_UPLOAD_REPORT, FILE_LIST_REPORT, MODEL_LIST_REPORT, JOB_LIST_REPORT) are checked up
to their first list, the lists are listed as unchecked (tests/xtce_consumer.py says how). It
decodes no commands: tests/unit/tools/test_dictionary_export.py encodes every command with the
export and our own minimal reader (tests/xtce_reader.py).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from spacelink.spacepacket import PusTm
from telemetry_defs.loader import default_dictionary
from telemetry_defs.model import Dictionary, Layout
from tests.dictionary_samples import samples
from tests.xtce_consumer import XTCE_SCHEMA, Consumer
from tools.xtce_export import XTCE_NAMESPACE

REPO = Path(__file__).resolve().parents[3]
EXPORT = REPO / "docs" / "ai-payload.xtce.xml"


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    return default_dictionary()


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    # allow="local": nothing is fetched; the XML namespace's schema (xml:base, xml:lang) that
    # SpaceSystem.xsd imports from the W3C is the copy xmlschema ships.
    return xmlschema.XMLSchema(str(XTCE_SCHEMA), allow="local")


def test_the_schema_is_the_omgs_xtce_1_2_read_offline(schema: xmlschema.XMLSchema) -> None:
    assert schema.target_namespace == XTCE_NAMESPACE == "http://www.omg.org/spec/XTCE/20180204"
    assert schema.root.get("version") == "1.2"
    sources = [s.url or "" for schemas in schema.maps.namespaces.values() for s in schemas]
    assert sources and all(url.startswith("file://") for url in sources), sources


def test_the_checked_in_export_is_valid_against_the_xtce_schema(
    schema: xmlschema.XMLSchema,
) -> None:
    errors = [f"{e.path}: {e.reason}" for e in schema.iter_errors(EXPORT.read_text())]
    assert not errors, f"{len(errors)} errors, first: {errors[:3]}"


def test_the_validation_finds_what_the_schema_requires(schema: xmlschema.XMLSchema) -> None:
    root = ET.fromstring(EXPORT.read_text())
    header = root.find(f"{{{XTCE_NAMESPACE}}}Header")
    assert header is not None
    del header.attrib["validationStatus"]
    errors = list(schema.iter_errors(ET.tostring(root, "unicode")))
    assert len(errors) == 1 and "validationStatus" in str(errors[0].reason)


def _telemetry(dictionary: Dictionary) -> list[tuple[str, int, int, bytes, Layout]]:
    """(name, service, subtype, ID prefix, layout) of every TM definition."""
    d = dictionary
    out = [(p.name, p.service, p.subtype, b"", p.layout) for p in d.packets.values()]
    out += [(h.name, 3, 25, h.sid.to_bytes(2, "big"), h.layout) for h in d.housekeeping.values()]
    out += [
        (e.name, 5, int(e.severity), e.id.to_bytes(2, "big"), e.layout) for e in d.events.values()
    ]
    return out


def test_space_packet_parser_decodes_every_telemetry_definition_as_the_dictionary_does(
    dictionary: Dictionary,
) -> None:
    consumer = Consumer(EXPORT.read_text(), dictionary)
    definitions = _telemetry(dictionary)
    partly: dict[str, set[str]] = {}
    for name, service, subtype, prefix, layout in definitions:
        for values in samples(dictionary, layout):
            data = prefix + layout.build(values)
            packet = PusTm(dictionary.apid, service, subtype, data, seq_count=77).pack()
            checked = consumer.check(packet)  # AssertionError: what differs
            assert checked.definition == name and checked.compared >= 17  # headers, PEC
            if checked.unchecked:
                partly.setdefault(name, set()).update(checked.unchecked)
    # Unchecked: exactly the lists (and what follows the first), in the definitions with lists.
    for name, _, _, _, layout in definitions:
        lists = [f.name for f in layout.fields if f.array is not None]
        if not lists:
            assert name not in partly
            continue
        first = [f.name for f in layout.fields].index(lists[0])
        after = {f"{name}_{f.name}" for f in layout.fields[first:]}
        fields = {u.split(" ")[0].removesuffix("_count") for u in partly[name]}
        assert fields == after | {"ccsds_packet_error_control"}, name
