"""The [link] section's TM coding (ICD 6a): Reed-Solomon unless the file says "none" (a v1 link),
and one sentence for a wrong value or a frame length the code cannot carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from flight.config import ConfigError, load_config
from spacelink.icd import TmCoding


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "payload.toml"
    path.write_text(text)
    return path


def test_reed_solomon_unless_told_otherwise(tmp_path: Path) -> None:
    assert load_config(None).link.tm_coding is TmCoding.RS
    assert load_config(config_file(tmp_path, "[link]\nscid = 500\n")).link.tm_coding is TmCoding.RS
    plain = load_config(
        config_file(tmp_path, '[link]\ntm_coding = "none"\ntm_frame_length = 256\n')
    )
    assert (plain.link.tm_coding, plain.link.tm_frame_length) == (TmCoding.NONE, 256)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[link]\ntm_coding = "ldpc"\n', "expected 'rs' or 'none'"),
        ("[link]\ntm_coding = 1\n", "expected 'rs' or 'none'"),
        ("[link]\ntm_frame_length = 256\n", "Reed-Solomon coding needs 1115-octet TM frames"),
    ],
)
def test_a_wrong_coding_is_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load_config(config_file(tmp_path, text))
    assert "\n" not in str(refused.value)
