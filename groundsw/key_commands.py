"""`groundsw key`: uplink keys. `generate` writes a new key file (for the payload and for the
ground, provisioned before flight); `rotate` replaces a key in flight by KEY_ROTATE."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from groundsw.session import LinkTimeout
from groundsw.transfer import GroundInputError, OneSentenceParser, OperationContext, add_operation
from groundsw.uplink_security import counter_path
from groundsw.verification import CommandFailed
from spacelink.errors import LinkError
from spacelink.keystore import KeyStoreError, create_keys, read_keys, write_keys
from spacelink.sdls import Algorithm, SecurityAssociation, wrap_key

KEY_FILE_COMMENT = "Uplink keys (docs/security.md). Owner only: mode 0600."
# 256-bit keys for every algorithm (AES-256 for CMAC and GCM).
KEY_OCTETS = 32


def add_key_commands(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("key", help="uplink keys: generate a key file, rotate a key in flight")
    keys = parser.add_subparsers(
        dest="key_command", required=True, metavar="KEY_COMMAND", parser_class=OneSentenceParser
    )
    generate = keys.add_parser(
        "generate",
        help="write a new key file (mode 0600) for the payload and the ground",
        description="Write a new key file with one security association and a random key.",
    )
    generate.add_argument("file", type=Path)
    # Its own destination: the global --spi (the SA to use) must not be overwritten by a default.
    generate.add_argument(
        "--spi", dest="new_spi", type=int, default=None, help="security parameter index (1)"
    )
    generate.add_argument(
        "--algorithm",
        choices=[a.name for a in Algorithm],
        default=Algorithm.HMAC_SHA256.name,
        help="how frames are authenticated (HMAC_SHA256)",
    )
    generate.set_defaults(offline=run_generate)
    add_operation(
        keys,
        "rotate",
        "replace the key of the SA in use (--keys, --spi) by a new random key, by KEY_ROTATE",
        run_rotate,
        _check_rotate,
    )


def generate_key_file(path: Path, spi: int, algorithm: Algorithm) -> SecurityAssociation:
    """Write a key file holding one new SA; refuses to replace an existing file."""
    sa = SecurityAssociation(spi, algorithm, os.urandom(KEY_OCTETS))
    try:
        create_keys(path, [sa], KEY_FILE_COMMENT)
    except FileExistsError:
        raise GroundInputError(f"{path} exists already: a key file is never overwritten") from None
    except OSError as exc:
        raise GroundInputError(f"cannot create {path}: {exc.strerror}") from None
    return sa


def run_generate(args: argparse.Namespace) -> int:
    spi = next((s for s in (args.new_spi, args.spi) if s is not None), 1)
    if not 0 <= spi <= 0xFFFF:
        raise GroundInputError(f"SPI {spi} is outside 0 to 65535")
    sa = generate_key_file(args.file, spi, Algorithm[args.algorithm])
    print(f"wrote {args.file}: SPI {sa.spi}, {sa.algorithm.name}; give the payload a copy")
    return 0


def _check_rotate(args: argparse.Namespace) -> None:
    if args.keys is None:
        raise GroundInputError(
            "key rotate needs the key file in use: --keys FILE or $GROUNDSW_KEYS"
        )


def pending_path(key_file: Path) -> Path:
    """Where a rotation keeps the new key until the payload confirms it."""
    return key_file.with_name(key_file.name + ".pending")


def run_rotate(args: argparse.Namespace, ctx: OperationContext) -> int:
    security = ctx.security
    if security is None:
        raise GroundInputError("key rotate needs the key file in use: --keys FILE")
    key_file: Path = args.keys
    try:
        associations = read_keys(key_file)
    except KeyStoreError as exc:
        raise GroundInputError(str(exc)) from None
    current = security.sa
    new = SecurityAssociation(current.spi, current.algorithm, os.urandom(len(current.key)))
    updated = [new if sa.spi == new.spi else sa for sa in associations]
    pending = pending_path(key_file)
    # Kept (synced, its directory too) before the command is sent: if the answer is lost, the
    # new key may be in use. Never replaced: a pending key left by a rotation whose answer was
    # lost may be the payload's.
    try:
        create_keys(pending, updated, KEY_FILE_COMMENT)
    except FileExistsError:
        raise GroundInputError(
            f"{pending} holds the key of an unconfirmed rotation: if the payload raised "
            f"KEY_ROTATED, move it over {key_file}, else delete it, then rotate again"
        ) from None
    except OSError as exc:
        pending.unlink(missing_ok=True)  # ours, partly written: nothing was sent
        raise GroundInputError(f"cannot write {pending}: {exc.strerror or exc}") from None
    try:
        ctx.exchange().request(
            "KEY_ROTATE", {"spi": new.spi, "wrapped": wrap_key(new.key, current)}
        )
    except CommandFailed:
        pending.unlink(missing_ok=True)
        raise
    except LinkError as exc:
        raise LinkTimeout(
            f"{exc}; the payload may use the new key already: it is in {pending} (if the "
            f"payload raised KEY_ROTATED, move it over {key_file})"
        ) from None
    # The payload uses the new key from now on, whatever becomes of the files.
    security.rekey(new.key)
    try:
        write_keys(key_file, updated, KEY_FILE_COMMENT)
    except OSError as exc:
        raise GroundInputError(
            f"the payload uses the new key but {key_file} could not be replaced "
            f"({exc.strerror or exc}): move {pending} over it"
        ) from None
    pending.unlink(missing_ok=True)
    ctx.out(
        f"key of SPI {new.spi} rotated; {key_file} holds the new key (its counter file "
        f"{counter_path(key_file).name} goes on)"
    )
    return 0
