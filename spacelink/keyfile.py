"""The uplink key file's format (TOML), shared by the payload and the ground: one security
association per table. Pure: text in, associations out; reading the file and checking who may
read it is the caller's.

    # uplink keys: readable by the payload's (or the operators') user only
    [[sa]]
    spi = 1
    algorithm = "HMAC_SHA256"      # or AES_CMAC, AES_GCM
    key = "000102...1f"            # hex
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable

from spacelink.sdls import Algorithm, SecurityAssociation

# More than any payload needs (one per ground station), few enough for the payload's anti-replay
# ledger to keep every SA's state in one small write per frame.
MAX_ASSOCIATIONS = 32


class KeyFileError(Exception):
    """The key file's text is not a valid set of security associations; the message says where."""


def parse_key_file(text: str, where: str = "key file") -> list[SecurityAssociation]:
    """The associations `text` defines, in file order; KeyFileError on anything wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KeyFileError(f"{where} is not valid TOML: {exc}") from None
    unknown = set(raw) - {"sa"}
    if unknown:
        raise KeyFileError(f"{where}: unknown entry {sorted(unknown)[0]!r} (expected [[sa]])")
    tables = raw.get("sa", [])
    if not isinstance(tables, list) or not tables:
        raise KeyFileError(f"{where} defines no security association ([[sa]])")
    if len(tables) > MAX_ASSOCIATIONS:
        raise KeyFileError(
            f"{where} defines {len(tables)} security associations, at most {MAX_ASSOCIATIONS}"
        )
    associations: list[SecurityAssociation] = []
    for number, table in enumerate(tables, 1):
        associations.append(_association(table, f"{where}, association {number}"))
    spis = [sa.spi for sa in associations]
    duplicates = sorted({spi for spi in spis if spis.count(spi) > 1})
    if duplicates:
        raise KeyFileError(f"{where}: SPI {duplicates[0]} is defined twice")
    return associations


def _association(table: object, where: str) -> SecurityAssociation:
    if not isinstance(table, dict):
        raise KeyFileError(f"{where}: expected a table with spi, algorithm and key")
    missing = [name for name in ("spi", "algorithm", "key") if name not in table]
    if missing:
        raise KeyFileError(f"{where}: missing {', '.join(missing)}")
    unknown = sorted(set(table) - {"spi", "algorithm", "key"})
    if unknown:
        raise KeyFileError(f"{where}: unknown key {unknown[0]!r}")
    spi, algorithm, key = table["spi"], table["algorithm"], table["key"]
    if not isinstance(spi, int) or isinstance(spi, bool):
        raise KeyFileError(f"{where}: spi must be an integer")
    names = ", ".join(a.name for a in Algorithm)
    if not isinstance(algorithm, str) or algorithm not in Algorithm.__members__:
        raise KeyFileError(f"{where}: algorithm {algorithm!r} is not one of {names}")
    if not isinstance(key, str):
        raise KeyFileError(f"{where}: key must be a hex string")
    try:
        octets = bytes.fromhex(key)
    except ValueError:
        raise KeyFileError(f"{where}: key is not hexadecimal") from None
    try:
        return SecurityAssociation(spi, Algorithm[algorithm], octets)
    except ValueError as exc:
        raise KeyFileError(f"{where}: {exc}") from None


def format_key_file(associations: Iterable[SecurityAssociation], comment: str = "") -> str:
    """The text of a key file holding `associations` (parse_key_file reads it back)."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    for sa in associations:
        lines += [
            "",
            "[[sa]]",
            f"spi = {sa.spi}",
            f'algorithm = "{sa.algorithm.name}"',
            f'key = "{sa.key.hex()}"',
        ]
    return "\n".join(lines).lstrip("\n") + "\n"
