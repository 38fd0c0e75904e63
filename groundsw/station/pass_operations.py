"""What the ground station does pass by pass, for one payload: it sees a pass begin when
frames come again after a silence (AOS) and end when they stop (LOS), and at each AOS

- the commands queued while the link was down go out, in order (the owned link does that as
  soon as it takes commands again; they are counted here),
- gap recovery asks at once for the telemetry missed since the last pass (ST[15], from the
  payload's packet store) and, at LOS, keeps what it found without waiting for more,
- the results of the jobs finished since go down (`result_fetch`), when configured to.

Each contact is logged (the station's log: what began, what it carried) and kept in the pass
log (`pass_log`), which the API and `groundsw contacts` / `groundsw results` read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from groundsw.station.config import PassSettings
from groundsw.station.owned_link import ClientLink, LinkState, OwnedLink
from groundsw.station.pass_log import PASS_LOG_FILE, PassLog, PassLogError
from groundsw.station.result_fetch import RESULTS_DIR, ResultFetcher
from groundsw.timespec import utc_text
from spacelink.pus import EVENT_SERVICE
from spacelink.spacepacket import PusTm
from telemetry_defs.model import CodecError, UnknownName

log = logging.getLogger(__name__)

POLL_S = 0.05
JOB_ENDED_EVENTS = frozenset({"JOB_SUCCEEDED", "JOB_FAILED"})
# Source IDs of the station's own workers, apart from its clients' (station.py's range).
FIRST_WORKER_SOURCE_ID = 0x0100
LAST_WORKER_SOURCE_ID = 0xFFFE

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class _AtAos:
    number: int
    aos: float
    commands: int
    packets: int
    released: int


class PassOperations:
    """Follows one owned link's passes (its own thread, `start`); `step` is one look."""

    def __init__(
        self,
        link: OwnedLink,
        data_dir: Path,
        baud: int,
        settings: PassSettings,
        *,
        wall: Clock = time.time,
        poll_s: float = POLL_S,
    ) -> None:
        self.link = link
        self.settings = settings
        self.pass_log = PassLog(data_dir / PASS_LOG_FILE)
        self._wall = wall
        self._poll_s = poll_s
        self._contact: _AtAos | None = None
        self._client_lock = threading.Lock()
        self.fetcher: ResultFetcher | None = None
        if settings.fetch_results:
            self.fetcher = ResultFetcher(
                link.name,
                self.pass_log,
                link.dictionary,
                data_dir / RESULTS_DIR,
                baud,
                new_client=self._new_client,
                takes_commands=link.takes_commands,
                contact=self.contact_number,
                parallel=settings.fetch_parallel,
                request_timeout_s=settings.request_timeout_s,
            )
            link.session.add_packet_sink(self._on_packet)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"passes-{link.name}", daemon=True)

    # -- lifetime -----------------------------------------------------------------------------

    def start(self) -> PassOperations:
        if self.fetcher is not None:
            self.fetcher.start()
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        if self.fetcher is not None:
            self.fetcher.close()
        contact = self._contact
        if contact is not None:  # the station stops during a pass: it ends here for it
            self._los(self.link.state(), contact)
        self.pass_log.close()

    def contact_number(self) -> int | None:
        """The pass under way (its number in the pass log), None between passes."""
        contact = self._contact
        return None if contact is None else contact.number

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.step()
            except PassLogError as exc:
                log.error("%s: %s", self.link.name, exc)
            except Exception:  # pass operations must outlive any one failure
                log.exception("%s: pass operations failed", self.link.name)

    # -- one look -----------------------------------------------------------------------------

    def step(self) -> None:
        """Whether a pass began or ended since the last look, and what follows."""
        state = self.link.state()
        contact = self._contact
        if state.up and contact is None:
            self._aos(state)
        elif not state.up and contact is not None:
            self._los(state, contact)

    def _frame_time(self, state: LinkState) -> float:
        age = state.last_frame_age
        return self._wall() - (age or 0.0)

    def _aos(self, state: LinkState) -> None:
        aos = self._frame_time(state)
        number = self.pass_log.begin_contact(aos)
        self._contact = _AtAos(number, aos, state.commands, state.packets, self.link.released)
        log.info(
            "%s: pass %d began (AOS %s): %d queued commands go out%s",
            self.link.name,
            number,
            utc_text(aos),
            state.queued,
            "; fetching results" if self.fetcher is not None else "",
        )
        if self.link.gaps is not None:
            self.link.gaps.contact_changed(True)
        if self.fetcher is not None:
            self.fetcher.wake()

    def _los(self, state: LinkState, contact: _AtAos) -> None:
        self._contact = None
        if self.link.gaps is not None:
            self.link.gaps.contact_changed(False)
        los = self._frame_time(state)
        commands = state.commands - contact.commands
        packets = state.packets - contact.packets
        released = self.link.released - contact.released
        open_gaps = None if self.link.gaps is None else len(self.link.gaps.open_gaps())
        self.pass_log.update_contact(
            contact.number, los=los, commands_sent=commands, packets=packets, open_gaps=open_gaps
        )
        done = next((c for c in self.pass_log.contacts(1) if c.number == contact.number), None)
        results = "" if done is None else f", {done.results} results ({done.result_octets} octets)"
        gaps = "" if open_gaps is None else f", {open_gaps} telemetry gaps open"
        log.info(
            "%s: pass %d ended (LOS %s) after %.1f s: %d commands sent (%d of them queued), "
            "%d packets received%s%s",
            self.link.name,
            contact.number,
            utc_text(los),
            los - contact.aos,
            commands,
            released,
            packets,
            results,
            gaps,
        )

    # -- internals ----------------------------------------------------------------------------

    def _new_client(self, label: str) -> ClientLink:
        with self._client_lock:
            while True:
                first, last = FIRST_WORKER_SOURCE_ID, LAST_WORKER_SOURCE_ID
                source_id = self.link.free_source_id(first, last)
                try:
                    return self.link.client(f"ground station: {label}", source_id)
                except ValueError:  # an API client took it meanwhile: the next one
                    continue

    def _on_packet(self, tm: PusTm, raw: bytes, when: float) -> None:
        # On the receiving thread, under the session's lock: decide and wake, nothing more.
        if tm.service != EVENT_SERVICE or self.fetcher is None:
            return
        try:
            decoded = self.link.dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
        except (CodecError, UnknownName):
            return
        if decoded.name in JOB_ENDED_EVENTS:
            self.fetcher.wake()
