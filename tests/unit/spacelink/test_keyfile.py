"""The uplink key file: what it defines, read back as written, and every mistake in it named."""

from __future__ import annotations

import pytest

from spacelink.keyfile import KeyFileError, format_key_file, parse_key_file
from spacelink.sdls import Algorithm, SecurityAssociation

GOOD = """
# development keys
[[sa]]
spi = 1
algorithm = "HMAC_SHA256"
key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

[[sa]]
spi = 7
algorithm = "AES_GCM"
key = "00112233445566778899aabbccddeeff"
"""


def test_a_key_file_defines_its_associations_in_order() -> None:
    sas = parse_key_file(GOOD)
    assert [(sa.spi, sa.algorithm) for sa in sas] == [
        (1, Algorithm.HMAC_SHA256),
        (7, Algorithm.AES_GCM),
    ]
    assert sas[0].key == bytes(range(32))


def test_a_written_key_file_reads_back() -> None:
    sas = [
        SecurityAssociation(3, Algorithm.AES_CMAC, bytes(range(16))),
        SecurityAssociation(4, Algorithm.HMAC_SHA256, bytes(range(32, 64))),
    ]
    text = format_key_file(sas, comment="rotated 2026-11-25\nkeep it secret")
    assert text.startswith("# rotated 2026-11-25\n# keep it secret\n")
    assert parse_key_file(text) == sas


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spi = 1", "unknown entry 'spi'"),
        ("", "defines no security association"),
        ("[[sa]]\nspi = 1", "missing algorithm, key"),
        ('[[sa]]\nspi = 1\nalgorithm = "DES"\nkey = "00"', "algorithm 'DES' is not one of"),
        ('[[sa]]\nspi = 1\nalgorithm = "AES_CMAC"\nkey = "zz"', "key is not hexadecimal"),
        ('[[sa]]\nspi = 1\nalgorithm = "AES_CMAC"\nkey = "00"', "needs a key of 16 or 32"),
        ('[[sa]]\nspi = "1"\nalgorithm = "AES_CMAC"\nkey = "00"', "spi must be an integer"),
        ('[[sa]]\nspi = 1\nalgorithm = "AES_CMAC"\nkey = 5', "key must be a hex string"),
        ('[[sa]]\nspi = 1\nalgorithm = "AES_CMAC"\nkey = "00"\nkid = 2', "unknown key 'kid'"),
        ("[[sa]\n", "is not valid TOML"),
        (
            '[[sa]]\nspi = 1\nalgorithm = "AES_CMAC"\nkey = "' + "00" * 16 + '"\n'
            '[[sa]]\nspi = 1\nalgorithm = "AES_CMAC"\nkey = "' + "11" * 16 + '"\n',
            "SPI 1 is defined twice",
        ),
    ],
)
def test_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(KeyFileError) as raised:
        parse_key_file(text, "keys.toml")
    assert message in str(raised.value)
    assert str(raised.value).startswith("keys.toml")
