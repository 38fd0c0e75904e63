"""`groundsw file`: upload, list, delete and download files of the payload's store."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from groundsw.transfer.file_checks import check_file_name, readable_file
from groundsw.transfer.operations import (
    OneSentenceParser,
    OperationContext,
    add_operation,
    download_to,
)


def add_file_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`groundsw file` and its subcommands."""
    parser = sub.add_parser("file", help="the payload's file store: upload, list, delete, download")
    files = parser.add_subparsers(
        dest="file_command", required=True, metavar="FILE_COMMAND", parser_class=OneSentenceParser
    )
    upload = add_operation(
        files, "upload", "upload a local file (resumes an interrupted upload)", run_upload, _check
    )
    upload.add_argument("local", type=Path)
    upload.add_argument("--name", help="name on board (default: the local file's name)")
    add_operation(files, "list", "list the stored files", run_list)
    delete = add_operation(files, "delete", "delete a stored file", run_delete)
    delete.add_argument("name")
    download = add_operation(
        files, "download", "download a stored file (resumes an interrupted one)", run_download
    )
    download.add_argument("name")
    download.add_argument("--out", type=Path, required=True, help="local path to write")


def _upload_name(args: argparse.Namespace) -> str:
    return check_file_name(args.name or args.local.name)


def _check(args: argparse.Namespace) -> None:
    readable_file(args.local)
    _upload_name(args)


def run_upload(args: argparse.Namespace, ctx: OperationContext) -> int:
    """`groundsw file upload`."""
    result = ctx.uploader().upload(args.local, _upload_name(args))
    ctx.out(f"stored {result.name}: {result.size} octets, SHA-256 {result.sha256.hex()}")
    return 0


def describe_file_list(report: Mapping[str, Any]) -> list[str]:
    """TM[128,8] for the operator: use and room, stored files, uploads with what they reserve."""
    used, quota, room = report["used"], report["quota"], report["room"]
    disk = " (the disk has less room than the quota)" if room < quota - used else ""
    lines = [
        f"{report['files']} files, {report['uploads']} uploads in progress: {used} of {quota}"
        f" octets used or reserved, room for an upload of {room}{disk}"
    ]
    for name, size in zip(report["names"], report["sizes"], strict=True):
        lines.append(f"  {size:>10}  {name}")
    if report["files"] > len(report["names"]):
        lines.append(f"  ... and {report['files'] - len(report['names'])} more")
    uploads = zip(
        report["upload_ids"], report["upload_names"], report["upload_sizes"],
        report["upload_received"], strict=True,
    )  # fmt: skip
    for transfer_id, name, size, received in uploads:
        percent = 100 * received // size if size else 100
        lines.append(
            f"  {size:>10}  {name}  (uploading, reserved: {received} received, {percent}%;"
            f" transfer {transfer_id})"
        )
    if report["uploads"] > len(report["upload_ids"]):
        lines.append(f"  ... and {report['uploads'] - len(report['upload_ids'])} more uploads")
    return lines


def run_list(args: argparse.Namespace, ctx: OperationContext) -> int:
    """`groundsw file list`."""
    for line in describe_file_list(ctx.exchange().query("FILE_LIST", reply="FILE_LIST_REPORT")):
        ctx.out(line)
    return 0


def run_delete(args: argparse.Namespace, ctx: OperationContext) -> int:
    """`groundsw file delete`."""
    ctx.exchange().request("FILE_DELETE", {"name": args.name})
    ctx.out(f"deleted {args.name}")
    return 0


def run_download(args: argparse.Namespace, ctx: OperationContext) -> int:
    """`groundsw file download`."""
    result = download_to(ctx, args.name, args.out)
    ctx.out(f"saved {result.path}: {result.size} octets, SHA-256 {result.sha256.hex()}")
    return 0
