"""What the station does pass by pass, from its configuration's [payload.passes] or from
`serve --fetch-results`; every mistake one sentence."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from groundsw.station.config import PassSettings, StationConfigError, load_station_config
from groundsw.station_commands import station_config

PAYLOAD = '[[payload]]\nname = "fm1"\nport = "/dev/pts/9"\n'


def load(tmp_path: Path, text: str) -> PassSettings:
    path = tmp_path / "station.toml"
    path.write_text(text)
    return load_station_config(path).payloads[0].passes


def test_without_a_passes_table_the_station_behaves_as_before(tmp_path: Path) -> None:
    settings = load(tmp_path, PAYLOAD)
    assert settings == PassSettings()
    assert settings.link_timeout_s == 3.0 and not settings.fetch_results


def test_a_passes_table_sets_the_link_timeout_results_and_recovery_waits(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        PAYLOAD + "[payload.passes]\nlink_timeout_s = 1.0\nfetch_results = true\n"
        "fetch_parallel = 2\ngap_settle_s = 0.3\n",
    )
    assert settings == PassSettings(
        link_timeout_s=1.0, fetch_results=True, fetch_parallel=2, gap_settle_s=0.3
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("link_timeout_s = 0\n", "link_timeout_s must be a number above 0"),
        ("gap_settle_s = -1.0\n", "gap_settle_s must be a number above 0"),
        ('fetch_results = "yes"\n', "fetch_results must be true or false"),
        ("fetch_parallel = 0\n", "fetch_parallel must be an integer from 1 to 16"),
        ("fetch_parallel = 2.5\n", "fetch_parallel must be an integer"),
        ("resume = true\n", "unknown key 'resume'"),
    ],
)
def test_each_mistake_is_one_sentence_naming_the_payload(
    tmp_path: Path, table: str, message: str
) -> None:
    with pytest.raises(StationConfigError) as refused:
        load(tmp_path, PAYLOAD + "[payload.passes]\n" + table)
    text = str(refused.value)
    assert message in text and "payload 1" in text and "\n" not in text


def namespace(tmp_path: Path, **more: object) -> argparse.Namespace:
    values = dict(
        config=None, listen=None, port="/dev/pts/9", baud=921600, keys=None, spi=None,
        dictionary=None, name="fm1", data_dir=tmp_path, tm_coding="rs", fetch_results=False,
    )  # fmt: skip
    values.update(more)
    return argparse.Namespace(**values)


def test_serve_fetch_results_turns_fetching_on_for_the_port_of_the_options(
    tmp_path: Path,
) -> None:
    assert not station_config(namespace(tmp_path)).payloads[0].passes.fetch_results
    config = station_config(namespace(tmp_path, fetch_results=True))
    assert config.payloads[0].passes.fetch_results


def test_serve_fetch_results_with_a_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(PAYLOAD)
    with pytest.raises(StationConfigError, match="cannot go with --config"):
        station_config(namespace(tmp_path, config=path, fetch_results=True))
