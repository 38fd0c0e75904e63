"""The payload manager: its parts wired together, and its main loop (the command line is
flight/launch.py).

Wiring: serial octets -> uplink receiver (CLTU, TC frame, FARM-1) -> command router -> services
-> TM publisher -> downlink transmitter (VC multiplexer, frames paced to the line). Commands,
packets, parameters and events come from the dictionary (telemetry_defs).

Threads: the main thread reads the port and runs the uplink and the commands; the downlink
transmitter's thread writes frames. Every protocol object belongs to the main thread, except
the multiplexer, which the downlink transmitter guards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import serial

from flight.bootcount import next_boot_count
from flight.compute_reports import ComputeReports
from flight.config import FlightConfig
from flight.counters import LinkCounters
from flight.downlink import DownlinkTransmitter
from flight.files.disk_fill import DiskFill
from flight.files.upload_store import UploadStore
from flight.job_parameters import job_parameters
from flight.jobs.compute_setup import open_compute
from flight.jobs.providers import ProviderChoice
from flight.jobs.registry import ModelRegistry
from flight.jobs.runner import JobRunner
from flight.jobs.store import JobStore, JobStoreError
from flight.jobs.worker_compute import WorkerCompute
from flight.lifecycle.arming import Arming
from flight.lifecycle.health import threads_running, tolerant
from flight.lifecycle.manager import LifecycleManager
from flight.lifecycle.self_faults import SelfFaults
from flight.payload_parameters import payload_parameters
from flight.power.gate_shares import GateShares
from flight.power.monitor import PowerMonitor
from flight.power.setup import build_power, power_getters
from flight.power.setup import follow_settings as follow_power_settings
from flight.protection.injection import (
    FaultInjector,
    FaultTarget,
    job_store_target,
    payload_targets,
    state_target,
)
from flight.protection.protected_state import ProtectedState
from flight.protection.scrubber import Scrubber
from flight.protection.upsets import UpsetLog
from flight.protection_reports import ProtectionEvents, protection_parameters
from flight.resource_parameters import ResourceMonitor
from flight.router import CommandRouter
from flight.schedule import ScheduleStore
from flight.security.setup import build_authenticator, load_uplink_keys, security_getters
from flight.services import test as test_service
from flight.services.events import EventReporter
from flight.services.files import FileService
from flight.services.housekeeping import HousekeepingService
from flight.services.jobs import JobService
from flight.services.lifecycle import LifecycleService
from flight.services.models import ModelService
from flight.services.parameters import ParameterService
from flight.services.protection import ProtectionService
from flight.services.schedule import ScheduleService
from flight.services.security import SecurityService
from flight.services.storage import StorageService, default_stores
from flight.services.thermal import ThermalService
from flight.status_parameters import link_parameters
from flight.telemetry import TmPublisher
from flight.thermal.setup import build_monitor, follow_settings, thermal_getters
from flight.uplink import UplinkReceiver
from spacelink.cop1 import Farm1, FarmState
from spacelink.icd import TM_VCID_BULK, TM_VCID_REALTIME
from spacelink.serialport import read_next
from telemetry_defs.loader import default_dictionary
from telemetry_defs.model import Dictionary

log = logging.getLogger("flight")

# After the first octet of a burst, gather the rest this long before decoding (see read_next).
READ_GATHER_S = 0.004
# How often the main loop looks at the stop flag and the housekeeping schedule when the line is
# quiet: the reports' timing jitter.
READ_TIMEOUT_S = 0.05
# A worker starting, or restarting after a loss, is not yet a reason to withhold the watchdog:
# only one missing for this long is (its supervisor restarts it within seconds).
WORKER_GRACE_S = 30.0
# How long the last events may take to reach the line when stopping.
STOP_DRAIN_S = 2.0
# How often what the packet stores hold is made durable (kill -9 loses nothing written; a
# power cut at most this much).
STORE_FLUSH_S = 1.0

EXIT_OK = 0
EXIT_PORT_FAILED = 1
EXIT_USAGE = 2


class Payload:
    """The payload manager: link, router and services wired together on one serial port."""

    def __init__(
        self,
        config: FlightConfig,
        port: serial.SerialBase,
        baud: int,
        state_dir: Path,
        dictionary: Dictionary | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        provider: ProviderChoice | None = None,
    ) -> None:
        """`provider`: the onnxruntime provider for jobs (probed when None)."""
        # First: a payload that cannot have its uplink key refuses to start and writes nothing.
        uplink_keys = load_uplink_keys(config.security, state_dir)
        self.config = config
        self.port = port
        self.baud = baud
        self.dictionary = dictionary or default_dictionary()
        self._monotonic = monotonic
        self._started = monotonic()
        self.counters = LinkCounters()
        link = config.link
        self.farm = Farm1(link.tc_vcid, link.farm_window)
        self._clcw_word = self.farm.clcw().to_int()
        self._farm_state = self.farm.state
        self.downlink = DownlinkTransmitter(
            port.write, link, baud, lambda: self._clcw_word, self.counters
        )
        self.tm = TmPublisher(link.apid, self.downlink.enqueue, clock)
        # First: every packet from the first event on is kept (ST[15]).
        self.storage = StorageService(
            self.dictionary,
            state_dir / "packet_stores",
            default_stores(config.storage.packet_store_bytes, config.storage.event_store_bytes),
            lambda packet: self.downlink.enqueue(TM_VCID_BULK, packet),
            lambda: self.downlink.pending_octets(TM_VCID_BULK),
        )
        self.tm.observe(self.storage.keep)
        self.events = EventReporter(self.dictionary, self.tm)
        # Every check reports here; the events go out from the first finding on (the boot
        # count's and the protected state's own, at load).
        self.upsets = UpsetLog()
        self.protection_events = ProtectionEvents(self.events)
        self.upsets.subscribe(self.protection_events.on_upset)
        self.boot_count = next_boot_count(state_dir, self.upsets)
        # Why the previous run ended, from here on; the parts below register health checks.
        self.lifecycle = LifecycleManager.open(
            state_dir, config.lifecycle, self.upsets, self.events.raise_event, self.stop, monotonic
        )
        self.health = self.lifecycle.health
        self.auth = build_authenticator(
            uplink_keys,
            state_dir,
            self.upsets,
            self.counters,
            self.events.raise_event,
            monotonic,
            first_boot=self.boot_count <= 1,
        )
        self.uplink = UplinkReceiver(
            link, self.farm, self.counters, None if self.auth is None else self.auth.verify
        )
        self.router = CommandRouter(
            link.apid, self.tm, self.counters, monotonic, on_crash=self._command_crashed
        )
        self._open_job_services(state_dir, provider)
        # ST[11]: the durable schedule; its released TCs go through the router like the ground's.
        self.schedule = ScheduleService(
            self.dictionary,
            ScheduleStore(
                state_dir / "schedule", self.upsets, config.schedule.enabled_at_first_start
            ),
            config.schedule,
            link.apid,
            self.events,
            clock,
        )
        self.power: PowerMonitor | None = None  # built below; the pool reads it when asked
        self.parameters = payload_parameters(
            self.dictionary,
            self._parameter_sources(state_dir),
            # [link] idle_interval_s holds until the ground sets another.
            {"DOWNLINK_IDLE_INTERVAL": round(link.idle_interval_s * 1000)},
            self.downlink,
            self.runner,
            self.scrubber,
        )
        self.protected = ProtectedState(state_dir, self.upsets, self.parameters)
        self.protected.restore_parameters()
        # With a power budget the thermal governor and it share the compute gate, the stricter
        # of the two winning; without one the thermal governor has the gate to itself.
        shares = GateShares(self.gate) if config.power.source != "none" else None
        self.thermal = build_monitor(
            config,
            self.gate if shares is None else shares.share("thermal"),
            self.runner,
            self.events,
            self.protected,
            monotonic,
            state_dir,
            clock,
        )
        follow_settings(self.parameters, self.thermal)
        if shares is not None:
            self.power = build_power(
                config,
                shares.share("power"),
                self.runner,
                self.events,
                state_dir,
                clock,
                monotonic,
            )
        if self.power is not None:
            follow_power_settings(self.parameters, self.power)
            self.runner.budget_power(self.power, config.power.unknown_run_s)
        ThermalService(self.dictionary, self.thermal).register(self.router)
        SecurityService(self.dictionary, self.auth).register(self.router)
        self.injector.external[FaultTarget.STATE] = state_target(self.protected.store)
        self.self_faults = SelfFaults(self.downlink.drain)
        self.injector.external.update(payload_targets(self.self_faults, self.disk_fill))
        self.scrubber.scrub_state = self._scrub_state
        self.housekeeping = HousekeepingService(
            self.dictionary, self.parameters, self.tm, self.events, monotonic()
        )
        self.housekeeping.register(self.router)
        self.storage.register(self.router)
        self.schedule.register(self.router)
        ParameterService(self.dictionary, self.parameters, self.events).register(self.router)
        test_service.register(self.router, self.dictionary)
        arming = Arming(monotonic, config.lifecycle.arm_timeout_s)
        LifecycleService(self.dictionary, self.lifecycle, arming, self.events.raise_event).register(
            self.router
        )
        self._register_health_checks()
        self._next_store_flush = 0.0
        self._stop = threading.Event()
        self._port_error: BaseException | None = None

    def _open_job_services(self, state_dir: Path, provider: ProviderChoice | None) -> None:
        storage, jobs = self.config.storage, self.config.jobs
        # Through a fill that FAULT_INJECT DISK_FULL can make read as full.
        self.disk_fill = DiskFill(monotonic=self._monotonic)
        self.files = UploadStore(
            state_dir / "files",
            free_space=self.disk_fill,
            quota_bytes=storage.quota_bytes,
            reserve_bytes=storage.reserve_bytes,
            max_uploads=storage.max_uploads,
            max_ranges=storage.max_ranges,
        )
        self.registry = ModelRegistry(
            state_dir / "models", max_model_bytes=storage.max_model_bytes, upsets=self.upsets
        )
        self.jobs = JobStore.in_state_dir(state_dir, upsets=self.upsets)
        self.compute_reports = ComputeReports(self.dictionary, self.events, self.registry)
        setup = open_compute(
            jobs,
            state_dir,
            self.registry,
            self.upsets,
            provider=provider,
            on_event=self.compute_reports.on_event,
            on_notice=self.compute_reports.on_notice,
            monotonic=self._monotonic,
        )
        self.compute, self.gate, self.worker = setup.compute, setup.gate, setup.supervisor
        self.compute_reports.attach(setup)
        self.runner = JobRunner(
            self.dictionary,
            self.jobs,
            self.registry,
            self.files,
            self.compute,
            self.tm,
            self.events,
            monotonic=self._monotonic,
            compute_apart=self.worker is not None,
        )
        self.scrubber = Scrubber(
            self.compute,
            self.registry,
            self.upsets,
            busy=lambda: self.runner.current_job != 0,
            on_late=self.protection_events.on_late_pass,
            monotonic=self._monotonic,
        )
        self.file_service = FileService(
            self.dictionary,
            self.files,
            self.tm,
            self.events,
            lambda: self.downlink.pending_octets(TM_VCID_BULK),
            upsets=self.upsets,
            in_use=self.runner.input_in_use,
            max_downloads=storage.max_downloads,
        )
        self.file_service.register(self.router)
        self.injector = FaultInjector(
            self.compute,
            self.registry,
            self.files,
            external={FaultTarget.JOB_STORE: job_store_target(self.jobs)},
        )
        if isinstance(self.compute, WorkerCompute):
            self.injector.worker = self.compute_reports.arm_fault
        ProtectionService(
            self.dictionary,
            self.scrubber,
            self.injector,
            self.events,
            test_commands=self.config.protection.test_commands,
        ).register(self.router)

        ModelService(
            self.dictionary,
            self.registry,
            self.files,
            self.events,
            self.runner.model_in_use,
            self.compute.forget,
            record_answer=self.compute.record_answer,
        ).register(self.router)
        JobService(
            self.dictionary, self.runner, self.registry, self.files, jobs.max_queued
        ).register(self.router)

    def _register_health_checks(self) -> None:
        """The watchdog waits on the link's and the job machinery's threads (read from their
        owners' attributes until these offer a liveness signal of their own)."""
        self.health.register("downlink", threads_running(lambda: [self.downlink._thread]))
        self.health.register("job runner", threads_running(lambda: self.runner._threads))
        self.health.register("thermal monitor", threads_running(lambda: [self.thermal.thread]))
        power = self.power
        if power is not None:
            self.health.register("power monitor", threads_running(lambda: [power.thread]))
        if self.worker is not None:
            worker = self.worker
            self.health.register(
                "inference worker", tolerant(worker.health, WORKER_GRACE_S, self._monotonic)
            )
            self.lifecycle.restart_worker = lambda: worker.restart("asked by the ground")

    def _scrub_state(self) -> None:
        self.protected.scrub()
        self.schedule.verify()
        try:
            self.jobs.verify()
        except JobStoreError as exc:  # reported by the store; the next pass tries again
            log.error("job store check: %s", exc)

    def _parameter_sources(self, state_dir: Path) -> dict[str, Callable[[], object]]:
        coding = self.dictionary.enums["TmCoding"].values[self.config.link.tm_coding.name]
        providers = self.dictionary.enums["ExecutionProvider"].values
        resources = ResourceMonitor(state_dir)
        return {
            "UPTIME": lambda: int(self._monotonic() - self._started) & 0xFFFFFFFF,
            "BOOT_COUNT": lambda: self.boot_count & 0xFFFFFFFF,
            "DICTIONARY_HASH": lambda: self.dictionary.hash32,
            **resources.getters(),
            **link_parameters(self.counters, self.farm, self._tm_queue_octets),
            **job_parameters(
                self.jobs,
                self.runner,
                self.registry,
                self.files,
                # CPU until a worker says which it took.
                provider=lambda: providers[self.compute_reports.provider_label()],
                compute_counter=self.compute.counter,
                active_downloads=lambda: self.file_service.active_downloads,
            ),
            **protection_parameters(self.upsets, self.scrubber, self.compute.counter),
            **self.compute_reports.parameters(),
            **thermal_getters(lambda: self.thermal, self.gate),
            **power_getters(
                lambda: self.power, self.config.power.source, self.runner.holds.power_held_jobs
            ),
            **security_getters(self.auth),
            **self.storage.getters(),
            **self.schedule.getters(),
            **self.lifecycle.getters(),
            "TM_CODING": lambda: coding,
        }

    def _tm_queue_octets(self) -> int:
        return self.downlink.pending_octets(TM_VCID_REALTIME) + self.downlink.pending_octets(
            TM_VCID_BULK
        )

    def _command_crashed(self, service: int, subtype: int) -> None:
        self.events.raise_event("COMMAND_CRASHED", service=service, subtype=subtype)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Serve the link until stopped; the exit status of the process."""
        self.downlink.start()
        log.info(
            "payload up on %s: %s; dictionary %s %s (0x%08X), boot %d",
            self.port.name,
            self.farm.clcw(),
            self.dictionary.name,
            self.dictionary.version,
            self.dictionary.hash32,
            self.boot_count,
        )
        self.events.raise_event(
            "PAYLOAD_STARTED",
            boot_count=self.boot_count,
            dictionary_hash=self.dictionary.hash32,
            **self.lifecycle.started_values(),
        )
        if self.compute_reports.provider is not None:
            self.compute_reports.report_provider(self.compute_reports.provider)
        if self.worker is not None:
            # In the background: the link is served while the worker starts (a second or so of
            # imports), and the first job waits for it.
            self.worker.start(wait=False)
        if self.auth is None:
            log.warning("uplink authentication is off: anyone who reaches the link commands")
            self.events.raise_event("AUTHENTICATION_OFF")
        else:
            self.auth.start()
        self.thermal.start()  # first: jobs that must wait for the temperature wait from the start
        if self.power is not None:
            self.power.start()  # jobs that must wait for the battery too
        self.runner.start()
        self.scrubber.start()
        self.lifecycle.serving(
            f"serving {self.port.name} at {self.baud} baud, boot {self.boot_count}"
        )
        data = b""
        try:
            while not self._stop.is_set():
                try:
                    awaited = self.uplink.octets_awaited() if data else 0
                    self._wait_no_longer_than_schedule()
                    data = read_next(self.port, READ_GATHER_S, awaited, self.baud)
                except (serial.SerialException, OSError) as exc:
                    self._port_error = exc
                    break
                if data:
                    self._receive(data)
                    self.self_faults.strike()
                self.schedule.tick()
                self.housekeeping.tick(self._monotonic())
                if self.auth is not None:
                    self.auth.tick()
                self.runner.tick()
                self.file_service.tick()
                self.storage.tick()
                if self._monotonic() >= self._next_store_flush:
                    self.storage.flush()
                    self._next_store_flush = self._monotonic() + STORE_FLUSH_S
                self.lifecycle.tick()
                if self.downlink.error is not None:
                    self._port_error = self.downlink.error
                    break
        finally:
            self.lifecycle.stopping()
            if self._port_error is None:
                self.events.raise_event("PAYLOAD_STOPPING", reason=self.lifecycle.stop_reason)
                self.downlink.drain(STOP_DRAIN_S)
            self._stop.set()
            self.scrubber.stop()
            self.thermal.stop()
            if self.power is not None:
                self.power.stop()
            self.runner.stop()
            self.compute.stop()
            self.file_service.close()
            self.storage.close()
            self.schedule.close()
            self.jobs.close()
            self.downlink.stop()
            log.info("link counters: %s", self.counters.summary())
        restart = self.lifecycle.finish(self._port_error)
        if restart is not None:
            return restart
        if self._port_error is not None:
            log.error("serial port failed: %s", self._port_error)
            return EXIT_PORT_FAILED
        return EXIT_OK

    def _wait_no_longer_than_schedule(self) -> None:
        """The port waits no longer than the next release is away: a released TC runs within
        milliseconds of its time, without polling the schedule faster."""
        due = self.schedule.seconds_to_next()
        wait = READ_TIMEOUT_S if due is None else min(READ_TIMEOUT_S, max(due, 0.0))
        if self.port.timeout != wait:
            self.port.timeout = wait

    def _receive(self, data: bytes) -> None:
        packets = self.uplink.feed(data)
        word = self.farm.clcw().to_int()
        changed = word != self._clcw_word
        self._clcw_word = word
        for packet in packets:
            self.router.dispatch(packet)
        if changed:
            # After the commands: their first reports leave in the frame that carries the new
            # CLCW, not one frame behind an idle frame sent for the CLCW alone.
            self.downlink.clcw_changed()
            self._farm_state_changed()

    def _farm_state_changed(self) -> None:
        state = self.farm.state
        if state == self._farm_state:
            return
        if state is FarmState.LOCKOUT:
            ns = self.uplink.lockout_ns if self.uplink.lockout_ns is not None else 0
            self.events.raise_event("FARM_LOCKOUT", vr=self.farm.v_r, ns=ns)
        elif self._farm_state is FarmState.LOCKOUT:
            self.events.raise_event("FARM_UNLOCKED", vr=self.farm.v_r)
        self._farm_state = state
