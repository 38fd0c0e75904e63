"""Models, jobs and files through `groundsw` against a payload on the emulated link: upload and
register a model, run a TMR job and check its result bit for bit against onnxruntime on the
ground, refusals named by their failure codes, and an upload resumed across a payload crash."""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from flight.jobs.executor import reference_session
from hil.bench import Bench
from hil.impairments import Impairments
from telemetry_defs.loader import DEFAULT_DIRECTORY
from tests.harness import BIN, run_tool
from tests.hil.onboard import with_quick_idle
from tools import model_gen

pytestmark = pytest.mark.hil

# The line rate of every test that talks to a payload: none of them is about the rate, and each
# groundsw command's link set-up and reports take an eighth of their time at 115200.
FAST_BAUD = 921600


def tiny_gemm(seed: int = 5) -> onnx.ModelProto:
    """y = softmax(x W + b): a model of a few kB, so the tests spend their time on the job."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((64, 10)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["z"]),
            helper.make_node("Softmax", ["z"], ["y"], axis=1),
        ],
        "tiny_gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def groundsw(bench: Bench, data: Path, *args: str, timeout: float = 120) -> tuple[int, str, str]:
    result = run_tool(
        "groundsw",
        "--port",
        bench.ground_port,
        "--baud",
        str(bench.baud),
        "--data-dir",
        str(data),
        *args,
        timeout=timeout,
    )
    return result.returncode, result.stdout, result.stderr


def one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def local_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = reference_session(model_gen.model_bytes(model))
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])


def run_job(bench: Bench, data: Path, name: str, x: np.ndarray, *options: str) -> np.ndarray:
    """`job submit` with `x` as input, `job wait`, `job result`: the result array."""
    npy = data.parent / f"{name}-input.npy"
    np.save(npy, x, allow_pickle=False)
    code, out, err = groundsw(
        bench, data, "job", "submit", "--model", name, "--input", str(npy), *options
    )
    assert code == 0, err
    job_id = out.strip().splitlines()[-1]
    code, out, err = groundsw(bench, data, "job", "wait", job_id, "--timeout", "120", timeout=150)
    assert code == 0, err
    result = data.parent / f"{name}-result.npy"
    code, out, err = groundsw(bench, data, "job", "result", job_id, "--out", str(result))
    assert code == 0, err
    return np.load(result, allow_pickle=False)


def upload_model(bench: Bench, data: Path, model: onnx.ModelProto, name: str) -> str:
    path = data.parent / f"{name}.onnx"
    path.write_bytes(model_gen.model_bytes(model))
    code, out, err = groundsw(bench, data, "model", "upload", str(path), "--name", name)
    assert code == 0, err
    return out


def test_a_tmr_job_runs_and_its_result_is_bit_exact(
    make_bench: Callable[..., Bench], tmp_path: Path
) -> None:
    bench = make_bench(baud=FAST_BAUD, flight_args=with_quick_idle(tmp_path, FAST_BAUD))
    data = tmp_path / "ground"
    data.mkdir()
    model = tiny_gemm()
    out = upload_model(bench, data, model, "gemm")
    assert "registered gemm version 1" in out
    assert "signature" in out and "x" in out
    assert "upload gemm-v1.onnx: " in out and " octets in " in out

    code, out, err = groundsw(bench, data, "model", "list")
    assert code == 0, err
    assert any(line.split()[:2] == ["gemm", "v1"] for line in out.splitlines())
    # Run again: the payload holds this very model (MODEL_INFO says so), nothing is sent.
    out = upload_model(bench, data, model, "gemm")
    assert "model gemm version 1 is registered already with SHA-256 " in out
    assert "upload gemm-v1.onnx" not in out and "nothing sent" in out
    assert "model gemm version 1: " in out  # the payload's description of it

    x = model_gen.random_input(model, batch=2, seed=3)
    npy = tmp_path / "x.npy"
    np.save(npy, x)
    code, out, err = groundsw(
        bench, data, "job", "submit", "--model", "gemm", "--input", str(npy), "--redundancy", "tmr"
    )
    assert code == 0, err
    job_id = out.splitlines()[-1]
    assert job_id.isdigit(), out
    assert "accepted" in out

    code, out, err = groundsw(bench, data, "job", "wait", job_id, "--timeout", "60", timeout=90)
    assert code == 0, err
    assert f"job {job_id}: SUCCEEDED 100%" in out
    assert "redundancy  TMR" in out and "runs        3" in out
    assert "model       gemm version 1, input input-" in out  # the version that ran

    result = tmp_path / "y.npy"
    code, out, err = groundsw(bench, data, "job", "result", job_id, "--out", str(result))
    assert code == 0, err
    y = np.load(result, allow_pickle=False)
    expected = local_run(model, x)
    assert y.dtype == expected.dtype and y.shape == expected.shape
    assert y.tobytes() == expected.tobytes()  # bit for bit

    # The same input again, on a held queue: its content-addressed file is on board already,
    # nothing is sent, and the wait says why the job does not start.
    code, out, err = groundsw(bench, data, "cmd", "PARAM_SET", "JOB_QUEUE_HOLD=true")
    assert code == 0, err
    code, out, err = groundsw(bench, data, "job", "submit", "--model", "gemm", "--input", str(npy))
    assert code == 0, err
    assert "stored on board already" in out
    held = out.splitlines()[-1]
    assert held.isdigit() and held != job_id
    code, out, err = groundsw(bench, data, "job", "wait", held, "--timeout", "1")
    assert code == 3
    assert "the queue is held (JOB_QUEUE_HOLD is true)" in out
    assert f"job {held} is still QUEUED after 1 s: the queue is held" in one_sentence(err)

    code, out, err = groundsw(bench, data, "job", "list")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert ["JOB", "STATE", "DONE", "PRIORITY", "MODEL"] in [row[:5] for row in rows]
    assert [job_id, "SUCCEEDED", "100%", "0", "gemm", "v1"] in [row[:6] for row in rows]
    assert [held, "QUEUED", "0%", "0", "gemm", "v1"] in [row[:6] for row in rows]

    code, _, err = groundsw(bench, data, "job", "cancel", job_id)
    assert code == 1
    assert "JOB_ALREADY_FINISHED (code 286)" in one_sentence(err)


def test_refusals_are_named_by_their_failure_codes(
    make_bench: Callable[..., Bench], tmp_path: Path
) -> None:
    bench = make_bench(baud=FAST_BAUD, flight_args=with_quick_idle(tmp_path, FAST_BAUD))
    data = tmp_path / "ground"
    data.mkdir()
    upload_model(bench, data, tiny_gemm(), "gemm")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((1, 63), np.float32))
    code, out, err = groundsw(
        bench, data, "job", "submit", "--model", "gemm", "--input", str(wrong)
    )
    assert code == 2  # refused on the ground, from the model's signature: nothing uploaded
    sentence = one_sentence(err)
    assert "does not fit model gemm version 1 (x float32[?,64] -> y float32[?,10])" in sentence
    assert sentence.endswith("input x: axis 1 is 63, the model needs 64")
    assert "upload" not in out

    code, _, err = groundsw(bench, data, "job", "submit", "--model", "nope", "--input", str(wrong))
    assert code == 1
    assert "UNKNOWN_MODEL (code 277)" in one_sentence(err)

    code, _, err = groundsw(bench, data, "job", "status", "999999")
    assert code == 1
    assert "UNKNOWN_JOB (code 285)" in one_sentence(err)

    # A registered name and version again: the file is uploaded, then the registry refuses.
    code, out, err = groundsw(bench, data, "model", "delete", "gemm", "--version", "1")
    assert code == 0, err
    code, _, err = groundsw(bench, data, "model", "info", "gemm")
    assert code == 1
    assert "UNKNOWN_MODEL (code 277)" in one_sentence(err)

    # Another dictionary than the payload's: refused before anything is sent, unless forced.
    other = tmp_path / "dictionary"
    shutil.copytree(DEFAULT_DIRECTORY, other)
    events = other / "events.toml"
    events.write_text(events.read_text().replace('severity = "low"', 'severity = "medium"', 1))
    code, _, err = groundsw(bench, data, "--dictionary", str(other), "file", "list")
    assert code == 4
    assert "use --force" in one_sentence(err)
    code, out, err = groundsw(bench, data, "--dictionary", str(other), "file", "list", "--force")
    assert code == 0, err
    assert "files," in out

    not_onnx = tmp_path / "junk.onnx"
    not_onnx.write_bytes(b"this is not a model" * 10)
    code, _, err = groundsw(bench, data, "model", "upload", str(not_onnx), "--name", "junk")
    assert code == 1
    assert "MODEL_NOT_ONNX (code 270)" in one_sentence(err)


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["job", "submit", "--model", "m", "--input", "missing.npy"], "does not exist"),
        (["job", "submit", "--model", "m", "--input", "{txt}"], "is not a .npy file"),
        (
            ["job", "submit", "--model", "m", "--input", "{npy}", "--redundancy", "quad"],
            "unknown redundancy 'quad'",
        ),
        (["job", "submit", "--model", "m", "--input", "{npy}", "--bogus"], "unrecognised"),
        (["job", "wait", "x"], "job ID 'x' is not a number"),
        (["model", "upload", "{txt}", "--name", ".m"], "model name '.m' is not"),
        (["model", "delete", "m"], "required: --version"),
        (["file", "upload", "missing.bin"], "does not exist"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(
    tmp_path: Path, args: list[str], sentence: str
) -> None:
    txt = tmp_path / "t.npy"
    txt.write_text("not numpy")
    npy = tmp_path / "ok.npy"
    np.save(npy, np.zeros(3, np.float32))
    args = [a.format(txt=txt, npy=npy) for a in args]
    result = run_tool("groundsw", "--port", "/dev/null/none", "--data-dir", str(tmp_path), *args)
    assert result.returncode == 2, result.stderr
    assert sentence in one_sentence(result.stderr)


def test_an_upload_resumes_after_a_payload_crash(
    make_bench: Callable[..., Bench], tmp_path: Path
) -> None:
    bench: Bench = make_bench(baud=FAST_BAUD, flight_args=with_quick_idle(tmp_path, FAST_BAUD))
    data = tmp_path / "ground"
    data.mkdir()
    # 60 % of it (where the upload is cut) must pass the store's first sync, at 256 KiB.
    content = np.random.default_rng(1).bytes(600_000)
    local = tmp_path / "big.bin"
    local.write_bytes(content)
    command = [
        str(BIN / "groundsw"), "--port", bench.ground_port, "--baud", str(FAST_BAUD),
        "--data-dir", str(data), "file", "upload", str(local),
    ]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        seen = []
        for line in first.stdout:
            seen.append(line)
            if line.startswith("upload big.bin: 60%"):
                break
        else:
            pytest.fail(f"the upload ended before 60%: {seen} {first.stderr}")
        bench.stop_flight(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    bench.start_flight()
    # The upload in progress is listed with the size it reserves and what it holds of it.
    code, out, err = groundsw(bench, data, "file", "list")
    assert code == 0, err
    assert "0 files, 1 uploads in progress: 600000 of " in out
    listed = re.search(r"600000  big\.bin  \(uploading, reserved: (\d+) received", out)
    assert listed is not None, out
    t0 = time.monotonic()
    code, out, err = groundsw(bench, data, "file", "upload", str(local))
    assert code == 0, err
    elapsed = time.monotonic() - t0
    resumed = next(line for line in out.splitlines() if "resuming" in line)
    already = int(resumed.split("resuming, ")[1].split()[0])
    # What the payload had made durable before the crash (it syncs every 256 KiB) stays.
    assert 262_144 <= already < len(content), out
    assert already == int(listed[1])  # what the list said it held
    assert f"stored big.bin: {len(content)} octets" in out
    print(f"resumed upload: {len(content) - already} octets in {elapsed:.1f} s")  # goodput

    code, out, err = groundsw(bench, data, "file", "list")
    assert code == 0, err
    assert any(line.split() == [str(len(content)), "big.bin"] for line in out.splitlines())
    back = tmp_path / "back.bin"
    code, out, err = groundsw(bench, data, "file", "download", "big.bin", "--out", str(back))
    assert code == 0, err
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(content).digest()
    code, out, err = groundsw(bench, data, "file", "delete", "big.bin")
    assert code == 0, err


@pytest.mark.slow
def test_the_generated_cnn_runs_under_tmr(make_bench: Callable[..., Bench], tmp_path: Path) -> None:
    # The demo's 3.6 MB classifier: about a minute of upload at 921600 baud (six at 115200).
    bench: Bench = make_bench(baud=FAST_BAUD)
    data = tmp_path / "ground"
    data.mkdir()
    model = model_gen.cnn_classifier()
    out = upload_model(bench, data, model, "cnn")
    assert "registered cnn version 1" in out
    x = model_gen.random_input(model, batch=1, seed=7)
    result = run_job(bench, data, "cnn", x, "--redundancy", "tmr")
    assert result.tobytes() == local_run(model, x).tobytes()


def test_a_1_mib_model_arrives_bit_exact_at_921600_with_ber_1e5(
    make_bench: Callable[..., Bench], tmp_path: Path
) -> None:
    # Bit errors both ways: corrupted CLTUs are retransmitted by COP-1, lost reports and chunks
    # of status are asked again; the SHA-256 checked on board is the proof of arrival.
    line = Impairments(ber=1e-5)
    bench = make_bench(baud=FAST_BAUD, uplink=line, downlink=line, seed=11)
    model = model_gen.mlp(seed=4, widths=(256, 512, 256, 16))
    blob = model_gen.model_bytes(model)
    assert len(blob) >= 2**20
    data = tmp_path / "ground"
    start = time.monotonic()
    out = upload_model(bench, data, model, "mib")
    elapsed = time.monotonic() - start
    assert f"sha256     {hashlib.sha256(blob).hexdigest()}" in out
    up, down = bench.link.stats("uplink"), bench.link.stats("downlink")
    assert up.bits_flipped > 0 and down.bits_flipped > 0  # the errors really happened
    print(
        f"1 MiB model at {FAST_BAUD} baud, BER 1e-5: {len(blob)} octets in {elapsed:.1f} s,"
        f" {up.bits_flipped} uplink and {down.bits_flipped} downlink bits flipped"
    )
    # The job that proves the model bit-exact runs on a clean line: JOB_SUBMIT is the one
    # command groundsw cannot ask again (a second would queue a second job), and at this BER one
    # TM frame in twelve, its answer with it, is lost (the operator is told to `job list`).
    for direction in ("uplink", "downlink"):
        bench.link.set_impairments(direction, Impairments())
    x = np.random.default_rng(2).standard_normal((2, 256)).astype(np.float32)
    assert run_job(bench, data, "mib", x).tobytes() == local_run(model, x).tobytes()
