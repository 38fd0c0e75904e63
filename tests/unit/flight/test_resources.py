"""The resource probe on a fake /proc: exact per-mille values, and zeros when /proc is missing."""

from __future__ import annotations

from pathlib import Path

from flight.resources import ResourceProbe


def write_proc(root: Path, busy: int, idle: int) -> None:
    (root / "self").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (root / "meminfo").write_text("MemTotal: 1000000 kB\nMemAvailable: 250000 kB\n")
    (root / "self" / "statm").write_text("5000 2000 300 1 0 900 0\n")


def test_cpu_memory_and_disk_from_proc(tmp_path: Path) -> None:
    write_proc(tmp_path, busy=100, idle=900)
    clock, cpu = [0.0], [1.0]
    probe = ResourceProbe(tmp_path, tmp_path, lambda: clock[0], lambda: cpu[0])
    write_proc(tmp_path, busy=400, idle=1600)  # 300 of 1000 more jiffies busy
    clock[0], cpu[0] = 2.0, 1.5  # 0.5 s of CPU in 2 s: 25 % of one core
    sample = probe.sample()
    assert (sample.cpu_process, sample.cpu_system, sample.memory_used) == (250, 300, 750)
    assert sample.memory_process > 0
    assert 0 <= sample.disk_used <= 1000 and sample.disk_free > 0


def test_missing_proc_reads_as_zero(tmp_path: Path) -> None:
    probe = ResourceProbe(tmp_path, tmp_path / "absent", lambda: 1.0, lambda: 0.0)
    sample = probe.sample()
    assert (sample.cpu_system, sample.memory_used, sample.memory_process) == (0, 0, 0)
