"""The long fuzz runner: planted crashes and hangs are found, saved and fail the run."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tools import fuzz
from tools.fuzz import Mutator
from tools.fuzz_targets import FuzzTarget

SEEDS = [b"abcdef", b"\x10\x20\x30\x40\x50\x60\x70\x80"]


def target(
    run: Callable[[bytes], object],
    accepted: tuple[type[BaseException], ...] = (),
    seeds: list[bytes] = SEEDS,
) -> FuzzTarget:
    return FuzzTarget(run, accepted, lambda: list(seeds))


def fuzz_fakes(tmp_path: Path, targets: dict[str, FuzzTarget], *flags: str, **kw: float) -> int:
    argv = ["--inputs", "2000", "--seed", "7", "--out", str(tmp_path / "out"), *flags]
    return fuzz.main(argv, targets=targets, **kw)


def saved(tmp_path: Path, kind: str) -> list[tuple[bytes, str]]:
    found = sorted((tmp_path / "out").glob(f"*-{kind}-*.bin"))
    return [(p.read_bytes(), p.with_suffix(".txt").read_text()) for p in found]


def test_a_planted_crash_is_found_by_mutation_saved_with_its_traceback_and_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def decode(data: bytes) -> None:
        if data[:1] == b"\x00":  # no seed starts with 0: only a mutation gets here
            raise IndexError("planted")
        if not data:
            raise ValueError("empty")  # documented

    assert fuzz_fakes(tmp_path, {"fake": target(decode, (ValueError,))}) == 1
    out = capsys.readouterr().out
    assert "fake: 2000 inputs" in out and "0 hangs" in out
    crashes = int(out.split(" crashes")[0].rsplit(" ", 1)[1])
    assert crashes > 0
    # Saved once (one crash site), however often it was hit.
    [(data, text)] = saved(tmp_path, "crash")
    assert data[:1] == b"\x00"
    assert "IndexError: planted" in text and "Traceback" in text


def test_a_crash_on_a_seed_itself_is_found_first(tmp_path: Path) -> None:
    def decode(data: bytes) -> None:
        if data == SEEDS[1]:
            [][1]

    assert fuzz_fakes(tmp_path, {"fake": target(decode)}, "--inputs", "2") == 1
    [(data, text)] = saved(tmp_path, "crash")
    assert data == SEEDS[1] and "IndexError" in text


def test_a_planted_hang_is_interrupted_saved_and_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hung: list[bytes] = []

    def decode(data: bytes) -> None:
        if data == SEEDS[0] and not hung:
            hung.append(data)
            while True:  # interrupted by the runner's timer
                pass

    status = fuzz_fakes(tmp_path, {"slow": target(decode)}, "--inputs", "50", hang_seconds=0.2)
    assert status == 1
    assert "slow: 50 inputs" in capsys.readouterr().out
    [(data, text)] = saved(tmp_path, "hang")
    assert data == SEEDS[0] and "ran for over 0.2 s" in text
    assert saved(tmp_path, "crash") == []


def test_clean_targets_exit_0_and_leave_no_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def strict(data: bytes) -> None:
        if len(data) % 2:
            raise KeyError(len(data))  # documented for this target

    targets = {"one": target(lambda data: None), "two": target(strict, (KeyError,))}
    assert fuzz_fakes(tmp_path, targets) == 0
    out = capsys.readouterr().out
    assert "one: 2000 inputs" in out and "two: 2000 inputs" in out
    assert "0 crashes, 0 hangs, 0 memory blow-ups" in out
    assert not (tmp_path / "out").exists()


def test_only_the_targets_named_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def crash(data: bytes) -> None:
        raise IndexError

    targets = {"ok": target(lambda data: None), "bad": target(crash)}
    assert fuzz_fakes(tmp_path, targets, "--target", "ok") == 0
    assert "bad" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags",
    [
        ["--inputs", "0"],
        ["--inputs", "many"],
        ["--engine", "afl"],
        ["--target", "nosuch"],
        ["--seed", "x"],
        ["--bogus"],
    ],
)
def test_bad_flags_are_one_sentence_and_exit_2(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        fuzz.main(flags, targets={"ok": target(lambda data: None)})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fuzz: ") and err.count("\n") == 1


def test_the_atheris_engine_without_atheris_is_one_sentence_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(fuzz, "_atheris_available", lambda: False)
    assert fuzz.main(["--engine", "atheris"]) == 2
    err = capsys.readouterr().err
    assert "atheris" in err and err.count("\n") == 1


def test_the_mutator_is_deterministic_bounded_and_varied() -> None:
    def inputs(seed: int) -> list[bytes]:
        mutator = Mutator(random.Random(seed), SEEDS, max_length=64)
        return [mutator.next() for _ in range(500)]

    first = inputs(1)
    assert first == inputs(1)
    assert first != inputs(2)
    assert all(len(data) <= 64 for data in first)
    assert len(set(first)) > 300
    assert {len(data) for data in first} >= {0, 6, 8}


def test_the_mutator_repairs_about_half_of_the_inputs_with_the_targets_fixup() -> None:
    mutator = Mutator(random.Random(3), SEEDS, fixup=lambda data: b"fixed:" + data)
    repaired = sum(mutator.next().startswith(b"fixed:") for _ in range(1000))
    assert 350 < repaired < 650
