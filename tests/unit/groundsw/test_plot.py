"""`tm plot`: archived samples of real housekeeping packets drawn to image files."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from groundsw.archive import Archive, Sample
from groundsw.plot import PlotError, plot_parameters
from spacelink.cdstime import CdsTime
from spacelink.spacepacket import PusTm
from telemetry_defs.loader import default_dictionary
from telemetry_defs.model import UnknownName

D = default_dictionary()
STATUS = D.housekeeping["PAYLOAD_STATUS"]
T0 = 1_795_600_800.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# One axes per parameter: figsize (10, 2.6 per parameter) inches at the default 100 dpi.
WIDTH, HEIGHT_PER_PARAMETER = 1000, 260


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(autouse=True)
def no_figures_left() -> Iterator[None]:
    plt.close("all")
    yield
    plt.close("all")


@pytest.fixture
def samples(tmp_path: Path) -> dict[str, list[Sample]]:
    """A minute of PAYLOAD_STATUS reports through the real archive."""
    with Archive(tmp_path / "ground", D) as archive:
        for i in range(12):
            fields: dict[str, Any] = {p.name: 0 for p in STATUS.parameters}
            fields.update(UPTIME=100 + 5 * i, MODE=i % 3, CPU_PROCESS=700 + 25 * i, DISK_FREE=4000)
            data = D.encode_housekeeping(STATUS.sid, fields)
            tm = PusTm(D.apid, 3, 25, data, seq_count=i, time=CdsTime.from_unix(T0 + 5 * i))
            archive.store(tm, tm.pack(), T0 + 5 * i)
        return {name: archive.parameter_samples(name) for name in ("CPU_PROCESS", "MODE", "UPTIME")}


def test_one_parameter_makes_a_png(samples: dict[str, list[Sample]], tmp_path: Path) -> None:
    out = tmp_path / "cpu.png"

    plot_parameters({"CPU_PROCESS": samples["CPU_PROCESS"]}, D, out)

    data = out.read_bytes()
    assert png_size(data) == (WIDTH, HEIGHT_PER_PARAMETER)
    assert len(data) > 10_000  # axes, a line, limit lines and labels, not an empty canvas
    assert plt.get_fignums() == []


def test_several_parameters_share_one_png(samples: dict[str, list[Sample]], tmp_path: Path) -> None:
    out = tmp_path / "status.png"
    assert len(samples["MODE"]) == 12  # an enumeration, drawn as steps with its names

    plot_parameters(samples, D, out)

    data = out.read_bytes()
    assert png_size(data) == (WIDTH, 3 * HEIGHT_PER_PARAMETER)
    one = tmp_path / "one.png"
    plot_parameters({"UPTIME": samples["UPTIME"]}, D, one)
    assert len(data) > len(one.read_bytes())
    assert plt.get_fignums() == []


@pytest.mark.parametrize(("suffix", "magic"), [(".svg", b"<?xml"), (".PDF", b"%PDF-")])
def test_other_image_formats_by_suffix(
    samples: dict[str, list[Sample]], tmp_path: Path, suffix: str, magic: bytes
) -> None:
    out = tmp_path / f"cpu{suffix}"

    plot_parameters({"CPU_PROCESS": samples["CPU_PROCESS"]}, D, out)

    data = out.read_bytes()
    assert data.startswith(magic) and len(data) > 5_000


def test_samples_without_engineering_values_are_drawn_raw(tmp_path: Path) -> None:
    raw_only = [Sample(T0 + i, None, 10 * i, None, "nominal") for i in range(5)]
    out = tmp_path / "raw.png"

    plot_parameters({"BOOT_COUNT": raw_only}, D, out)

    assert png_size(out.read_bytes()) == (WIDTH, HEIGHT_PER_PARAMETER)


def test_no_samples_is_a_plot_error_naming_the_parameter(
    samples: dict[str, list[Sample]], tmp_path: Path
) -> None:
    out = tmp_path / "empty.png"

    with pytest.raises(PlotError) as caught:
        plot_parameters({"CPU_PROCESS": samples["CPU_PROCESS"], "DISK_USED": []}, D, out)

    assert str(caught.value) == "no samples of DISK_USED in the archive for that time span"
    assert not out.exists()
    assert plt.get_fignums() == []


def test_an_image_suffix_we_cannot_write_is_a_plot_error(
    samples: dict[str, list[Sample]], tmp_path: Path
) -> None:
    out = tmp_path / "cpu.jpg"

    with pytest.raises(PlotError, match=r"cannot write a plot to .*cpu\.jpg: use one of \.png"):
        plot_parameters({"CPU_PROCESS": samples["CPU_PROCESS"]}, D, out)

    assert not out.exists()


def test_an_unwritable_place_is_a_plot_error(
    samples: dict[str, list[Sample]], tmp_path: Path
) -> None:
    out = tmp_path / "missing" / "cpu.png"

    with pytest.raises(PlotError) as caught:
        plot_parameters({"CPU_PROCESS": samples["CPU_PROCESS"]}, D, out)

    assert str(caught.value) == f"cannot write {out}: No such file or directory"
    assert caught.value.__suppress_context__
    assert plt.get_fignums() == []


def test_an_unknown_parameter_is_refused_with_a_sentence_naming_it(
    samples: dict[str, list[Sample]], tmp_path: Path
) -> None:
    # The dictionary's UnknownName, which `tm plot` reports like a PlotError (exit 2).
    out = tmp_path / "x.png"

    with pytest.raises(UnknownName) as caught:
        plot_parameters({"CPU_PROCES": samples["CPU_PROCESS"]}, D, out)

    assert (
        str(caught.value)
        == "no parameter 'CPU_PROCES' in the dictionary (did you mean CPU_PROCESS?)"
    )
    assert not out.exists()


def test_an_unknown_parameter_leaves_no_figure_open(
    samples: dict[str, list[Sample]], tmp_path: Path
) -> None:
    with pytest.raises(UnknownName):
        plot_parameters({"CPU_PROCES": samples["CPU_PROCESS"]}, D, tmp_path / "x.png")

    assert plt.get_fignums() == []
