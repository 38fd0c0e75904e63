"""Which onnxruntime execution provider the payload runs on: probed once, quietly, at start.

onnxruntime lists every provider its build contains, whether or not the board can use it:
onnxruntime-gpu on a machine without a GPU lists CUDA and TensorRT, logs an error when asked for
them and silently runs on the CPU. The only reliable test is to create a session and see which
providers it kept, so that is what the probe does, with onnxruntime's chatter suppressed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

logger = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PREFERENCE: tuple[str, ...] = (TENSORRT, CUDA, CPU)

#: Comma-separated allow list set by an operator, e.g. "CPUExecutionProvider" to keep off the GPU.
ALLOW_ENV = "PAYLOAD_ORT_PROVIDERS"

NOT_IN_BUILD = "not in this onnxruntime build"
NO_DEVICE = "no usable device"
NOT_ALLOWED = f"not allowed by {ALLOW_ENV}"

#: onnxruntime log severity that keeps it quiet short of errors (0 verbose ... 4 fatal).
ORT_QUIET_SEVERITY = 3
# onnxruntime has no getter for the default logger's severity; 2 (warning) is its initial value.
_ORT_DEFAULT_SEVERITY = 2
# The probe swaps the process-wide fd 2: two probes at once would restore each other's copy.
_silence_lock = threading.Lock()


class ProviderBackend(Protocol):
    """The two questions the selection asks onnxruntime, so tests can answer them without a GPU."""

    def available(self) -> list[str]:
        """Providers compiled into the onnxruntime build."""
        ...

    def session_providers(self, model: bytes, providers: list[str]) -> list[str]:
        """Providers a session created for `model` with `providers` actually kept."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    """The provider in use, and every preferred one passed over with the reason why."""

    provider: str
    tried: tuple[tuple[str, str], ...] = ()


@contextlib.contextmanager
def _silenced() -> Iterator[io.StringIO]:
    """Suppress onnxruntime's output: Python prints to stdout, C++ logging to fd 2.

    Yields what the Python side printed, for a debug log line.
    """
    with _silence_lock:
        ort.set_default_logger_severity(ORT_QUIET_SEVERITY)
        # Anything already buffered belongs to the caller and must not land in /dev/null.
        sys.stdout.flush()
        sys.stderr.flush()
        saved_fd2 = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        captured = io.StringIO()
        try:
            os.dup2(devnull, 2)
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                yield captured
        finally:
            os.dup2(saved_fd2, 2)
            os.close(saved_fd2)
            os.close(devnull)
            ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)


def probe_model() -> bytes:
    """A one-node Identity model, the smallest thing a provider can be asked to run."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    # Pinned IR and opset: the newest onnx writes versions an older onnxruntime refuses to load.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


class OnnxruntimeBackend:
    """The real onnxruntime, probed with its logging silenced."""

    def available(self) -> list[str]:
        """Providers compiled into the installed onnxruntime."""
        return list(ort.get_available_providers())

    def session_providers(self, model: bytes, providers: list[str]) -> list[str]:
        """Create a throwaway session and return the providers onnxruntime kept."""
        options = ort.SessionOptions()
        options.log_severity_level = ORT_QUIET_SEVERITY
        with _silenced() as printed:
            session = ort.InferenceSession(model, sess_options=options, providers=providers)
        if printed.getvalue():
            logger.debug("onnxruntime said while probing %s: %s", providers, printed.getvalue())
        return list(session.get_providers())


def allowed_from_environment(environ: Mapping[str, str] = os.environ) -> frozenset[str] | None:
    """The operator's allow list from PAYLOAD_ORT_PROVIDERS, or None when unset or empty."""
    names = frozenset(n.strip() for n in environ.get(ALLOW_ENV, "").split(",") if n.strip())
    return names or None


def select_provider(
    backend: ProviderBackend,
    preference: Sequence[str] = PREFERENCE,
    allow: Collection[str] | None = None,
) -> ProviderChoice:
    """Walk `preference` and return the first provider that is allowed, built in and usable.

    `allow` defaults to the PAYLOAD_ORT_PROVIDERS allow list. The CPU provider is the floor: it
    is taken when nothing else works, even if the allow list omits it, since without it no job
    could run at all.
    """
    if allow is None:
        allow = allowed_from_environment()
    if allow is not None:
        unknown = sorted(set(allow) - set(preference) - {CPU})
        if unknown:
            logger.warning(
                "%s names providers not in %s, ignored: %s", ALLOW_ENV, preference, unknown
            )
    available = set(backend.available())
    model = probe_model()
    tried: list[tuple[str, str]] = []
    for name in preference:
        if name == CPU:
            break
        if allow is not None and name not in allow:
            tried.append((name, NOT_ALLOWED))
        elif name not in available:
            tried.append((name, NOT_IN_BUILD))
        else:
            reason = _probe(backend, model, name)
            if reason is None:
                return _chosen(name, tried)
            tried.append((name, reason))
    return _chosen(CPU, tried)


def _probe(backend: ProviderBackend, model: bytes, name: str) -> str | None:
    """None when a session on `name` keeps it, else why it cannot be used."""
    try:
        kept = backend.session_providers(model, [name])
    except Exception as error:
        # onnxruntime's errors derive from Exception alone (Fail, EPFail...). Whatever the cause,
        # a provider whose probe session cannot be created is unusable, not a reason to stop.
        return f"{NO_DEVICE}: {type(error).__name__}: {error}"
    return None if name in kept else NO_DEVICE


def _chosen(name: str, tried: list[tuple[str, str]]) -> ProviderChoice:
    choice = ProviderChoice(name, tuple(tried))
    logger.info("onnxruntime provider %s (passed over: %s)", name, choice.tried or "none")
    return choice
