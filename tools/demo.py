"""`make demo`: the system end to end over the emulated serial link.

Starts the HIL bench (link emulator + payload-flight), runs the real `groundsw` against it and
prints what the operator would see, then the payload's own account of the link, and stops.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from hil.bench import Bench

BIN = Path(sys.executable).parent


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="payload-demo-"))
    banner("starting the HIL bench: emulated 115200-baud serial link + payload-flight")
    with Bench(workdir / "state", baud=115200) as bench:
        print(f"payload on {bench.link.flight_port}, ground on {bench.ground_port}")
        ground = [str(BIN / "groundsw"), "--port", bench.ground_port]
        ground += ["--data-dir", str(workdir / "ground-data")]
        steps = [
            (
                "ping --count 3  (TC[17,1] through CLTU/BCH, TC frames, COP-1, PUS-C)",
                "ping --count 3",
            ),
            ("cmd HK_GENERATE  (a dictionary command)", "cmd HK_GENERATE sids=PAYLOAD_STATUS"),
            ("cmd PARAM_SET  (ST[20], range-checked)", "cmd PARAM_SET LOG_LEVEL=INFO"),
            ("events  (read back from the ground archive)", "events --since 10m"),
        ]
        outputs = []
        for title, args in steps:
            banner(f"groundsw {title}")
            result = subprocess.run([*ground, *args.split()], text=True, capture_output=True)
            print(result.stdout, end="")
            outputs.append(result.stdout)
            if result.returncode != 0:
                print(result.stderr, end="", file=sys.stderr)
                print(f"demo FAILED: groundsw exited with {result.returncode}", file=sys.stderr)
                return 1
        up, down = bench.link.stats("uplink"), bench.link.stats("downlink")
        bench.stop_flight()
        banner("the payload's account of the link (from its log)")
        counters = re.findall(r"link counters: (.*)", bench.flight_log_text())
        print(counters[-1] if counters else "(no counters logged)")
        banner("summary")
        rtts = re.findall(r"round trip ([\d.]+) ms", outputs[0])
        print(
            f"3 pings answered, round trips {', '.join(rtts)} ms; "
            f"line carried {up.octets_out} octets up, {down.octets_out} down"
        )
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
