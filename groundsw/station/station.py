"""The ground station's links: one owned link per configured payload, each with its port, keys,
dictionary and archive, opened together and closed together."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundsw.archive import ArchiveError, ArchiveStore, open_archive
from groundsw.session import LinkSession, default_t1
from groundsw.station.config import PayloadConfig, StationConfig, payload_data_dir
from groundsw.station.gap_recovery import RecoveryTiming
from groundsw.station.owned_link import OwnedLink
from groundsw.station.pass_log import PassLogError
from groundsw.station.pass_operations import PassOperations
from groundsw.uplink_security import UplinkKeyError, UplinkSecurity
from spacelink.cop1 import FopConfig
from spacelink.icd import LinkParameters
from spacelink.serialport import PortError, open_port
from telemetry_defs.loader import DictionaryError, load_dictionary

log = logging.getLogger(__name__)

# Source IDs the station gives its clients (each its own, so that replies reach only it);
# 1 is a one-off groundsw's default, left to those.
FIRST_CLIENT_SOURCE_ID = 0x0100
LAST_CLIENT_SOURCE_ID = 0xFFFE


class StationError(Exception):
    """A link of the station cannot be opened; one sentence."""


@dataclass
class PayloadSummary:
    """A payload at a glance: its link, mode and jobs (the latest housekeeping values)."""

    name: str
    link: dict[str, Any]
    mode: str | None
    jobs_queued: int | None
    jobs_running: int | None
    dictionary_hash: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "link": self.link,
            "mode": self.mode,
            "jobs_queued": self.jobs_queued,
            "jobs_running": self.jobs_running,
            "dictionary_hash": self.dictionary_hash,
        }


class Station:
    """Every link of the station; `links` by payload name once `open` returned."""

    def __init__(self, config: StationConfig) -> None:
        self.config = config
        self.links: dict[str, OwnedLink] = {}
        self.passes: dict[str, PassOperations] = {}
        self._archives: list[ArchiveStore] = []
        self._ports: list[Any] = []
        # Set as the server starts to stop: a request waiting for a command's end answers now.
        self.stopping = threading.Event()

    def open(self) -> Station:
        """Open every payload's port, archive and session and start keeping its link up;
        StationError (everything opened so far closed again) when one cannot be."""
        try:
            for payload in self.config.payloads:
                self.links[payload.name] = self._open_link(payload)
        except BaseException:
            self.close()
            raise
        return self

    def _open_link(self, payload: PayloadConfig) -> OwnedLink:
        where = f"payload {payload.name}"
        try:
            dictionary = load_dictionary(payload.dictionary)
        except DictionaryError as exc:
            raise StationError(f"{where}: {exc}") from None
        try:
            security = (
                None
                if payload.keys is None
                else UplinkSecurity.from_key_file(payload.keys, payload.spi)
            )
        except UplinkKeyError as exc:
            raise StationError(f"{where}: {exc}") from None
        data_dir = payload_data_dir(self.config.data_dir, payload.name)
        try:
            archive = open_archive(data_dir, dictionary)
        except ArchiveError as exc:
            raise StationError(f"{where}: {exc}") from None
        self._archives.append(archive)
        try:
            port = open_port(payload.port, payload.baud)
        except PortError as exc:
            raise StationError(f"{where}: {exc}") from None
        self._ports.append(port)
        session = LinkSession(
            port,
            params=LinkParameters(scid=payload.scid, tm_coding=payload.tm_coding),
            baud=payload.baud,
            fop=FopConfig(t1=default_t1(payload.baud)),
            security=security,
        )
        passes = payload.passes
        link = OwnedLink(
            payload.name,
            session,
            dictionary,
            archive,
            ask_dictionary=True,
            recover_gaps=True,
            link_timeout_s=passes.link_timeout_s,
            recovery_timing=RecoveryTiming(
                step_s=passes.gap_step_s,
                settle_s=passes.gap_settle_s,
                max_settle_s=passes.gap_max_settle_s,
            ),
        ).start()
        try:
            self.passes[payload.name] = PassOperations(link, data_dir, payload.baud, passes).start()
        except PassLogError as exc:
            link.close()
            raise StationError(f"{where}: {exc}") from None
        log.info("payload %s on %s, archive in %s", payload.name, payload.port, data_dir)
        return link

    def link(self, name: str) -> OwnedLink:
        """The link of payload `name`; KeyError when the station has none."""
        return self.links[name]

    def summary(self, name: str) -> PayloadSummary:
        return self.summary_of(self.links[name])

    @staticmethod
    def summary_of(link: OwnedLink) -> PayloadSummary:
        """A link's state with the payload's mode and jobs, from its latest housekeeping."""
        name = link.name
        mode = link.value("MODE")
        queued = link.value("JOBS_QUEUED")
        running = link.value("JOBS_RUNNING")
        dictionary_hash = link.value("DICTIONARY_HASH")
        modes = link.dictionary.enums.get("Mode")
        return PayloadSummary(
            name=name,
            link=link.state().to_json(),
            mode=None if mode is None else (modes.to_text(mode[0]) if modes else str(mode[0])),
            jobs_queued=None if queued is None else int(queued[0]),
            jobs_running=None if running is None else int(running[0]),
            dictionary_hash=None if dictionary_hash is None else int(dictionary_hash[0]),
        )

    def close(self) -> None:
        for operations in self.passes.values():
            operations.close()
        self.passes.clear()
        for link in self.links.values():
            link.close()
        for port in self._ports:
            port.close()
        for archive in self._archives:
            archive.close()
        self.links.clear()
        self._ports.clear()
        self._archives.clear()

    def __enter__(self) -> Station:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def archive_dir(config: StationConfig, payload: str) -> Path:
    """Where the archive of `payload` lives."""
    return payload_data_dir(config.data_dir, payload)
