"""Send-only WebSockets (live telemetry, a command's stages): what the link's threads hand over
goes out until the feed is done, the client leaves or the station stops. Both of the latter are
noticed at once, not at the next send, so a quiet feed neither lingers nor holds up a stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import WebSocket, WebSocketDisconnect

T = TypeVar("T")


async def feed_websocket(
    websocket: WebSocket,
    items: asyncio.Queue[T | None],
    send: Callable[[T], Awaitable[bool]],
) -> None:
    """Send each item of `items` with `send` (True: the feed is complete, close it) until then,
    or until the client disconnects (or the server, stopping, disconnects it)."""

    async def watch() -> None:
        # The client sends nothing on a feed: the one message that comes is its (or the
        # stopping server's) disconnect.
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            items.put_nowait(None)

    watcher = asyncio.create_task(watch())
    try:
        while (item := await items.get()) is not None:
            if await send(item):
                await websocket.close()
                return
    except WebSocketDisconnect:
        pass
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await watcher
