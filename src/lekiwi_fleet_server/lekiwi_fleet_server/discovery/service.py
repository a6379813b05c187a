"""The discovery service: feeds every source into the inventory and tells dashboards.

A thin shell around the pure cores, on the API's event loop. Sources: the gateway's live
connections (uplink and server-dialled rosbridge robots, read every `refresh_s`), scans (on
demand and on a schedule), the mDNS browser and the dialled rosbridge clients. Presence is
derived from the gateway's record of when each robot was last heard, through the flap-folding
reporter. Each refresh that changed something publishes one `inventory` update on a bus of
the service's own, which the dashboard stream forwards to the dashboards that ask for it
(`/api/v1/stream?inventory=true`): existing stream clients see no new message types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server.discovery.inventory import (
    Inventory,
    InventoryChange,
    InventoryEntry,
    Sighting,
    Source,
    entry_as_dict,
)
from lekiwi_fleet_server.discovery.presence_events import PresenceEvents
from lekiwi_fleet_server.discovery.presence_flaps import (
    PresenceChanged,
    PresenceConfig,
    PresenceReporter,
)
from lekiwi_fleet_server.discovery.scanner import ProbeResult, ScanConfig, scan
from lekiwi_fleet_server.discovery.targets import ProbeKind, expand_targets, plan_probes
from lekiwi_fleet_server.domain.events import DomainEvent
from lekiwi_fleet_server.gateway.bus import InProcessBus
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import FleetStore, RobotFilter, StoreError

if TYPE_CHECKING:
    from lekiwi_fleet_server.gateway.server import RobotGateway

log = logging.getLogger(__name__)

_SOURCE_OF = {ProbeKind.AGENT: Source.SCAN, ProbeKind.ROSBRIDGE: Source.ROSBRIDGE}
_MAX_SCANS_KEPT = 32
_ENROLLED_EVERY = 40  # refreshes between re-reads of the enrolled robots from the store


@dataclass(slots=True)
class ScanJob:
    """One scan: its targets, progress and result."""

    id: str
    targets: tuple[str, ...]
    total: int
    started_at: float
    done: int = 0
    found: list[str] = field(default_factory=list)  # inventory keys
    finished_at: float | None = None
    error: str | None = None

    @property
    def state(self) -> str:
        if self.error is not None:
            return 'failed'
        return 'running' if self.finished_at is None else 'done'

    def as_dict(self) -> dict[str, Any]:
        return {'id': self.id, 'state': self.state, 'targets': list(self.targets),
                'probes': self.total, 'probed': self.done, 'found': sorted(set(self.found)),
                'started_at': self.started_at, 'finished_at': self.finished_at,
                'duration_s': (None if self.finished_at is None
                               else round(self.finished_at - self.started_at, 3)),
                'error': self.error}


class DiscoveryService:
    """Own the inventory, the presence reporter and the scans of one server."""

    def __init__(self, settings: Settings, store: FleetStore, gateway: RobotGateway,
                 now: Callable[[], float], *, refresh_s: float = 0.25) -> None:
        self._settings = settings
        self.store = store
        self._gateway = gateway
        self.bus = InProcessBus(settings.bus_queue_updates)
        self._now = now
        self._refresh_s = refresh_s
        self.inventory = Inventory({Source.SCAN: settings.discovery_scan_ttl_s,
                                    Source.ROSBRIDGE: settings.discovery_scan_ttl_s,
                                    Source.UPLINK: None, Source.MDNS: None})
        self.presence = PresenceReporter(PresenceConfig(
            stale_after_s=settings.presence_stale_s,
            offline_after_s=settings.presence_timeout_s,
            flap_window_s=settings.presence_flap_window_s,
            flap_threshold=settings.presence_flap_threshold))
        self.scan_config = ScanConfig(settings.discovery_concurrency,
                                      settings.discovery_probe_timeout_s)
        self._scans: dict[str, ScanJob] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_changes: list[InventoryChange] = []
        self._pending_presence: list[PresenceChanged] = []
        self._uplink: set[str] = set()
        self._admitting: set[str] = set()  # robots whose admission request the gateway holds
        self.dialled: set[str] = set()  # robots whose live connection the server dialled
        self._dialled_live: set[str] = set()
        self._refreshes = 0
        self.presence_log: list[PresenceChanged] = []  # bounded; newest last
        # Stale, flapping and settled changes, as events for the robots' streams (bounded).
        self.presence_events = PresenceEvents(settings.presence_flap_window_s)
        self._unrecorded: list[DomainEvent] = []
        self.ingests: list[Any] = []  # dialled rosbridge robots (rosbridge_ingest.py)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Read the enrolled robots, then run the refresh loop and the scan schedule."""
        await self.refresh_enrolled()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._refresh_loop(), name='discovery-refresh'))
        if self._settings.discovery_targets and self._settings.discovery_scan_interval_s > 0:
            self._tasks.append(loop.create_task(self._scan_schedule(), name='discovery-scans'))

    def add_task(self, task: asyncio.Task[None]) -> None:
        """Own a source's task (mDNS browser, dialled rosbridge client) until stop."""
        self._tasks.append(task)

    async def stop(self) -> None:
        """Cancel every task this service runs."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.bus.close()

    # -- sources ------------------------------------------------------------------------------
    def observe(self, sighting: Sighting) -> None:
        """Record a sighting of any source (called on the loop)."""
        self._pending_changes += self.inventory.observe(sighting)

    def withdraw(self, source: Source, key: str) -> None:
        """Withdraw one source's sighting of an entry (called on the loop)."""
        self._pending_changes += self.inventory.withdraw(source, key)

    def set_pending(self, robot_ids: Sequence[str]) -> None:
        """Mark the robots whose admission waits for an admin."""
        self._pending_changes += self.inventory.set_pending(robot_ids)

    async def refresh_enrolled(self) -> None:
        """Re-read which robots are enrolled (and not revoked) from the store."""
        robots = await run_in_threadpool(self.store.list_robots, RobotFilter(),
                                         now=self._now())
        self._pending_changes += self.inventory.set_enrolled(
            r.robot_id for r in robots if not r.revoked)

    def refresh(self) -> None:
        """Take the gateway's live robots in, tick presence and TTLs, publish what changed."""
        now = self._now()
        heard = self._gateway.presence.last_heard()
        self._pending_presence += self.presence.heard_all(heard, 'connected')
        # Set arithmetic, not a loop over every connected robot: at 10,000 robots, four times a
        # second, the Python loop cost the gateway's event loop several percent of a core.
        heard_at = dict(heard)
        dialled = self.dialled
        for robot_id in heard_at.keys() & dialled:
            self._keep_dialled(robot_id, heard_at[robot_id])
        live = heard_at.keys() - dialled
        for robot_id in sorted(live - self._uplink):
            self._uplink.add(robot_id)
            # Only a robot whose token the gateway accepted is live there: enrolled.
            self.inventory.mark_enrolled(robot_id)
            self.observe(Sighting(Source.UPLINK, heard_at[robot_id], robot_id,
                                  self._gateway.peer_address(robot_id)))
        for robot_id in self._uplink - live:
            self._uplink.discard(robot_id)
            self.withdraw(Source.UPLINK, robot_id)
            if robot_id not in self.dialled:
                self._pending_presence += self.presence.lost(robot_id, now, 'disconnected')
        self._take_admissions(live)
        for robot_id in self._dialled_live - self.dialled:
            self._pending_presence += self.presence.lost(robot_id, now, 'disconnected')
        self._dialled_live = set(self.dialled)
        self._pending_presence += self.presence.tick(now)
        self._pending_changes += self.inventory.expire(now)
        self._publish(now)

    def _take_admissions(self, live: set[str]) -> None:
        # A robot asking admission is listed as pending (source uplink) while its request
        # waits; decided or withdrawn, its entry goes unless it is now live (accepted).
        pending = {r.robot_id: r for r in self._gateway.admissions.pending()}
        if set(pending) == self._admitting:
            return
        for robot_id in set(pending) - self._admitting:
            request = pending[robot_id]
            self.observe(Sighting(Source.UPLINK, request.requested_at, robot_id, request.address,
                                  details={'admission_fingerprint': request.fingerprint}))
        for robot_id in self._admitting - set(pending):
            if robot_id not in live:
                self.withdraw(Source.UPLINK, robot_id)
        self._admitting = set(pending)
        self.set_pending(list(pending))

    def _keep_dialled(self, robot_id: str, heard_at: float) -> None:
        # A dialled robot's sighting is renewed while it is connected, before its TTL ends.
        entry = self.inventory.get(robot_id)
        seen = entry.sources.get(Source.ROSBRIDGE) if entry is not None else None
        if seen is not None and heard_at - seen.last_seen > self._settings.discovery_scan_ttl_s / 2:
            self.observe(Sighting(Source.ROSBRIDGE, heard_at, robot_id, seen.address, seen.port,
                                  seen.details))

    def _publish(self, now: float) -> None:
        changes, self._pending_changes = self._pending_changes, []
        presence, self._pending_presence = self._pending_presence, []
        if presence:
            self.presence_log = (self.presence_log + presence)[-1000:]
            for p in presence:
                log.info('robot %s %s (%s)', p.robot_id, p.state.value, p.reason)
            self._unrecorded = (self._unrecorded + self.presence_events.events(presence))[-10_000:]
        if not changes and not presence:
            return
        # Several changes of one entry within a refresh: the last tells its state now.
        latest = {c.key: c for c in changes}
        self.bus.publish(orjson.dumps({
            'type': 'inventory', 'at': now,
            'entries': [{'key': k, 'entry': None if c.entry is None else self.entry_view(c.entry)}
                        for k, c in latest.items()],
            'presence': [presence_view(p) for p in presence],
        }).decode())

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                self._refreshes += 1
                if self._refreshes % _ENROLLED_EVERY == 0:
                    await self.refresh_enrolled()
                self.refresh()
                await self.record_presence_events()
            except Exception:  # a failed refresh must not end discovery
                log.exception('discovery refresh failed')

    async def record_presence_events(self) -> None:
        """Append the pending stale/flapping/settled events to the robots' streams."""
        events, self._unrecorded = self._unrecorded, []
        if not events:
            return
        # One transaction for the refresh's events (10,000 robots going stale at once in a
        # network blip are one write, not 10,000); robots not enrolled are skipped.
        try:
            await run_in_threadpool(self.store.record_robot_events, events, now=self._now(),
                                    causation='discovery:presence')
        except StoreError as exc:  # the store is down: these are lost, presence goes on
            log.warning('%d presence events not recorded: %s', len(events), exc)

    # -- scans --------------------------------------------------------------------------------
    def start_scan(self, targets: Sequence[str] | None = None) -> ScanJob:
        """Start a scan of `targets` (default: the configured ones); raise TargetError."""
        specs = tuple(targets if targets else self._settings.discovery_targets)
        probes = plan_probes(expand_targets(specs),
                             agent_port=self._settings.discovery_agent_port,
                             rosbridge_port=self._settings.discovery_rosbridge_port)
        job = ScanJob(secrets.token_hex(6), specs, len(probes), self._now())
        self._scans[job.id] = job
        while len(self._scans) > _MAX_SCANS_KEPT:
            del self._scans[next(iter(self._scans))]

        def on_result(result: ProbeResult) -> None:
            job.done += 1
            if result.found:
                sighting = Sighting(_SOURCE_OF[result.probe.kind], self._now(),
                                    result.robot_id, result.probe.address, result.probe.port,
                                    result.details)
                job.found.append(sighting.key)
                self.observe(sighting)

        async def run() -> None:
            try:
                await scan(probes, self.scan_config, on_result)
            except Exception as exc:
                job.error = f'{type(exc).__name__}: {exc}'
                log.exception('scan %s failed', job.id)
            job.finished_at = self._now()

        self._tasks.append(asyncio.get_running_loop().create_task(run(), name=f'scan-{job.id}'))
        self._tasks = [t for t in self._tasks if not t.done()]
        return job

    def get_scan(self, scan_id: str) -> ScanJob | None:
        """Return a scan by id."""
        return self._scans.get(scan_id)

    def scans(self) -> list[ScanJob]:
        """Return the kept scans, oldest first."""
        return list(self._scans.values())

    async def _scan_schedule(self) -> None:
        while True:
            try:
                self.start_scan()
            except Exception:
                log.exception('scheduled scan could not start')
            await asyncio.sleep(self._settings.discovery_scan_interval_s)

    # -- views --------------------------------------------------------------------------------
    def snapshot(self) -> str:
        """Encode the whole inventory as one stream message (`inventory_snapshot`)."""
        return orjson.dumps({'type': 'inventory_snapshot', 'at': self._now(),
                             'entries': [self.entry_view(e) for e in self.inventory.entries()]
                             }).decode()

    def entry_view(self, entry: InventoryEntry) -> dict[str, Any]:
        """Return the API view of an entry, with its presence."""
        view = entry_as_dict(entry)
        state = self.presence.state(entry.key)
        view['presence'] = None if state is None else {
            'state': state[0].value, 'reason': state[1], 'since': state[2]}
        return view


def presence_view(change: PresenceChanged) -> dict[str, Any]:
    """Return the JSON view of a presence change."""
    return {'robot_id': change.robot_id, 'state': change.state.value,
            'previous': None if change.previous is None else change.previous.value,
            'reason': change.reason, 'at': change.at,
            'changes_in_window': change.changes_in_window}
