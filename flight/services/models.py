"""Service 129, the model registry: register a stored ONNX file as a model, describe, list,
delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flight.commanding import CommandContext, CommandError, named_failure, translating
from flight.files.upload_store import FileStoreError, UploadStore
from flight.jobs.executor import ExecutorError
from flight.jobs.model_check import ModelRejected, RejectReason
from flight.jobs.registry import (
    BadModelName,
    BadTolerance,
    ModelCorrupt,
    ModelEntry,
    ModelExists,
    ModelRegistry,
    RegistryError,
    UnknownModel,
    signature_text,
)
from flight.router import CommandRouter
from flight.services.events import EventReporter
from flight.services.files import store_failure
from telemetry_defs.model import Dictionary

LISTED_MODELS = 64

_REJECTED = {
    RejectReason.NOT_ONNX: "MODEL_NOT_ONNX",
    RejectReason.CHECK_FAILED: "MODEL_CHECK_FAILED",
    RejectReason.OPERATOR_NOT_ALLOWED: "MODEL_OPERATOR_NOT_ALLOWED",
    RejectReason.TOO_LARGE: "MODEL_TOO_LARGE",
    RejectReason.EXTERNAL_DATA: "MODEL_EXTERNAL_DATA",
    RejectReason.OPSET_UNSUPPORTED: "MODEL_OPSET_UNSUPPORTED",
    RejectReason.UNSUPPORTED_TYPE: "MODEL_TYPE_UNSUPPORTED",
}


def registry_failure(dictionary: Dictionary, exc: Exception) -> CommandError:
    """The failure report for a registry error or a refused model."""
    if isinstance(exc, ModelRejected):
        return named_failure(dictionary, _REJECTED[exc.reason], str(exc))
    if isinstance(exc, UnknownModel):
        return named_failure(dictionary, "UNKNOWN_MODEL", str(exc))
    if isinstance(exc, ModelExists):
        return named_failure(dictionary, "MODEL_EXISTS", str(exc))
    if isinstance(exc, BadModelName | BadTolerance):
        return named_failure(dictionary, "BAD_APPLICATION_DATA", str(exc))
    if isinstance(exc, ModelCorrupt):
        return named_failure(dictionary, "MODEL_CORRUPT", str(exc))
    return store_failure(dictionary, exc)


class ModelService:
    """TC[129,x] on the model registry."""

    def __init__(
        self,
        dictionary: Dictionary,
        registry: ModelRegistry,
        files: UploadStore,
        events: EventReporter,
        in_use: Callable[[str, int], bool],
        on_delete: Callable[[ModelEntry], None],
        record_answer: Callable[[ModelEntry], ModelEntry] | None = None,
    ) -> None:
        """`in_use(name, version)`: a queued or running job needs the model; `on_delete`:
        told when a model goes (its cached session must go too); `record_answer`: loads a new
        model and records its known answer (ExecutorError when onnxruntime cannot run it)."""
        self._record_answer = record_answer
        self._d = dictionary
        self.registry = registry
        self._files = files
        self._events = events
        self._in_use = in_use
        self._on_delete = on_delete
        self._report = dictionary.packets["MODEL_REPORT"]
        self._list_report = dictionary.packets["MODEL_LIST_REPORT"]

    def register(self, router: CommandRouter) -> None:
        d = self._d
        for name, execute in (
            ("MODEL_REGISTER", self._register),
            ("MODEL_INFO", self._info),
            ("MODEL_LIST", self._list),
            ("MODEL_DELETE", self._delete),
        ):
            router.register_command(
                d.command(name),
                translating(
                    execute,
                    (ModelRejected, RegistryError, FileStoreError, OSError),
                    lambda e: registry_failure(self._d, e),
                ),
            )

    def _reply(self, entry: ModelEntry, ctx: CommandContext) -> None:
        ctx.reply_packet(
            self._report,
            {
                "model": entry.name,
                "version": entry.version,
                "size": entry.size,
                "sha256": entry.sha256,
                "opset": entry.signature.opset,
                "weights": min(len(entry.checksums), 0xFFFF),
                "tolerance": entry.tolerance,
                "copies": self.registry.intact.get((entry.name, entry.version), 0),
                "signature": signature_text(entry.signature)[:4000],
            },
        )

    def _register(self, args: dict[str, Any], ctx: CommandContext) -> None:
        stored = self._files.info(args["file"])
        limit = self.registry.max_model_bytes
        if stored.size > limit:
            # Refused before it is read: a file up to the store's quota would fill the memory.
            raise ModelRejected(
                RejectReason.TOO_LARGE,
                f"{stored.name} is {stored.size} octets, the model size limit is {limit}",
            )
        data = self._files.read(stored.name)
        entry = self.registry.register(args["model"], args["version"], data, args["tolerance"])
        if self._record_answer is not None:
            try:
                entry = self._record_answer(entry)
            except ExecutorError as exc:
                # Valid ONNX that this payload's onnxruntime cannot run: refuse it now rather
                # than fail every job on it later.
                self.registry.delete(entry.name, entry.version)
                self._on_delete(entry)
                raise named_failure(self._d, "MODEL_LOAD_FAILED", str(exc)) from exc
        # The registry holds its own durable copies now: the uploaded file is no longer needed.
        self._files.delete(args["file"])
        self._events.raise_event("MODEL_REGISTERED", version=entry.version, model=entry.name)
        self._reply(entry, ctx)

    def _info(self, args: dict[str, Any], ctx: CommandContext) -> None:
        self._reply(self.registry.entry(args["model"], args["version"]), ctx)

    def _list(self, args: dict[str, Any], ctx: CommandContext) -> None:
        entries = self.registry.entries()
        shown = entries[:LISTED_MODELS]
        ctx.reply_packet(
            self._list_report,
            {
                "models": min(len(entries), 0xFFFF),
                "names": [e.name for e in shown],
                "versions": [e.version for e in shown],
                "sizes": [e.size for e in shown],
            },
        )

    def _delete(self, args: dict[str, Any], ctx: CommandContext) -> None:
        entry = self.registry.entry(args["model"], args["version"])
        if self._in_use(entry.name, entry.version):
            raise named_failure(
                self._d,
                "MODEL_IN_USE",
                f"model {entry.name} v{entry.version} is needed by a queued or running job",
            )
        self.registry.delete(entry.name, entry.version)
        self._on_delete(entry)
        self._events.raise_event("MODEL_DELETED", version=entry.version, model=entry.name)
