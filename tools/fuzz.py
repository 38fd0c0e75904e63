"""Long fuzzing runs of every decoder (the targets of tools/fuzz_targets.py).

The hypothesis tests in tests/fuzz run a few hundred inputs per decoder in `make test`; this
runner is for the millions. Engine `random`: seeded mutation fuzzing in-process (bit flips,
byte and word sets, truncation, insertion, deletion, duplication, splicing, random inputs), the
seeds first. Engine `atheris`: coverage-guided libFuzzer through atheris (optional), one child
process per target. Every exception outside a target's accepted ones, every input that runs
longer than a second and every input that grows the process by more than 512 MiB is saved to
the output folder with what happened; the exit status is 1 when there is any.

CLI:
    python -m tools.fuzz [--target NAME ...] [--inputs N] [--seed S]
                         [--engine random|atheris] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from tools.fuzz_targets import FuzzTarget

DEFAULT_INPUTS = 100_000
DEFAULT_OUT = Path("fuzz-findings")
HANG_SECONDS = 1.0
# Growth of the peak RSS during one input that counts as unbounded memory.
MEMORY_LIMIT_BYTES = 512 * 1024**2
# Address space allowed above what the process maps when a target starts: a decoder that asks
# for more gets MemoryError (a finding) instead of the machine's OOM killer.
ADDRESS_SPACE_HEADROOM = 4 * 1024**3
# Mutated inputs stay below this; a few random ones are as long as the longest seed allows.
MAX_INPUT_LENGTH = 1 << 16
# Distinct findings saved per target (each crash site once; further ones only counted).
MAX_SAVED = 50
_INTERESTING_OCTETS = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
_INTERESTING_WORDS = (0x0000, 0x0001, 0x00FF, 0x0100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
_CHILD_FLAG = "--atheris-child"
# What atheris instruments for coverage: the decoders and the pure-Python libraries under them.
# The registry is imported inside the instrumentation, so this module imports none of it first.
_INSTRUMENTED = ("spacelink", "telemetry_defs", "flight", "tests", "construct", "numpy.lib")
_REPOSITORY = Path(__file__).resolve().parents[1]


class _Hang(BaseException):
    """Raised by the interval timer inside a target that runs past the hang limit.

    A BaseException, so that a target's own `except Exception` cannot swallow it.
    """


# -- mutation ----------------------------------------------------------------------------------


class Mutator:
    """Seeded mutations of a seed corpus: the same seed gives the same inputs."""

    def __init__(
        self,
        rng: random.Random,
        seeds: Sequence[bytes],
        max_length: int = MAX_INPUT_LENGTH,
        fixup: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self._rng = rng
        self._fixup = fixup
        self._seeds = [s for s in seeds if s] or [b"\x00"]
        self._max = max_length
        self._longest = min(max(len(s) for s in self._seeds) * 2, max_length)
        self._ops: list[Callable[[bytearray], None]] = [
            self._flip_bit,
            self._flip_bit,
            self._set_octet,
            self._set_word,
            self._truncate,
            self._insert,
            self._delete,
            self._duplicate,
            self._splice,
        ]

    def next(self) -> bytes:
        """One new input: a random seed under 1 to 8 stacked mutations, or random octets; half
        of them with the target's checksums repaired."""
        rng = self._rng
        if rng.random() < 1 / 32:
            return rng.randbytes(rng.randint(0, self._longest))
        data = bytearray(rng.choice(self._seeds))
        for _ in range(min(1 + int(rng.expovariate(0.7)), 8)):
            rng.choice(self._ops)(data)
        out = bytes(data[: self._max])
        if self._fixup is not None and rng.random() < 0.5:
            out = self._fixup(out)
        return out

    def _pos(self, data: bytearray) -> int:
        return self._rng.randrange(len(data)) if data else 0

    def _flip_bit(self, data: bytearray) -> None:
        if data:
            data[self._pos(data)] ^= 1 << self._rng.randrange(8)

    def _set_octet(self, data: bytearray) -> None:
        if data:
            rng = self._rng
            value = rng.choice(_INTERESTING_OCTETS) if rng.random() < 0.5 else rng.randrange(256)
            data[self._pos(data)] = value

    def _set_word(self, data: bytearray) -> None:
        # Length and count fields are mostly 16-bit big-endian: extreme values, or the length.
        if len(data) >= 2:
            rng = self._rng
            value = rng.choice((*_INTERESTING_WORDS, len(data), len(data) - 1, rng.getrandbits(16)))
            pos = rng.randrange(len(data) - 1)
            data[pos : pos + 2] = (value & 0xFFFF).to_bytes(2, "big")

    def _truncate(self, data: bytearray) -> None:
        del data[self._rng.randint(0, len(data)) :]

    def _insert(self, data: bytearray) -> None:
        rng = self._rng
        size = rng.choice((1, 2, 4, rng.randint(1, 64), rng.randint(1, 1024)))
        fill = rng.randbytes(size) if rng.random() < 0.7 else bytes([rng.randrange(256)]) * size
        pos = rng.randint(0, len(data))
        data[pos:pos] = fill

    def _delete(self, data: bytearray) -> None:
        if data:
            pos = self._pos(data)
            del data[pos : pos + self._rng.randint(1, 64)]

    def _duplicate(self, data: bytearray) -> None:
        if data:
            rng = self._rng
            start = self._pos(data)
            piece = data[start : start + rng.randint(1, 256)]
            pos = rng.randint(0, len(data))
            data[pos:pos] = piece

    def _splice(self, data: bytearray) -> None:
        # The head of this input and the tail of another seed (or all of it, appended).
        rng = self._rng
        other = rng.choice(self._seeds)
        cut = rng.randint(0, len(data))
        data[cut:] = other[rng.randint(0, len(other)) :] if rng.random() < 0.7 else other


# -- the random engine -------------------------------------------------------------------------


@dataclass
class TargetReport:
    """What fuzzing one target found."""

    name: str
    inputs: int = 0
    seconds: float = 0.0
    crashes: int = 0
    hangs: int = 0
    memory: int = 0
    saved: int = 0
    slowest_s: float = 0.0
    rss_growth_bytes: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.crashes or self.hangs or self.memory)

    def line(self) -> str:
        rate = self.inputs / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.name}: {self.inputs} inputs, {rate:,.0f} inputs/s, {self.crashes} crashes, "
            f"{self.hangs} hangs, {self.memory} memory blow-ups, slowest input "
            f"{self.slowest_s * 1000:.1f} ms, peak RSS growth {_mib(self.rss_growth_bytes)}"
        )


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


def _peak_rss() -> int:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Findings:
    """Saves each distinct finding of a target once: input (.bin) and what happened (.txt)."""

    def __init__(self, out: Path, target: str) -> None:
        self._out = out
        self._target = target
        self._seen: set[str] = set()
        self.saved = 0

    def save(self, kind: str, signature: str, data: bytes, text: str) -> None:
        if signature in self._seen or self.saved >= MAX_SAVED:
            return
        self._seen.add(signature)
        self._out.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()[:12]
        stem = self._out / f"{self._target}-{kind}-{digest}"
        stem.with_suffix(".bin").write_bytes(data)
        stem.with_suffix(".txt").write_text(
            f"target {self._target}, {kind}, input of {len(data)} octets "
            f"(first 64: {data[:64].hex()})\n{text}"
        )
        self.saved += 1


def _crash_signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__}@{where}"


@contextlib.contextmanager
def _limits() -> Iterator[None]:
    """The hang timer's handler and an address-space limit, restored afterwards."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise _Hang

    previous = signal.signal(signal.SIGALRM, on_alarm)
    # Someone else's timer (pytest-timeout's, say) is put back with the time it had left.
    pending, interval = signal.getitimer(signal.ITIMER_REAL)
    entered = time.monotonic()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _mapped_bytes() + ADDRESS_SPACE_HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if pending > 0:
            left = max(pending - (time.monotonic() - entered), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, interval)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _mapped_bytes() -> int:
    """The process's virtual size (Linux /proc; elsewhere 0, so only the headroom counts)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[0]) * resource.getpagesize()


def fuzz_target(
    name: str,
    target: FuzzTarget,
    *,
    inputs: int,
    seed: int,
    out: Path,
    hang_seconds: float = HANG_SECONDS,
    progress: Callable[[str], None] | None = None,
) -> TargetReport:
    """Run `inputs` inputs (the seeds first, then mutations) through one target."""
    report = TargetReport(name)
    findings = _Findings(out, name)
    seeds = target.seeds
    mutator = Mutator(random.Random(f"{seed}:{name}"), seeds, fixup=target.fixup)
    accepted = target.accepted
    run = target.run
    start_rss = _peak_rss()
    started = time.perf_counter()
    next_progress = started + 30.0
    with _limits():
        for i in range(inputs):
            data = seeds[i] if i < len(seeds) else mutator.next()
            rss_before = _peak_rss()
            began = time.perf_counter()
            failure: BaseException | None = None
            try:
                signal.setitimer(signal.ITIMER_REAL, hang_seconds)
                try:
                    run(data)
                except accepted:
                    pass
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # every other exception is a finding
                    failure = exc
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except _Hang as exc:  # the timer fired between the call and its cancellation
                failure = exc
            elapsed = time.perf_counter() - began
            report.slowest_s = max(report.slowest_s, elapsed)
            if isinstance(failure, _Hang) or elapsed > hang_seconds:
                report.hangs += 1
                findings.save(
                    "hang", f"hang{report.hangs}", data, f"ran for over {hang_seconds} s\n"
                )
            elif failure is not None:
                report.crashes += 1
                text = "".join(traceback.format_exception(failure))
                findings.save("crash", _crash_signature(failure), data, text)
            grown = _peak_rss() - rss_before
            if grown > MEMORY_LIMIT_BYTES:
                report.memory += 1
                findings.save(
                    "memory", f"memory{report.memory}", data, f"peak RSS grew by {_mib(grown)}\n"
                )
            report.inputs += 1
            if progress is not None and began > next_progress:
                next_progress = began + 30.0
                progress(f"{name}: {i + 1}/{inputs} inputs, {report.crashes} crashes")
    report.seconds = time.perf_counter() - started
    report.rss_growth_bytes = _peak_rss() - start_rss
    report.saved = findings.saved
    return report


# -- the atheris engine ------------------------------------------------------------------------


def _atheris_child(name: str, target: FuzzTarget, inputs: int, seed: int, out: Path) -> NoReturn:
    """Fuzz one target with atheris in this process; libFuzzer exits when it is done."""
    # An optional dependency without type stubs: looked up by name.
    atheris = importlib.import_module("atheris")

    accepted = target.accepted
    run = target.run

    def one_input(data: bytes) -> None:
        with contextlib.suppress(*accepted):
            run(data)

    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    for i, data in enumerate(target.seeds):
        (corpus / f"seed{i}").write_bytes(data)
    out.mkdir(parents=True, exist_ok=True)
    longest = max((len(s) for s in target.seeds), default=0)
    atheris.Setup(
        [
            sys.argv[0],
            f"-runs={inputs}",
            f"-seed={seed or 1}",
            f"-artifact_prefix={out}/{name}-",
            f"-timeout={max(1, round(HANG_SECONDS))}",
            f"-max_len={min(max(4 * longest, 4096), MAX_INPUT_LENGTH)}",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
            str(corpus),
        ],
        one_input,
    )
    atheris.Fuzz()
    raise AssertionError("atheris.Fuzz returned")


def _atheris_available() -> bool:
    try:
        importlib.import_module("atheris")
    except ImportError:
        return False
    return True


_DONE = re.compile(r"Done (\d+) runs in (\d+) second")


def run_atheris(names: Sequence[str], inputs: int, seed: int, out: Path) -> int:
    """One child process per target; the exit status is 1 when any of them found something."""
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for name in names:
        log = out / f"{name}-atheris.log"
        command = [sys.executable, "-m", "tools.fuzz", _CHILD_FLAG, name]
        command += ["--inputs", str(inputs), "--seed", str(seed), "--out", str(out)]
        started = time.perf_counter()
        with log.open("w") as stream:
            code = subprocess.run(
                command, stdout=stream, stderr=subprocess.STDOUT, cwd=_REPOSITORY
            ).returncode
        seconds = time.perf_counter() - started
        done = _DONE.findall(log.read_text(errors="replace"))
        runs = int(done[-1][0]) if done else 0
        verdict = "clean" if code == 0 else f"FOUND SOMETHING (exit {code}, see {log})"
        rate = runs / seconds
        print(f"{name}: atheris, {runs} inputs in {seconds:.0f} s ({rate:,.0f}/s), {verdict}")
        if code != 0:
            status = 1
    return status


# -- command line ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one line on stderr (exit 2) rather than the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"fuzz: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def _parser(names: Sequence[str]) -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tools.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target", action="append", metavar="NAME", help=f"one of: {', '.join(names)} (all)"
    )
    parser.add_argument("--inputs", type=_positive, default=DEFAULT_INPUTS, help="per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=("random", "atheris"), default="random")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where findings go")
    parser.add_argument(_CHILD_FLAG, metavar="NAME", help=argparse.SUPPRESS)
    return parser


def _registry(instrumented: bool) -> Mapping[str, FuzzTarget]:
    """tools/fuzz_targets.py's targets, imported under atheris' instrumentation if asked."""
    if not instrumented:
        return importlib.import_module("tools.fuzz_targets").TARGETS
    atheris = importlib.import_module("atheris")
    with atheris.instrument_imports(include=list(_INSTRUMENTED)):
        module = importlib.import_module("tools.fuzz_targets")
    return module.TARGETS


def main(
    argv: Sequence[str] | None = None,
    *,
    targets: Mapping[str, FuzzTarget] | None = None,
    hang_seconds: float = HANG_SECONDS,
) -> int:
    """Entry point of `python -m tools.fuzz`; returns the exit status (1: findings, 2: usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if targets is None:
        targets = _registry(instrumented=_CHILD_FLAG in argv)
    parser = _parser(list(targets))
    args = parser.parse_args(argv)
    names: list[str] = args.target or list(targets)
    unknown = [n for n in names if n not in targets]
    if unknown:
        parser.error(f"no fuzz target {unknown[0]!r} (there are: {', '.join(targets)})")
    if args.atheris_child is not None:
        child = args.atheris_child
        if child not in targets:
            parser.error(f"no fuzz target {child!r}")
        _atheris_child(child, targets[child], args.inputs, args.seed, args.out)
    if args.engine == "atheris":
        if not _atheris_available():
            print(
                "fuzz: the atheris engine needs atheris, which is not installed.", file=sys.stderr
            )
            return 2
        return run_atheris(names, args.inputs, args.seed, args.out)
    status = 0
    for name in names:
        report = fuzz_target(
            name,
            targets[name],
            inputs=args.inputs,
            seed=args.seed,
            out=args.out,
            hang_seconds=hang_seconds,
            progress=lambda text: print(text, file=sys.stderr, flush=True),
        )
        print(report.line(), flush=True)
        if report.failed:
            status = 1
            print(f"{name}: {report.saved} findings saved in {args.out}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
