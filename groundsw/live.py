"""`groundsw tm live`: the latest telemetry values with their limit colours, as they arrive."""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from groundsw.dictionary_check import HASH_PARAMETER, mismatch_warning
from groundsw.liveview import LiveTable
from groundsw.session import PayloadLink, ReceivedTm
from spacelink.icd import TM_VCID_REALTIME
from telemetry_defs.model import CodecError, DecodedTm, Dictionary, UnknownName

Print = Callable[[str], None]

# How often the link's state is asked for (the station marks a link down after 3 s).
LINK_POLL_S = 1.0
# With no packet for this long the table says so: values shown are getting old.
SILENCE_WARNING_S = 30.0
# Without a terminal (a log, CI) the table is printed as text this often.
PLAIN_PRINT_INTERVAL_S = 5.0


LinkStateSource = Callable[[], dict[str, Any] | None]


class LiveMonitor:
    """Feeds received packets to the table and watches the dictionary hash, the link and the
    silence."""

    def __init__(
        self,
        dictionary: Dictionary,
        warn: Print,
        link_state: LinkStateSource | None = None,
        structures: Sequence[str] = (),
        parameters: Sequence[str] = (),
    ) -> None:
        self.dictionary = dictionary
        self.table = LiveTable(dictionary, structures, parameters)
        self._link_state = link_state
        self._link: dict[str, Any] | None = None
        self._link_asked = 0.0
        self._warn = warn
        self.mismatch: int | None = None
        self.last_packet_at = time.time()
        self.undecoded = 0

    def feed(self, item: ReceivedTm) -> DecodedTm | None:
        tm = item.tm
        if item.vcid != TM_VCID_REALTIME:
            return None  # bulk data, or old packets retrieved from the payload's store
        now = time.time()
        self.last_packet_at = now
        try:
            decoded = self.dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
        except (CodecError, UnknownName):
            self.undecoded += 1
            return None
        self.table.update(decoded, now, tm.time.to_unix())
        payload_hash = decoded.parameters.get(HASH_PARAMETER)
        if payload_hash is not None and payload_hash != self.dictionary.hash32:
            if self.mismatch != payload_hash:
                self._warn(f"groundsw: WARNING {mismatch_warning(payload_hash, self.dictionary)}")
            self.mismatch = payload_hash
        elif payload_hash is not None:
            self.mismatch = None
        return decoded

    def watch_link(self, now: float) -> None:
        """Ask for the link's state (once a second) and show it in the table's header."""
        if self._link_state is None or now - self._link_asked < LINK_POLL_S:
            return
        self._link_asked = now
        self._link = state = self._link_state()
        if state is None:
            self.table.set_link("link state unknown", down=True)
            return
        age = state.get("last_frame_age")
        seen = "no frame yet" if age is None else f"{age:.1f} s"
        text = f"link {'UP' if state['up'] else 'DOWN'} {seen}, COP-1 {state['cop1']}"
        if state.get("tm_coding") == "rs":
            corrected, lost = state["rs_corrected_symbols"], state["rs_uncorrectable"]
            text += f", RS {corrected} corrected, {lost} lost"
        if state.get("queued"):
            text += f"  {state['queued']} queued"
        self.table.set_link(text, down=not state["up"])

    def banner(self, now: float) -> str | None:
        if self._link_state is not None and self._link is None and self._link_asked:
            return "the ground station does not answer; the values are from before"
        if self._link is not None and not self._link["up"]:
            age = self._link.get("last_frame_age")
            since = "" if age is None else f" for {age:.0f} s"
            return f"LINK DOWN: no frame from the payload{since}; the values are from before"
        if self.mismatch is not None:
            return mismatch_warning(self.mismatch, self.dictionary)
        silent = now - self.last_packet_at
        if silent >= SILENCE_WARNING_S:
            return f"no telemetry for {silent:.0f} s"
        return None


def run_live(
    session: PayloadLink,
    dictionary: Dictionary,
    duration: float | None,
    out: Print,
    warn: Print,
    interactive: bool | None = None,
    first: Callable[[], None] | None = None,
    structures: Sequence[str] = (),
    parameters: Sequence[str] = (),
) -> LiveMonitor:
    """Show the table until `duration` seconds have passed (None: until interrupted);
    `first` runs once the table listens (to ask for reports it should show)."""
    monitor = LiveMonitor(
        dictionary, warn, getattr(session, "link_state", None), structures, parameters
    )
    packets = session.subscribe()
    if first is not None:
        first()
    interactive = sys.stdout.isatty() if interactive is None else interactive
    end = None if duration is None else time.monotonic() + duration
    try:
        if interactive:
            _run_terminal(monitor, packets, end)
        else:
            _run_plain(monitor, packets, end, out)
    finally:
        session.unsubscribe(packets)
    return monitor


def _pump(monitor: LiveMonitor, packets: queue.Queue[ReceivedTm], wait: float) -> None:
    try:
        monitor.feed(packets.get(timeout=wait))
    except queue.Empty:
        return
    while True:
        try:
            monitor.feed(packets.get_nowait())
        except queue.Empty:
            return


def _run_terminal(
    monitor: LiveMonitor, packets: queue.Queue[ReceivedTm], end: float | None
) -> None:
    from rich.live import Live

    with Live(monitor.table.render(time.time()), auto_refresh=False, screen=True) as live:
        while end is None or time.monotonic() < end:
            _pump(monitor, packets, 0.25)
            now = time.time()
            monitor.watch_link(now)
            monitor.table.set_banner(monitor.banner(now))
            width, height = live.console.size
            live.update(monitor.table.render(now, width, height), refresh=True)


def _run_plain(
    monitor: LiveMonitor, packets: queue.Queue[ReceivedTm], end: float | None, out: Print
) -> None:
    next_print = time.monotonic() + PLAIN_PRINT_INTERVAL_S
    while end is None or time.monotonic() < end:
        _pump(monitor, packets, 0.25)
        if time.monotonic() >= next_print:
            _print_plain(monitor, out)
            next_print += PLAIN_PRINT_INTERVAL_S
    _print_plain(monitor, out)


def _print_plain(monitor: LiveMonitor, out: Print) -> None:
    now = time.time()
    monitor.watch_link(now)
    monitor.table.set_banner(monitor.banner(now))
    for line in monitor.table.plain_lines(now):
        out(line)
    out("")
