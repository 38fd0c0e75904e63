"""ST[15] on-board storage and retrieval (ECSS-E-ST-70-41C 6.15): every real-time TM packet the
payload generates is kept in its packet stores as generated, and the ground gets back what it
missed by time range or by open retrieval, on VC 1, as the original packets.

The stores themselves are `flight.storage.PacketStore`; this service selects what each keeps,
serves the TCs, and feeds retrievals into VC 1 only while its backlog is under a few frames, so
that VC 0 (which the downlink always takes first) never waits behind more than one frame.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight.commanding import (
    DEFERRED,
    BadApplicationData,
    CommandContext,
    named_failure,
)
from flight.durable import replace_atomically
from flight.router import CommandRouter
from flight.storage import PacketStore, PacketStoreError, PacketStoreFull, StoredPacket
from spacelink.icd import TM_VCID_REALTIME
from spacelink.pus import EVENT_SERVICE, VERIFICATION_SERVICE, Stage
from spacelink.spacepacket import PusTm
from telemetry_defs.model import Dictionary

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
# VC 1 backlog under which the next stored packets are queued (a few frames keep a fast line
# busy between two passes of the main loop; the downlink takes VC 0 first anyway).
BULK_BACKLOG_OCTETS = 8 * 1024
# Stored packets queued per pass at most, so that one retrieval cannot hold up the main loop.
PACKETS_PER_TICK = 256


@dataclass(frozen=True)
class StoreDefinition:
    """One packet store: its ID, capacity and which packets it selects."""

    store_id: int
    name: str
    capacity_octets: int
    selects: Callable[[PusTm], bool]


def default_stores(all_octets: int, events_octets: int) -> tuple[StoreDefinition, ...]:
    """ALL keeps every real-time packet; EVENTS keeps events, verification reports and every
    reply to a command (what settles a command whose answer the downlink lost) longer, in a
    smaller room of its own."""
    return (
        StoreDefinition(1, "ALL", all_octets, lambda tm: True),
        StoreDefinition(2, "EVENTS", events_octets, _answers_or_events),
    )


def _answers_or_events(tm: PusTm) -> bool:
    return tm.service in (EVENT_SERVICE, VERIFICATION_SERVICE) or tm.destination_id != 0


@dataclass
class _RangeRetrieval:
    packets: Iterator[StoredPacket]
    ctx: CommandContext
    sent: int = 0


@dataclass
class _Store:
    definition: StoreDefinition
    engine: PacketStore
    enabled: bool = True
    open_in_progress: bool = False
    open_start: int = 0  # the open retrieval start time tag (UNIX s)
    open_next: int | None = None  # record number the open retrieval sends next
    range_retrieval: _RangeRetrieval | None = None
    write_errors: int = 0

    def persisted(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "open_in_progress": self.open_in_progress,
            "open_start": self.open_start,
            "open_next": self.open_next,
        }


@dataclass
class StorageService:
    """The packet stores, what they keep, and their retrievals (TC[15,1..18])."""

    dictionary: Dictionary
    directory: Path
    definitions: tuple[StoreDefinition, ...]
    send_bulk: Callable[[bytes], None]
    bulk_backlog: Callable[[], int]
    retrieved: int = 0
    _closed: bool = False
    _stores: dict[int, _Store] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        saved = self._load_state()
        for definition in self.definitions:
            engine = PacketStore(
                self.directory / definition.name.lower(), definition.capacity_octets
            )
            store = _Store(definition, engine)
            for key, value in saved.get(str(definition.store_id), {}).items():
                if key in store.persisted():
                    setattr(store, key, value)
            self._stores[definition.store_id] = store

    # -- keeping ------------------------------------------------------------------------------

    def keep(self, tm: PusTm, raw: bytes, vcid: int) -> None:
        """Store one packet just published (called in publication order). Bulk packets (file
        data, link tests) are not kept: the ground asks for those again by their own means."""
        if vcid != TM_VCID_REALTIME or self._closed:
            return
        when = tm.time.to_unix()
        for store in self._stores.values():
            if not store.enabled or not store.definition.selects(tm):
                continue
            try:
                store.engine.append(raw, when)
            except PacketStoreFull:
                store.write_errors += 1
            except (PacketStoreError, OSError) as exc:
                store.write_errors += 1
                log.error("packet store %s: %s", store.definition.name, exc)

    def flush(self) -> None:
        """Make what the stores hold durable (called about once a second)."""
        for store in self._stores.values():
            try:
                store.engine.flush()
            except OSError as exc:
                log.error("packet store %s: %s", store.definition.name, exc)

    # -- retrieval ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Queue stored packets on VC 1 while its backlog allows; end finished retrievals."""
        budget = PACKETS_PER_TICK
        for store in self._stores.values():
            retrieval = store.range_retrieval
            while retrieval is not None and budget > 0 and self._room():
                packet = next(retrieval.packets, None)
                if packet is None:
                    store.range_retrieval = None
                    retrieval.ctx.reports.success(Stage.COMPLETION)
                    log.info(
                        "range retrieval of %s done: %d packets",
                        store.definition.name,
                        retrieval.sent,
                    )
                    break
                self._send(packet.packet)
                retrieval.sent += 1
                budget -= 1
            if store.open_in_progress and store.range_retrieval is None:
                budget = self._open_retrieval(store, budget)

    def _open_retrieval(self, store: _Store, budget: int) -> int:
        if store.open_next is None:
            store.open_next = store.engine.first_record_at_or_after(store.open_start)
            if store.open_next is None:
                return budget
        for packet in store.engine.records_from(store.open_next):
            if budget <= 0 or not self._room():
                break
            self._send(packet.packet)
            store.open_next = packet.record_no + 1
            budget -= 1
        return budget

    def _room(self) -> bool:
        return self.bulk_backlog() < BULK_BACKLOG_OCTETS

    def _send(self, packet: bytes) -> None:
        self.send_bulk(packet)
        self.retrieved += 1

    # -- commands -----------------------------------------------------------------------------

    def register(self, router: CommandRouter) -> None:
        d = self.dictionary
        router.register_command(d.command("STORE_ENABLE"), self._enable, self._check_stores)
        router.register_command(d.command("STORE_DISABLE"), self._disable, self._check_stores)
        router.register_command(
            d.command("STORE_RETRIEVE_RANGE"), self._retrieve_range, self._check_range
        )
        router.register_command(d.command("STORE_DELETE"), self._delete, self._check_stores)
        router.register_command(d.command("STORE_SUMMARY"), self._summary, self._check_stores)
        router.register_command(
            d.command("STORE_OPEN_RETRIEVAL_START"), self._open_start, self._check_open_start
        )
        router.register_command(d.command("STORE_RESUME"), self._resume, self._check_stores)
        router.register_command(d.command("STORE_SUSPEND"), self._suspend, self._check_stores)
        router.register_command(d.command("STORE_ABORT_RANGE"), self._abort, self._check_stores)
        router.register_command(d.command("STORE_STATUS"), self._status, self._check_stores)

    def _store(self, store_id: int) -> _Store:
        store = self._stores.get(store_id)
        if store is None:  # the dictionary's enum and the configured stores disagree
            raise BadApplicationData(f"no packet store has ID {store_id}")
        return store

    def _check_stores(self, args: dict[str, Any]) -> tuple[dict[str, Any], list[_Store]]:
        return args, [self._store(store_id) for store_id in args["stores"]]

    def _check_range(self, args: dict[str, Any]) -> tuple[_Store, int, int]:
        store = self._store(args["store"])
        if args["start"] > args["end"]:
            raise named_failure(
                self.dictionary,
                "STORE_BAD_TIME_RANGE",
                f"the range starts at {args['start']}, after its end {args['end']}",
                start=args["start"],
                end=args["end"],
            )
        if store.range_retrieval is not None:
            raise named_failure(
                self.dictionary,
                "STORE_RANGE_IN_PROGRESS",
                f"a range retrieval of {store.definition.name} is in progress",
                store=store.definition.store_id,
            )
        return store, args["start"], args["end"]

    def _check_open_start(self, args: dict[str, Any]) -> tuple[dict[str, Any], list[_Store]]:
        args, stores = self._check_stores(args)
        for store in stores:
            if store.open_in_progress:
                raise named_failure(
                    self.dictionary,
                    "STORE_OPEN_RETRIEVAL_ACTIVE",
                    f"the open retrieval of {store.definition.name} is in progress",
                    store=store.definition.store_id,
                )
        return args, stores

    def _enable(self, checked: tuple[dict[str, Any], list[_Store]], ctx: CommandContext) -> None:
        for store in checked[1]:
            store.enabled = True
        self._save_state()

    def _disable(self, checked: tuple[dict[str, Any], list[_Store]], ctx: CommandContext) -> None:
        for store in checked[1]:
            store.enabled = False
        self._save_state()

    def _retrieve_range(self, checked: tuple[_Store, int, int], ctx: CommandContext) -> object:
        store, start, end = checked
        # Whole seconds on the wire: the range holds every packet of its first and last second.
        packets = store.engine.between(float(start), end + 0.999999)
        store.range_retrieval = _RangeRetrieval(packets, ctx)
        log.info("range retrieval of %s: %d..%d", store.definition.name, start, end)
        self.tick()
        return DEFERRED

    def _delete(self, checked: tuple[dict[str, Any], list[_Store]], ctx: CommandContext) -> None:
        args, stores = checked
        for store in stores:
            deleted = store.engine.delete_up_to(args["until"] + 0.999999)
            log.info("packet store %s: %d packets deleted", store.definition.name, deleted)

    def _summary(self, checked: tuple[dict[str, Any], list[_Store]], ctx: CommandContext) -> None:
        stores = checked[1]
        values: dict[str, list[int]] = {
            "stores": [],
            "oldest": [],
            "newest": [],
            "open_retrieval_start": [],
            "fill": [],
            "fill_from_open_retrieval": [],
            "packets": [],
        }
        for store in stores:
            summary = store.engine.summary()
            values["stores"].append(store.definition.store_id)
            values["oldest"].append(int(summary.oldest_time or 0))
            values["newest"].append(int(summary.newest_time or 0))
            values["open_retrieval_start"].append(store.open_start)
            values["fill"].append(_percent(summary.octets, summary.capacity_octets))
            values["fill_from_open_retrieval"].append(
                _percent(self._octets_to_send(store), summary.capacity_octets)
            )
            values["packets"].append(min(summary.packets, 0xFFFFFFFF))
        ctx.reply_packet(self.dictionary.packets["STORE_SUMMARY_REPORT"], values)

    def _octets_to_send(self, store: _Store) -> int:
        start = store.open_next
        if start is None:
            start = store.engine.first_record_at_or_after(store.open_start)
        if start is None:
            return 0
        return store.engine.octets_from(start)

    def _open_start(
        self, checked: tuple[dict[str, Any], list[_Store]], ctx: CommandContext
    ) -> None:
        args, stores = checked
        for store in stores:
            store.open_start = args["start"]
            store.open_next = None
        self._save_state()

    def _resume(self, checked: tuple[dict[str, Any], list[_Store]], ctx: CommandContext) -> None:
        for store in checked[1]:
            store.open_in_progress = True
        self._save_state()
        self.tick()

    def _suspend(self, checked: tuple[dict[str, Any], list[_Store]], ctx: CommandContext) -> None:
        for store in checked[1]:
            store.open_in_progress = False
        self._save_state()

    def _abort(self, checked: tuple[dict[str, Any], list[_Store]], ctx: CommandContext) -> None:
        for store in checked[1]:
            retrieval, store.range_retrieval = store.range_retrieval, None
            if retrieval is not None:
                retrieval.ctx.reports.failure(
                    Stage.COMPLETION,
                    self.dictionary.failure_named("EXECUTION_FAILED").code,
                    b"aborted by STORE_ABORT_RANGE",
                )

    def _status(self, checked: tuple[dict[str, Any], list[_Store]], ctx: CommandContext) -> None:
        stores = checked[1]
        ctx.reply_packet(
            self.dictionary.packets["STORE_STATUS_REPORT"],
            {
                "stores": [s.definition.store_id for s in stores],
                "storage": [s.enabled for s in stores],
                "open_retrieval": [int(s.open_in_progress) for s in stores],
                "range_retrieval": [s.range_retrieval is not None for s in stores],
            },
        )

    # -- parameters and state -----------------------------------------------------------------

    def getters(self) -> dict[str, Callable[[], object]]:
        """The STORAGE_STATUS parameters."""
        by_name = {s.definition.name: s for s in self._stores.values()}

        def fill(name: str) -> Callable[[], object]:
            def read() -> int:
                store = by_name.get(name)
                if store is None:
                    return 0
                summary = store.engine.summary()
                return _percent(summary.octets, summary.capacity_octets)

            return read

        def packets() -> int:
            store = by_name.get("ALL")
            return 0 if store is None else min(store.engine.summary().packets, 0xFFFFFFFF)

        return {
            "STORE_ALL_PACKETS": packets,
            "STORE_ALL_FILL": fill("ALL"),
            "STORE_EVENTS_FILL": fill("EVENTS"),
            "PACKETS_RETRIEVED": lambda: self.retrieved & 0xFFFFFFFF,
            "STORE_WRITE_ERRORS": lambda: (
                sum(s.write_errors for s in self._stores.values()) & 0xFFFFFFFF
            ),
        }

    def _load_state(self) -> dict[str, dict[str, Any]]:
        path = self.directory / STATE_FILE
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # Storage enabled, retrievals suspended: the safe state; the ground sees it in
            # STORE_STATUS and sets its own again.
            log.error("packet store state %s unreadable (%s): defaults used", path, exc)
            return {}
        return saved if isinstance(saved, dict) else {}

    def _save_state(self) -> None:
        state = {str(i): s.persisted() for i, s in self._stores.items()}
        try:
            replace_atomically(self.directory / STATE_FILE, json.dumps(state).encode())
        except OSError as exc:
            log.error("packet store state not saved: %s", exc)

    def close(self) -> None:
        self._closed = True
        self._save_state()
        for store in self._stores.values():
            store.engine.close()


def _percent(part: int, whole: int) -> int:
    return 0 if whole <= 0 else min(100, round(100 * part / whole))
