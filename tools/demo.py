"""`make demo`: the whole story over the emulated serial link.

Starts the HIL bench (link emulator at 921600 baud + payload-flight), then, with the real
`groundsw` as an operator would: checks the link, uploads a CNN classifier made by
tools/model_gen.py, submits a TMR inference job, fetches the result and compares it with a
local onnxruntime run of the same model and input (bit-exact on the CPU), injects an upset into
the model's weights and watches a scrub pass repair it, watches housekeeping and the thermal
governor (the bench's thermal model on a warm baseplate) while a longer job runs, prints a
summary and stops everything.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from flight.jobs.executor import reference_session
from hil.bench import Bench
from tools.model_gen import cnn_classifier, random_input, save, slow_model

BIN = Path(sys.executable).parent
BAUD = 921600


class DemoFailed(Exception):
    """A step of the demo went wrong; the message says which."""


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


class Operator:
    """Runs groundsw against the bench and shows what it prints."""

    def __init__(self, port: str, data_dir: Path, key_file: Path | None) -> None:
        self.base = [str(BIN / "groundsw"), "--port", port, "--baud", str(BAUD)]
        self.base += ["--data-dir", str(data_dir)]
        if key_file is not None:
            self.base += ["--keys", str(key_file)]

    def run(self, title: str, *args: str, sections: tuple[str, ...] = ()) -> tuple[str, float]:
        """Run groundsw; show its output (only these sections of a live table, if given)."""
        banner(f"groundsw {' '.join(args)}  ({title})")
        start = time.monotonic()
        result = subprocess.run([*self.base, *args], text=True, capture_output=True)
        elapsed = time.monotonic() - start
        print(_only_sections(result.stdout, sections) if sections else result.stdout, end="")
        if result.returncode != 0:
            print(result.stderr, end="", file=sys.stderr)
            raise DemoFailed(f"groundsw {args[0]} {args[1]} exited with {result.returncode}")
        return result.stdout, elapsed


def _only_sections(text: str, sections: tuple[str, ...]) -> str:
    """The lines of the named [SECTION]s of a plain live table (the last print of each)."""
    kept: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1] if line[1:-1] in sections else None
            if current is not None:
                kept[current] = [line]
        elif current is not None and line.strip():
            kept[current].append(line)
    return "".join(line + "\n" for name in sections for line in kept.get(name, []))


# The bench's thermal model for the demo: a warm spacecraft, and an hour of heat in 3 minutes.
DEMO_BASEPLATE_C = 45.0
DEMO_TIME_SCALE = 20.0


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="payload-demo-"))
    banner("making the demo model and input from fixed seeds (tools/model_gen.py)")
    model = cnn_classifier(seed=1)
    model_path = workdir / "cnn.onnx"
    save(model, model_path)
    x = random_input(model, batch=4, seed=7)
    input_path = workdir / "images.npy"
    np.save(input_path, x, allow_pickle=False)
    print(f"{model_path.name}: {model_path.stat().st_size} octets, input {x.shape} {x.dtype}")

    banner(f"starting the HIL bench: emulated {BAUD}-baud serial link + payload-flight")
    try:
        config = workdir / "payload.toml"
        config.write_text("[protection]\ntest_commands = true\n")
        with Bench(
            workdir / "state",
            baud=BAUD,
            flight_args=["--config", str(config)],
            baseplate_c=DEMO_BASEPLATE_C,
            time_scale=DEMO_TIME_SCALE,
        ) as bench:
            print(f"payload on {bench.link.flight_port}, ground on {bench.ground_port}")
            print(f"uplink authenticated with the bench's development key {bench.key_file}")
            op = Operator(bench.ground_port, workdir / "ground-data", bench.key_file)
            op.run(
                "TC[17,1] through CLTU/BCH, TC frames secured with a MAC, COP-1, PUS-C",
                "ping", "--count", "2",
            )  # fmt: skip
            op.run("KEY_ROTATE: a new key, wrapped under the current one", "key", "rotate")
            _, upload_s = op.run(
                "chunks in the FOP-1 window, SHA-256 checked on board, then validated",
                "model", "upload", str(model_path), "--name", "cnn",
            )  # fmt: skip
            op.run("the registry", "model", "list")
            out, _ = op.run(
                "the input goes up too; the job ID is the last line",
                "job", "submit", "--model", "cnn", "--input", str(input_path),
                "--redundancy", "tmr",
            )  # fmt: skip
            job_id = out.strip().splitlines()[-1]
            op.run("until the job is final", "job", "wait", job_id, "--timeout", "120")
            status, _ = op.run("the job's record", "job", "status", job_id)
            result_path = workdir / "result.npy"
            _, download_s = op.run(
                "downloaded on VC 1, CRC per chunk, SHA-256 of the whole",
                "job", "result", job_id, "--out", str(result_path),
            )  # fmt: skip

            banner("radiation: an upset injected into the CNN's weights in memory")
            op.run(
                "the periodic scrub pass out of the way, so that the one we ask for finds it",
                "cmd", "PARAM_SET", "SCRUB_PERIOD=3600",
            )  # fmt: skip
            op.run(
                "a test command: the bench's configuration enables them, flight's does not",
                "cmd", "FAULT_INJECT", "target=WEIGHTS", "fault=MULTI_BIT", "model=cnn",
                "version=0", "seed=7",
            )  # fmt: skip
            scrub, _ = op.run(
                "a scrub pass now: CRC-32 of every weight, repair from the stored model",
                "cmd", "SCRUB_NOW",
            )  # fmt: skip
            if not re.search(r"corrected\s*[=:]?\s*1\b", scrub):
                raise DemoFailed("the scrub pass did not report the upset corrected")

            banner(
                f"a longer job, to watch housekeeping while it runs; the payload's thermal "
                f"model sits on a {DEMO_BASEPLATE_C:g} C baseplate at {DEMO_TIME_SCALE:g}x "
                "real time"
            )
            op.run(
                "a low throttle threshold, to see the thermal governor act within the demo",
                "cmd", "PARAM_SET", "THERMAL_THROTTLE=60",
            )  # fmt: skip
            slow_path = workdir / "slow.onnx"
            save(slow_model(), slow_path)
            scale_path = workdir / "scale.npy"
            np.save(scale_path, np.full((1, 1), 2.0, np.float32), allow_pickle=False)
            op.run("48 convolutions on a constant image", "model", "upload", str(slow_path),
                   "--name", "slow")  # fmt: skip
            out, _ = op.run(
                "TMR again",
                "job", "submit", "--model", "slow", "--input", str(scale_path),
                "--redundancy", "tmr",
            )  # fmt: skip
            slow_id = out.strip().splitlines()[-1]
            op.run(
                "jobs running, progress, temperatures, the governor's level and duty, upsets",
                "tm", "live", "--duration", "4", "--refresh",
                sections=("JOBS_STATUS", "THERMAL_STATUS", "RADIATION_STATUS", "PAYLOAD_STATUS"),
            )  # fmt: skip
            op.run("until it is final", "job", "wait", slow_id, "--timeout", "120")
            events, _ = op.run(
                "everything above is in the ground archive", "events", "--since", "10m"
            )
            if "THERMAL_THROTTLED" not in events:
                raise DemoFailed("the thermal governor did not throttle the longer job")
            up, down = bench.link.stats("uplink"), bench.link.stats("downlink")
            bench.stop_flight()
            counters = re.findall(r"link counters: (.*)", bench.flight_log_text())
    except DemoFailed as exc:
        print(f"demo FAILED: {exc}", file=sys.stderr)
        return 1

    banner("comparing with a local onnxruntime run of the same model and input")
    session = reference_session(model_path.read_bytes())
    expected = session.run(None, {"image": x})[0]
    result = np.load(result_path, allow_pickle=False)
    exact = result.dtype == expected.dtype and result.tobytes() == expected.tobytes()
    print(f"payload result {result.shape} {result.dtype}; local {expected.shape} {expected.dtype}")
    print(f"bit-exact: {'yes' if exact else 'NO'}; classes {result.argmax(axis=1).tolist()}")

    banner("summary")
    size = model_path.stat().st_size
    rate = size / upload_s / 1000
    line = BAUD / 10 / 1000
    print(f"model {size} octets uploaded and registered in {upload_s:.1f} s")
    print(f"  {rate:.1f} kB/s end to end on a {line:.1f} kB/s line ({rate / line:.0%})")
    state = next((ln for ln in status.splitlines() if ln.startswith(f"job {job_id}:")), "")
    runs = next((ln.strip() for ln in status.splitlines() if ln.strip().startswith("runs")), "")
    print(f"{state}, TMR: {' '.join(runs.split())}")
    print(f"result {result_path.stat().st_size} octets downloaded in {download_s:.1f} s")
    print(f"line carried {up.octets_out} octets up, {down.octets_out} down")
    print(f"payload link counters: {counters[-1] if counters else '(none logged)'}")
    if not exact:
        print("demo FAILED: the payload's result differs from the local run", file=sys.stderr)
        return 1
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
