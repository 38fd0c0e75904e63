"""`groundsw model`: upload and register ONNX models (service 129), list, describe, delete."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from groundsw.session import LinkTimeout
from groundsw.transfer import (
    GroundInputError,
    OneSentenceParser,
    OperationContext,
    add_operation,
    check_file_name,
    failure_code,
    file_sha256,
    readable_file,
)
from groundsw.verification import CommandFailed

MAX_VERSION = 0xFFFF


def model_file_name(model: str, version: int) -> str:
    """The onboard file a model version is uploaded to before it is registered."""
    return f"{model}-v{version}.onnx"


def parse_version(text: str | int, *, zero_ok: bool = False) -> int:
    """A model version 1..65535 (0 too with `zero_ok`: the highest registered)."""
    try:
        version = int(text)
    except ValueError:
        raise GroundInputError(f"version {text!r} is not a number") from None
    low = 0 if zero_ok else 1
    if not low <= version <= MAX_VERSION:
        raise GroundInputError(f"version {version} is outside {low} to {MAX_VERSION}")
    return version


def add_model_commands(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "model", help="the payload's model registry: upload, list, info, delete"
    )
    models = parser.add_subparsers(
        dest="model_command", required=True, metavar="MODEL_COMMAND", parser_class=OneSentenceParser
    )
    upload = add_operation(
        models, "upload", "upload an ONNX file and register it as a model", run_upload, _check
    )
    upload.add_argument("file", type=Path)
    upload.add_argument("--name", required=True, help="model name")
    upload.add_argument("--version", default="1", help="model version (default 1)")
    upload.add_argument(
        "--tolerance",
        default="0",
        help="how far redundant runs may differ on a GPU provider, relative (default 0: bit "
        "for bit; the CPU provider always compares bit for bit)",
    )
    add_operation(models, "list", "list the registered models", run_list)
    info = add_operation(models, "info", "describe a model", run_info, _check_info)
    info.add_argument("name")
    info.add_argument("--version", default="0", help="default: the highest registered")
    delete = add_operation(models, "delete", "delete a model version", run_delete, _check_delete)
    delete.add_argument("name")
    delete.add_argument("--version", required=True)


def _check(args: argparse.Namespace) -> None:
    readable_file(args.file)
    check_file_name(args.name, "model name")
    # The file name carries the version: it must fit the store's names too.
    check_file_name(model_file_name(args.name, parse_version(args.version)), "model file name")
    parse_tolerance(args.tolerance)


def parse_tolerance(text: str) -> float:
    """A comparison tolerance: a finite number of 0 or more."""
    try:
        tolerance = float(text)
    except ValueError:
        raise GroundInputError(f"tolerance {text!r} is not a number") from None
    if not 0.0 <= tolerance < float("inf"):
        raise GroundInputError(f"tolerance {text} must be a finite number of 0 or more")
    return tolerance


def _check_info(args: argparse.Namespace) -> None:
    parse_version(args.version, zero_ok=True)


def _check_delete(args: argparse.Namespace) -> None:
    parse_version(args.version)


def describe_model(report: dict[str, Any]) -> list[str]:
    """TM[129,2] as lines for the operator."""
    return [
        f"model {report['model']} version {report['version']}: {report['size']} octets, "
        f"opset {report['opset']}, {report['weights']} weights with golden checksums",
        f"  copies     {report['copies']} of 2 intact at the last check",
        f"  tolerance  {report['tolerance']:g}"
        + (" (bit for bit)" if not report["tolerance"] else ""),
        f"  sha256     {bytes(report['sha256']).hex()}",
        f"  signature  {report['signature']}",
    ]


def model_info(ctx: OperationContext, name: str, version: int) -> dict[str, Any]:
    """The payload's TM[129,2] of model `name` `version` (0: the highest registered);
    CommandFailed (UNKNOWN_MODEL) when it is not registered."""
    return ctx.exchange().query(
        "MODEL_INFO",
        {"model": name, "version": version},
        reply="MODEL_REPORT",
        match=lambda v: v["model"] == name and version in (0, v["version"]),
    )


def model_report(ctx: OperationContext, name: str, version: int) -> dict[str, Any] | None:
    """`model_info`, None when no such model is registered."""
    try:
        return model_info(ctx, name, version)
    except CommandFailed as exc:
        if failure_code(exc) == ctx.dictionary.failure_named("UNKNOWN_MODEL").code:
            return None
        raise


def registered(
    ctx: OperationContext, name: str, version: int, sha256: bytes
) -> dict[str, Any] | None:
    """The payload's report of model `name` `version` when it holds exactly this content."""
    report = model_report(ctx, name, version)
    return report if report is not None and bytes(report["sha256"]) == sha256 else None


def _registered_already(ctx: OperationContext, args: argparse.Namespace, sha256: bytes) -> bool:
    """True when the payload holds this model under this name and version (nothing to send);
    CommandFailed when it holds other content there (sending it would only be refused)."""
    version = parse_version(args.version)
    report = model_report(ctx, args.name, version)
    if report is None:
        return False
    held = bytes(report["sha256"])
    if held != sha256:
        raise CommandFailed(
            f"model {args.name} version {version} is registered already with other content"
            f" (SHA-256 {held.hex()[:16]}..., {args.file} has {sha256.hex()[:16]}...): delete it"
            " first or upload it as another --version",
            None,
        )
    ctx.out(
        f"model {args.name} version {version} is registered already with SHA-256"
        f" {sha256.hex()}: nothing sent"
    )
    for line in describe_model(report):
        ctx.out(line)
    return True


def run_upload(args: argparse.Namespace, ctx: OperationContext) -> int:
    version = parse_version(args.version)
    sha256 = file_sha256(args.file)
    if _registered_already(ctx, args, sha256):
        return 0
    file_name = model_file_name(args.name, version)
    ctx.uploader().upload(args.file, file_name)
    values = {
        "file": file_name,
        "model": args.name,
        "version": version,
        "tolerance": parse_tolerance(args.tolerance),
    }
    try:
        report = ctx.exchange().request(
            "MODEL_REGISTER",
            values,
            reply="MODEL_REPORT",
            match=lambda v: v["model"] == args.name and v["version"] == version,
        )
    except LinkTimeout as lost:
        # The answer may be lost with the model registered: MODEL_INFO tells.
        report = registered(ctx, args.name, version, sha256)
        if report is None:
            raise lost from None
    assert report is not None
    ctx.out(f"registered {args.name} version {version}")
    for line in describe_model(report):
        ctx.out(line)
    return 0


def run_list(args: argparse.Namespace, ctx: OperationContext) -> int:
    report = ctx.exchange().query("MODEL_LIST", reply="MODEL_LIST_REPORT")
    ctx.out(f"{report['models']} models registered")
    rows = zip(report["names"], report["versions"], report["sizes"], strict=True)
    for name, version, size in rows:
        ctx.out(f"  {name:<32} v{version:<5} {size:>10} octets")
    if report["models"] > len(report["names"]):
        ctx.out(f"  ... and {report['models'] - len(report['names'])} more")
    return 0


def run_info(args: argparse.Namespace, ctx: OperationContext) -> int:
    report = model_info(ctx, args.name, parse_version(args.version, zero_ok=True))
    for line in describe_model(report):
        ctx.out(line)
    return 0


def run_delete(args: argparse.Namespace, ctx: OperationContext) -> int:
    version = parse_version(args.version)
    ctx.exchange().request("MODEL_DELETE", {"model": args.name, "version": version})
    ctx.out(f"deleted model {args.name} version {version}")
    return 0
