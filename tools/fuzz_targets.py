"""Every decoder of octets from outside, as fuzz targets: name -> (run, accepted errors, seeds).

A target feeds one input to one decoder the way the payload or the ground does. It may raise
only the exception types the decoder documents (`accepted`): anything else, a hang or unbounded
memory is a bug. The seeds are valid encodings made with the project's own encoders, for the
mutation fuzzers to start from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError, Message  # type: ignore[import-untyped]
from onnx import TensorProto, helper, numpy_helper

from flight.counters import LinkCounters
from flight.jobs.model_check import (
    InputMismatch,
    ModelRejected,
    ModelSignature,
    TensorSpec,
    check_input,
    load_input,
    validate_model,
    weight_checksums,
)
from flight.uplink import UplinkReceiver
from spacelink.cdstime import CdsTime
from spacelink.cltu import CltuDecoder, encode_cltu
from spacelink.cop1 import Clcw, Farm1
from spacelink.crc import crc16
from spacelink.errors import FrameError, PacketError
from spacelink.icd import (
    ATTACHED_SYNC_MARKER,
    TC_FECF_LENGTH,
    TC_HEADER_LENGTH,
    TC_MAX_DATA_LENGTH,
    TC_MAX_FRAME_LENGTH,
    TM_FECF_LENGTH,
    LinkParameters,
    TmCoding,
)
from spacelink.pus import VERIFICATION_SERVICE, Stage, VerificationReport
from spacelink.randomizer import randomize
from spacelink.sdls import (
    MIN_ARSN,
    Algorithm,
    SaState,
    SecurityAssociation,
    SecurityError,
    SecurityProcessor,
    apply_security,
)
from spacelink.spacepacket import (
    MAX_PACKET_LENGTH,
    PEC_LENGTH,
    PRIMARY_HEADER_LENGTH,
    PrimaryHeader,
    PusTc,
    PusTm,
    RequestId,
)
from spacelink.tcframe import MIN_FRAME_LENGTH, SetVr, TcFrame, Unlock, parse_control_command
from spacelink.tmdemux import PacketExtractor
from spacelink.tmframe import FrameSynchronizer, TmFrame, encode_channel_frame
from spacelink.tmmux import VirtualChannelMux
from telemetry_defs.loader import default_dictionary
from telemetry_defs.model import CodecError, Command, UnknownName
from telemetry_defs.valuetypes import DictionaryValueError
from tests.dictionary_samples import samples
from tools import model_gen

PARAMS = LinkParameters()
# The ground's synchronizer and demux take any frame length (LinkParameters.tm_frame_length);
# short frames let random mutations reach a marker, a whole frame and its FECF far more often.
SHORT_TM = LinkParameters(tm_frame_length=64, tm_coding=TmCoding.NONE)
PLAIN_TM = LinkParameters(tm_coding=TmCoding.NONE)
# The registry's size limit is the board's storage; a fuzzed model is far below any of them.
MAX_MODEL_BYTES = 16 * 1024**2
# A one-input model's signature (dynamic batch, 8 features), for check_input after load_input.
NPY_SIGNATURE = ModelSignature(
    inputs=(TensorSpec("x", "float32", (None, 8)),),
    outputs=(TensorSpec("y", "float32", (None, 8)),),
    opset=13,
    operators=frozenset({"Relu"}),
)

Accepted = tuple[type[BaseException], ...]


@dataclass(frozen=True)
class FuzzTarget:
    """One decoder under fuzzing: `run(data)` may raise only `accepted`; `seeds` are valid."""

    run: Callable[[bytes], object]
    accepted: Accepted
    seed_factory: Callable[[], list[bytes]] = field(repr=False)
    description: str = ""
    # Makes a mutated input's checksums and length fields agree again, so that mutations reach
    # the code behind the CRC checks (applied to a share of the inputs only: the checks too
    # must see bad values).
    fixup: Callable[[bytes], bytes] | None = field(default=None, repr=False)

    @cached_property
    def seeds(self) -> tuple[bytes, ...]:
        """The seed corpus, built on first use (some seeds are ONNX models)."""
        return tuple(self.seed_factory())


class ChunkingChangedTheOutput(AssertionError):
    """A streaming decoder gave other results for the same octets cut differently."""


def same_in_chunks(feed: Callable[[list[bytes]], list[object]], data: bytes) -> None:
    """Feed `data` whole and in `chunks`; the decoder must give the same results both ways."""
    whole = feed([data])
    cut = feed(chunks(data))
    if whole != cut:
        raise ChunkingChangedTheOutput(f"{len(whole)} results whole, {len(cut)} in chunks")


def chunks(data: bytes, most: int = 3) -> list[bytes]:
    """`data` cut into 1..`most` pieces where its last octet says, so that an input always
    splits alike: streaming decoders must give the same answers however octets arrive."""
    if not data:
        return [data]
    key = data[-1]
    count = 1 + key % most
    cuts = sorted({(key * 40503 * (i + 1)) % (len(data) + 1) for i in range(count - 1)})
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# -- checksum and length repairs --------------------------------------------------------------


def fix_packet(data: bytes) -> bytes:
    """A space packet with its length field and PEC recomputed for its octets."""
    if not PRIMARY_HEADER_LENGTH + PEC_LENGTH <= len(data) <= MAX_PACKET_LENGTH:
        return data
    body = bytearray(data[:-PEC_LENGTH])
    body[4:6] = (len(data) - PRIMARY_HEADER_LENGTH - 1).to_bytes(2, "big")
    return bytes(body) + crc16(body).to_bytes(2, "big")


def fix_tc_frame(data: bytes) -> bytes:
    """A TC frame (cut to the longest allowed) with its length field and FECF recomputed."""
    data = data[:TC_MAX_FRAME_LENGTH]
    if len(data) < MIN_FRAME_LENGTH:
        return data
    body = bytearray(data[:-TC_FECF_LENGTH])
    word1 = (int.from_bytes(body[2:4], "big") & 0xFC00) | (len(data) - 1)
    body[2:4] = word1.to_bytes(2, "big")
    return bytes(body) + crc16(body).to_bytes(2, "big")


def fix_tm_frame(data: bytes) -> bytes:
    """A TM frame with its FECF recomputed."""
    if len(data) <= TM_FECF_LENGTH:
        return data
    body = data[:-TM_FECF_LENGTH]
    return body + crc16(body).to_bytes(2, "big")


def fix_cltus(data: bytes, *, frames: bool = True) -> bytes:
    """The CLTUs in `data` re-encoded (BCH parity recomputed), their frames repaired first."""
    out = bytearray()
    for cltu in CltuDecoder().feed(data):
        content = cltu.data
        if frames and len(content) >= TC_HEADER_LENGTH:
            length = min((int.from_bytes(content[2:4], "big") & 0x3FF) + 1, len(content))
            content = fix_tc_frame(content[:length])
        if content:
            out += encode_cltu(content)
    return bytes(out) or data


def fix_line_frames(data: bytes, frame_length: int = SHORT_TM.tm_frame_length) -> bytes:
    """Downlink line octets with the FECF of every frame after a sync marker recomputed."""
    out = bytearray(data)
    mlen = len(ATTACHED_SYNC_MARKER)
    pos = out.find(ATTACHED_SYNC_MARKER)
    while 0 <= pos <= len(out) - mlen - frame_length:
        start = pos + mlen
        frame = fix_tm_frame(randomize(out[start : start + frame_length]))
        out[start : start + frame_length] = randomize(frame)
        pos = out.find(ATTACHED_SYNC_MARKER, start + frame_length)
    return bytes(out)


# -- uplink -------------------------------------------------------------------------------------


def _tc_packet(service: int, subtype: int, app_data: bytes = b"", seq: int = 0) -> bytes:
    return PusTc(PARAMS.apid, service, subtype, app_data, seq_count=seq).pack()


def _tc_frames() -> list[bytes]:
    """AD frames with one or several packets, a full-length frame, BC and BD frames."""
    scid, vcid = PARAMS.scid, PARAMS.tc_vcid
    big = _tc_packet(128, 3, bytes(range(256)) * 3)
    return [
        TcFrame(scid, vcid, 0, _tc_packet(17, 1)).pack(),
        TcFrame(scid, vcid, 1, _tc_packet(17, 1, seq=1) + _tc_packet(20, 1, b"\x00", 2)).pack(),
        TcFrame(scid, vcid, 0, big + bytes(TC_MAX_DATA_LENGTH - len(big))).pack(),
        TcFrame(scid, vcid, 0, SetVr(5).pack(), bypass=True, control=True).pack(),
        TcFrame(scid, vcid, 0, Unlock().pack(), bypass=True, control=True).pack(),
        TcFrame(scid, vcid, 9, _tc_packet(17, 1, seq=3), bypass=True).pack(),
    ]


def _cltu_seeds() -> list[bytes]:
    frames = _tc_frames()
    cltus = [encode_cltu(f) for f in frames]
    corrected = bytearray(cltus[0])
    corrected[5] ^= 0x10  # one bit error in the first codeblock: corrected
    return [*cltus, b"\x00\xeb" + cltus[0] + cltus[1] + b"\x90", bytes(corrected)]


def _cltu(data: bytes) -> None:
    def feed(pieces: list[bytes]) -> list[object]:
        decoder = CltuDecoder()
        return [cltu for piece in pieces for cltu in decoder.feed(piece)]

    same_in_chunks(feed, data)


def _uplink_seeds() -> list[bytes]:
    frames = _tc_frames()
    stream = b"".join(encode_cltu(f) for f in frames[:2])
    return [
        stream,
        encode_cltu(frames[3]) + encode_cltu(TcFrame(PARAMS.scid, 0, 5, _tc_packet(17, 1)).pack()),
        encode_cltu(frames[2]),
        encode_cltu(frames[5]) + encode_cltu(frames[4]),
        # A packet whose declared length runs past its frame, and a frame with trailing octets.
        encode_cltu(TcFrame(PARAMS.scid, 0, 0, _tc_packet(17, 1)[:-3]).pack()),
        encode_cltu(TcFrame(PARAMS.scid, 0, 0, _tc_packet(17, 1) + b"\x18\x64").pack()),
    ]


def _uplink(data: bytes) -> None:
    def feed(pieces: list[bytes]) -> list[object]:
        receiver = UplinkReceiver(PARAMS, Farm1(PARAMS.tc_vcid), LinkCounters())
        packets: list[object] = [p for piece in pieces for p in receiver.feed(piece)]
        return [*packets, receiver.counters.discarded, receiver.farm.clcw()]

    same_in_chunks(feed, data)


# Security associations the SDLS target knows: one per algorithm, fixed keys. SPI 3's counter is
# lost (a challenge waits) and SPI 4 answered one earlier (its MACs cover its nonce), so that
# those paths are fuzzed too.
FUZZ_SAS = (
    SecurityAssociation(1, Algorithm.HMAC_SHA256, bytes(range(32))),
    SecurityAssociation(2, Algorithm.AES_CMAC, bytes(range(16))),
    SecurityAssociation(3, Algorithm.AES_GCM, bytes(range(32))),
    SecurityAssociation(4, Algorithm.AES_GCM, bytes(range(16))),
)
FUZZ_NONCES = {3: bytes(range(0xA0, 0xB0)), 4: bytes(range(0xC0, 0xD0))}


def _security_processor() -> SecurityProcessor:
    return SecurityProcessor(
        FUZZ_SAS,
        {1: SaState(10), 3: SaState(0, FUZZ_NONCES[3], True), 4: SaState(5, FUZZ_NONCES[4])},
    )


def _sdls_seeds() -> list[bytes]:
    frames = [TcFrame.unpack(f) for f in _tc_frames()]
    out = []
    for n, frame in enumerate(frames):
        for sa in FUZZ_SAS:
            if len(frame.data) + sa.overhead > TC_MAX_DATA_LENGTH:
                frame = dataclasses.replace(frame, data=frame.data[: -sa.overhead])
            nonce = FUZZ_NONCES.get(sa.spi, b"")
            out.append(apply_security(frame, sa, 11 + n, nonce, bytes(6)).pack())
    return out


def fix_sdls_frame(data: bytes) -> bytes:
    """A secured TC frame whose MAC is made again under the SA it names (when it names one and
    is long enough), then its length and FECF: mutations reach the checks behind the MAC."""
    data = fix_tc_frame(data)
    try:
        frame = TcFrame.unpack(data)
    except FrameError:
        return data
    sa = next((a for a in FUZZ_SAS if frame.data[:2] == a.spi.to_bytes(2, "big")), None)
    if sa is None or len(frame.data) < sa.overhead + 1:
        return data
    arsn = int.from_bytes(frame.data[sa.header_length - 4 : sa.header_length], "big")
    if arsn < MIN_ARSN:  # no sender secures it: left for the receiver to refuse
        return data
    plain = frame.data[sa.header_length : -16]
    nonce = FUZZ_NONCES.get(sa.spi, b"")
    salt = frame.data[4:10] if sa.algorithm is Algorithm.AES_GCM else None
    return apply_security(TcFrame(frame.scid, frame.vcid, frame.seq, plain, frame.bypass,
                                  frame.control), sa, arsn, nonce, salt).pack()  # fmt: skip


def _sdls(data: bytes) -> None:
    _security_processor().process(TcFrame.unpack(data), data[:5])


def _space_packet(data: bytes) -> None:
    PrimaryHeader.unpack(data)
    PusTc.unpack(data)


def _command_list() -> list[Command]:
    commands = default_dictionary().commands.values()
    return sorted(commands, key=lambda c: (c.service, c.subtype))


def _command_seeds() -> list[bytes]:
    dictionary = default_dictionary()
    out = []
    for index, command in enumerate(_command_list()):
        for values in samples(dictionary, command.layout):
            out.append(bytes([index]) + command.encode(values))
    return out


def _command_arguments(data: bytes) -> None:
    """The first octet picks a dictionary command; the rest is its application data."""
    if not data:
        return
    commands = _command_list()
    commands[data[0] % len(commands)].decode(data[1:])


def _space_packet_seeds() -> list[bytes]:
    commands = _command_list()
    out = []
    for seed in _command_seeds()[::3]:
        command = commands[seed[0]]
        out.append(_tc_packet(command.service, command.subtype, seed[1:], seed[0]))
    return out


# -- downlink -----------------------------------------------------------------------------------


def _tm_packets() -> list[bytes]:
    """TM packets of every kind the dictionary defines (low and high samples), and reports."""
    d = default_dictionary()
    time = CdsTime.from_unix(1.7e9)
    out: list[tuple[int, int, bytes]] = []
    for p in d.packets.values():
        out += [(p.service, p.subtype, p.layout.build(v)) for v in samples(d, p.layout)]
    for h in d.housekeeping.values():
        out += [(3, 25, d.encode_housekeeping(h.sid, v)) for v in samples(d, h.layout)]
    for e in d.events.values():
        for values in samples(d, e.layout):
            severity, data = d.encode_event(e.name, values)
            out.append((5, int(severity), data))
    request = RequestId(0x1800 | PARAMS.apid, 0xC007)
    for report in (
        VerificationReport(Stage.ACCEPTANCE, True, request),
        VerificationReport(Stage.PROGRESS, False, request, 2, failure_code=6, failure_data=b"x"),
    ):
        out.append((VERIFICATION_SERVICE, report.subtype, report.pack()))
    return [
        PusTm(PARAMS.apid, service, subtype, data, seq_count=i, time=time).pack()
        for i, (service, subtype, data) in enumerate(out)
    ]


def _tm_packet(data: bytes) -> None:
    """As the ground's session, live view and archive read a packet."""
    tm = PusTm.unpack(data)
    tm.time.to_unix()
    if tm.service == VERIFICATION_SERVICE:
        VerificationReport.unpack(tm.subtype, tm.source_data)
        return
    dictionary = default_dictionary()
    decoded = dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
    dictionary.describe_values(decoded)


def _mux_frames(params: LinkParameters, packets: Sequence[bytes]) -> list[TmFrame]:
    """Frames as the payload's multiplexer makes them (packets spanning frames, idle fill)."""
    mux = VirtualChannelMux(params, lambda: Farm1(params.tc_vcid).clcw().to_int())
    for i, packet in enumerate(packets):
        mux.push(i % 2, packet)
    frames = []
    while (line := mux.next_frame()) is not None:
        frames.append(line)
    frames.append(mux.next_frame(idle=True) or b"")
    # The line octets are the marker and the randomized frame; the same XOR undoes it.
    return [TmFrame.unpack(randomize(f[len(ATTACHED_SYNC_MARKER) :])) for f in frames]


def _line_octets(params: LinkParameters, packets: Sequence[bytes]) -> bytes:
    return b"".join(encode_channel_frame(f.pack()) for f in _mux_frames(params, packets))


def _tm_frame_seeds() -> list[bytes]:
    packets = _tm_packets()
    short = [f.pack() for f in _mux_frames(SHORT_TM, packets[:4])]
    full = [f.pack() for f in _mux_frames(PLAIN_TM, packets[:3])]
    return short[:6] + full[:2]


def _tm_sync_seeds() -> list[bytes]:
    packets = _tm_packets()
    return [
        _line_octets(SHORT_TM, packets[:1]),
        _line_octets(SHORT_TM, packets[1:4]),
        b"\x1a\xcf" + _line_octets(SHORT_TM, packets[5:7]),
    ]


def _tm_sync(data: bytes) -> None:
    def feed(pieces: list[bytes]) -> list[object]:
        sync = FrameSynchronizer(scid=SHORT_TM.scid, frame_length=SHORT_TM.tm_frame_length)
        return [frame for piece in pieces for frame in sync.feed(piece)]

    same_in_chunks(feed, data)


def _rs_line(packets: Sequence[bytes]) -> bytes:
    mux = VirtualChannelMux(PARAMS, lambda: Farm1(PARAMS.tc_vcid).clcw().to_int())
    for packet in packets:
        mux.push(0, packet)
    return b"".join(iter(mux.next_frame, None)) + (mux.next_frame(idle=True) or b"")


def _tm_rs_sync_seeds() -> list[bytes]:
    packets = _tm_packets()
    return [_rs_line(packets[:2]), b"\x1a\xcf\xfc" + _rs_line(packets[2:3])]


def _tm_rs_sync(data: bytes) -> None:
    # The Reed-Solomon decoder sees whatever the line brings: it corrects, or counts the
    # codeblock uncorrectable, never raises.
    def feed(pieces: list[bytes]) -> list[object]:
        sync = FrameSynchronizer(scid=PARAMS.scid, coding=TmCoding.RS)
        return [frame for piece in pieces for frame in sync.feed(piece)]

    same_in_chunks(feed, data)


# A demux input is a sequence of records, one frame each: VCID, VC count, first header pointer
# (2 octets), data length (1 octet), then that many data octets (fewer at the end of the input).
_RECORD_HEAD = 5


def frames_from_records(data: bytes) -> list[TmFrame]:
    """The TM frames a demux fuzz input describes (see `_RECORD_HEAD`)."""
    frames = []
    pos = 0
    while len(data) - pos >= _RECORD_HEAD:
        vcid, count, fhp_high, fhp_low, length = data[pos : pos + _RECORD_HEAD]
        body = data[pos + _RECORD_HEAD : pos + _RECORD_HEAD + length]
        pos += _RECORD_HEAD + length
        fhp = ((fhp_high << 8) | fhp_low) & 0x7FF
        frames.append(TmFrame(PARAMS.scid, vcid & 0x7, 0, count, fhp, body, 0))
    return frames


def records_from_frames(frames: Sequence[TmFrame]) -> bytes:
    """Inverse of `frames_from_records` for frames of at most 255 data octets."""
    out = bytearray()
    for f in frames:
        out += bytes([f.vcid, f.vc_count, f.fhp >> 8, f.fhp & 0xFF, len(f.data)]) + f.data
    return bytes(out)


def _tm_demux_seeds() -> list[bytes]:
    packets = _tm_packets()
    return [
        records_from_frames(_mux_frames(SHORT_TM, packets[:6])),
        records_from_frames(_mux_frames(SHORT_TM, packets[-3:])),
    ]


def _tm_demux(data: bytes) -> None:
    extractor = PacketExtractor()
    for frame in frames_from_records(data):
        extractor.feed(frame)


def _clcw(data: bytes) -> None:
    str(Clcw.unpack(data))


# -- jobs: uploaded files ----------------------------------------------------------------------


def _npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array, version=version, allow_pickle=False)
    return out.getvalue()


def _npy_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((2, 8)).astype(np.float32)
    return [
        _npy(features),
        _npy(np.asfortranarray(rng.standard_normal((3, 8)).astype(np.float32))),
        _npy(features.astype(">f4")),
        _npy(features, version=(2, 0)),
        _npy(np.arange(6, dtype=np.int64).reshape(2, 3)),
        _npy(np.array(True)),
        _npy(np.zeros(3, dtype=[("a", "<u2"), ("b", ">f8")])),
    ]


def fix_npy_size(data: bytes) -> bytes:
    """The array data cut or zero-padded to the size its header declares (up to 1 MiB), so
    that header mutations reach numpy's reader rather than stopping at the size check."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(stream)
        declared = math.prod(shape) * dtype.itemsize
    except Exception:  # a header numpy cannot read stays as it is: the decoder's business
        return data
    if not 0 <= declared <= 1 << 20:
        return data
    body = data[stream.tell() :]
    return data[: stream.tell()] + body[:declared].ljust(declared, b"\0")


def _npy_input(data: bytes) -> None:
    check_input(NPY_SIGNATURE, load_input(data))


def _tiny_cnn() -> onnx.ModelProto:
    """Conv, Constant nodes with dense and sparse tensor attributes: more of the wire format."""
    rng = np.random.default_rng(4)
    weight = numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.array([0.5, -0.5], dtype=np.float32), "b")
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([1.5], dtype=np.float32), "k_values"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "k_indices"),
        [1],
    )
    scale = numpy_helper.from_array(np.array([0.25], dtype=np.float32), "s_value")
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["k"], sparse_value=sparse),
            helper.make_node("Constant", [], ["s"], value=scale),
            helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
            helper.make_node("Add", ["c", "k"], ["a"]),
            helper.make_node("Mul", ["a", "s"], ["m"]),
            helper.make_node("GlobalAveragePool", ["m"], ["p"]),
            helper.make_node("Flatten", ["p"], ["y"]),
        ],
        "tiny_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _onnx_seeds() -> list[bytes]:
    models = [
        model_gen.mlp(widths=(8, 6, 4)),
        model_gen.mlp(seed=5, opset=17, widths=(4, 3)),
        _tiny_cnn(),
        model_gen.loop_model(),
        model_gen.custom_domain_model(),
        model_gen.unsupported_type_model(),
    ]
    return [model_gen.model_bytes(m) for m in models]


def mutate_model_fields(data: bytes) -> bytes:
    """A model with 1 to 3 of its protobuf fields changed, chosen by `data` (see `_mutate`).

    Byte mutations mostly break the protobuf encoding, so the validator's parse refuses them;
    these reach the checker, the opset, operator and type checks with a well-formed message.
    `data` itself if it parses as a model, else a seed, is the starting point.
    """
    rng = random.Random(data)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
        return _mutated(model, rng)
    except (DecodeError, ValueError):  # not a model, or strings that are not UTF-8
        model.ParseFromString(rng.choice(TARGETS["onnx_model"].seeds))
        return _mutated(model, rng)


def _mutated(model: onnx.ModelProto, rng: random.Random) -> bytes:
    names = _names(model)
    for _ in range(rng.randint(1, 3)):
        _mutate(model, rng, names)
    return model.SerializeToString()


def _names(message: Message) -> list[str]:
    """Every string in the message tree: references to swap in (inputs, outputs, names)."""
    out: list[str] = []
    for fd, value in message.ListFields():
        items = value if _repeated(fd) else [value]
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            for item in items:
                out += _names(item)
        elif fd.type == FieldDescriptor.TYPE_STRING:
            out += items
    return out


def _repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


_EDGE_INTS = (0, 1, -1, 2, 7, 255, 2**31 - 1, -(2**31), 2**63 - 1)
_EDGE_FLOATS = (0.0, -1.0, float("nan"), float("inf"), 1e38)


def _mutate(message: Message, rng: random.Random, names: Sequence[str]) -> None:
    """Change, drop or duplicate one field somewhere under `message` (one step per level)."""
    fields = message.ListFields()
    if not fields:
        return
    fd, value = rng.choice(fields)
    if _repeated(fd) and len(value) and rng.random() < 0.25:
        if rng.random() < 0.5:
            del value[rng.randrange(len(value))]
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            value.add().CopyFrom(rng.choice(value))
        else:
            value.append(rng.choice(value))
        return
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        if rng.random() < 0.1:
            message.ClearField(fd.name)
            return
        sub = rng.choice(value) if _repeated(fd) else value
        _mutate(sub, rng, names)
        return
    index = rng.randrange(len(value)) if _repeated(fd) else None
    old = value[index] if index is not None else value
    new = _new_scalar(fd, old, rng, names)
    with contextlib.suppress(ValueError, TypeError):  # out of the field's type: no change
        if index is not None:
            value[index] = new
        else:
            setattr(message, fd.name, new)


def _new_scalar(
    fd: FieldDescriptor, old: object, rng: random.Random, names: Sequence[str]
) -> object:
    if fd.type == FieldDescriptor.TYPE_STRING:
        choices = [rng.choice(names) if names else "", "", str(old) + "_", str(old)[:-1]]
        return rng.choice(choices)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        raw = bytes(old) if isinstance(old, bytes) else b""
        cut = rng.randint(0, len(raw))
        return rng.choice([raw[:cut], raw + rng.randbytes(rng.randint(1, 16)), b""])
    if fd.cpp_type in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return rng.choice(_EDGE_FLOATS)
    if fd.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return not old
    number = int(old) if isinstance(old, int) else 0
    return rng.choice((*_EDGE_INTS, number + 1, number - 1, rng.randint(-(2**16), 2**16)))


def _onnx_model(data: bytes) -> None:
    """As the model registry registers an upload: validation, then the golden checksums."""
    validate_model(data, max_size=MAX_MODEL_BYTES)
    weight_checksums(data)


def _verbatim(*items: bytes) -> Callable[[], list[bytes]]:
    return lambda: list(items)


TARGETS: dict[str, FuzzTarget] = {
    "cltu": FuzzTarget(
        _cltu,
        (),
        _cltu_seeds,
        "CltuDecoder.feed, whole and in 1 to 3 chunks (same CLTUs)",
        lambda data: fix_cltus(data, frames=False),
    ),
    "tc_frame": FuzzTarget(
        TcFrame.unpack, (FrameError,), _tc_frames, "TcFrame.unpack", fix_tc_frame
    ),
    "sdls": FuzzTarget(
        _sdls,
        (FrameError, SecurityError),
        _sdls_seeds,
        "SecurityProcessor.process on a TC frame (4 SAs, one challenged; MAC remade)",
        fix_sdls_frame,
    ),
    "control_command": FuzzTarget(
        parse_control_command,
        (FrameError,),
        _verbatim(Unlock().pack(), SetVr(0).pack(), SetVr(255).pack()),
        "parse_control_command (COP-1 BC frame data)",
    ),
    "uplink_chain": FuzzTarget(
        _uplink,
        (),
        _uplink_seeds,
        "UplinkReceiver.feed with FARM-1, whole and in chunks",
        fix_cltus,
    ),
    "space_packet": FuzzTarget(
        _space_packet,
        (PacketError,),
        _space_packet_seeds,
        "PrimaryHeader.unpack, PusTc.unpack",
        fix_packet,
    ),
    "command_arguments": FuzzTarget(
        _command_arguments,
        (CodecError, DictionaryValueError),
        _command_seeds,
        "a dictionary command's argument decoder (first octet picks the command)",
    ),
    "tm_frame": FuzzTarget(
        TmFrame.unpack, (FrameError,), _tm_frame_seeds, "TmFrame.unpack", fix_tm_frame
    ),
    "tm_sync": FuzzTarget(
        _tm_sync,
        (),
        _tm_sync_seeds,
        "FrameSynchronizer.feed (64-octet frames), whole and in chunks",
        fix_line_frames,
    ),
    "tm_rs_sync": FuzzTarget(
        _tm_rs_sync,
        (),
        _tm_rs_sync_seeds,
        "FrameSynchronizer.feed with Reed-Solomon (1279 line octets a frame), whole and in chunks",
    ),
    "tm_demux": FuzzTarget(
        _tm_demux, (), _tm_demux_seeds, "PacketExtractor.feed on frames built from the input"
    ),
    "tm_packet": FuzzTarget(
        _tm_packet,
        (PacketError, CodecError, UnknownName),
        _tm_packets,
        "PusTm.unpack, then the dictionary's decode_tm and describe_values (or TM[1,x])",
        fix_packet,
    ),
    "clcw": FuzzTarget(
        _clcw,
        (),
        lambda: [Farm1(0).clcw().pack(), Clcw(0, 200, lockout=True, wait=True).pack()],
        "Clcw.unpack",
    ),
    "npy_input": FuzzTarget(
        _npy_input,
        (InputMismatch,),
        _npy_seeds,
        "load_input then check_input: an uploaded .npy",
        fix_npy_size,
    ),
    "onnx_model": FuzzTarget(
        _onnx_model,
        (ModelRejected,),
        _onnx_seeds,
        "validate_model then weight_checksums: an uploaded model file",
        mutate_model_fields,
    ),
}
