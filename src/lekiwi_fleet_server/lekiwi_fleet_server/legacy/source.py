"""The legacy source in the server: poll the configured hosts, feed the gateway's ingest.

Every `interval_s` it reloads the hosts file when it changed (so `import-legacy` reaches a
running server), polls the hosts whose agent holds no uplink connection, and hands the
heartbeats, events and presence changes the tracker decides to the same batchers uplink frames
go through: the same validation, store, events, presence and dashboard stream. Frames are
validated with the protocol's own parser first, since nobody is connected to hear a refusal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

from lekiwi_fleet_server.domain import protocol
from lekiwi_fleet_server.domain.protocol import ProtocolError
from lekiwi_fleet_server.legacy.hosts_file import load_hosts
from lekiwi_fleet_server.legacy.inventory import InventoryError, LegacyHost
from lekiwi_fleet_server.legacy.poller import LegacyPoller, PollResult
from lekiwi_fleet_server.legacy.status import LEGACY_AGENT_VERSION
from lekiwi_fleet_server.legacy.tracker import LegacyTracker, RoundOutcome
from lekiwi_fleet_server.store.interface import FleetStore, PresenceChange, RobotFilter

log = logging.getLogger(__name__)


class Ingest(Protocol):
    """The part of the robot gateway the legacy source feeds."""

    async def connected(self, robot_ids: Collection[str]) -> set[str]:
        """Return those of the robots whose agent holds an uplink, on any gateway."""
        ...

    def submit(self, robot_id: str, payload: bytes) -> bool: ...

    def submit_presence(self, change: PresenceChange) -> None: ...


class GatewayIngest:
    """`Ingest` over a RobotGateway: frames and presence go to the robot's writer shard.

    Who is connected comes from the router (broker/routing.py): with several gateways an
    agent may have dialled in to any of them, and the poller must stop for it all the same.
    """

    def __init__(self, gateway: object, router: Any) -> None:
        self._gateway = gateway
        self._router = router

    async def connected(self, robot_ids: Collection[str]) -> set[str]:
        """Return those of the robots whose agent holds an uplink, on any gateway."""
        return set(await self._router.connected(robot_ids)) if robot_ids else set()

    def submit(self, robot_id: str, payload: bytes) -> bool:
        """Queue a validated publish frame for commit."""
        return bool(self._gateway.submit(robot_id, payload))  # type: ignore[attr-defined]

    def submit_presence(self, change: PresenceChange) -> None:
        """Queue a presence change for commit."""
        self._gateway.batcher_of(change.robot_id).submit_presence(  # type: ignore[attr-defined]
            change)


class LegacySource:
    """Poll legacy robots every `interval_s` and feed what they say into the ingest."""

    def __init__(self, poller: LegacyPoller, ingest: Ingest, store: FleetStore,
                 hosts_file: Path, *, interval_s: float,
                 now: Callable[[], float] = time.time) -> None:
        self._poller = poller
        self._ingest = ingest
        self._store = store
        self._hosts_file = hosts_file
        self._interval_s = interval_s
        self._now = now
        self._tracker = LegacyTracker()
        self._hosts: list[LegacyHost] = []
        self._hosts_stamp: tuple[int, int] | None = None
        self.rounds = 0
        self.last_results: list[PollResult] = []

    async def run(self) -> None:
        """Poll round after round until cancelled."""
        while True:
            started = time.monotonic()
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad round (store down, bad file) must not end polling
                log.exception('legacy poll round failed')
            await asyncio.sleep(max(0.0, self._interval_s - (time.monotonic() - started)))

    async def poll_once(self) -> RoundOutcome:
        """Run one round: reload the hosts, poll those due, hand the outcome to the ingest."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._reload_hosts)
        live = await self._ingest.connected([h.robot_id for h in self._hosts])
        due = self._tracker.due(self._hosts, live.__contains__)
        results = await self._poller.poll_all(due) if due else []
        agents = await loop.run_in_executor(None, self._robots_with_agent,
                                            [r.host.robot_id for r in results if r.ok])
        # Asked again after the round: an agent may have dialled in while it was polled.
        live = await self._ingest.connected([r.host.robot_id for r in results])
        outcome = self._tracker.on_results(results, agents.__contains__, self._now(),
                                           live.__contains__)
        self._hand_over(outcome)
        self.rounds += 1
        self.last_results = results
        return outcome

    def _reload_hosts(self) -> None:
        try:
            stat = self._hosts_file.stat()
        except FileNotFoundError:
            self._hosts, self._hosts_stamp = [], None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._hosts_stamp:
            return
        try:
            hosts = load_hosts(self._hosts_file)
        except InventoryError as exc:
            log.error('legacy hosts file ignored, keeping the previous list: %s', exc)
            return
        self._hosts, self._hosts_stamp = hosts, stamp
        self._tracker.forget(h.robot_id for h in hosts)
        log.info('legacy poller: %d hosts', len(hosts))

    def _robots_with_agent(self, robot_ids: Sequence[str]) -> set[str]:
        """Return the robots among these whose newest heartbeat came from an agent."""
        if not robot_ids:
            return set()
        wanted = set(robot_ids)
        robots = self._store.list_robots(RobotFilter(), now=self._now())
        return {r.robot_id for r in robots if r.robot_id in wanted
                and r.agent_version not in (None, LEGACY_AGENT_VERSION)}

    def _hand_over(self, outcome: RoundOutcome) -> None:
        at = self._now()
        for change in outcome.presence:
            self._ingest.submit_presence(PresenceChange(change.robot_id, change.online, at,
                                                        change.reason))
        for frame in outcome.frames:
            publish = frame.as_publish()
            try:
                protocol.parse_publish(publish)
            except ProtocolError as exc:  # a bug of ours: say so rather than store nothing
                log.error('legacy frame of %s refused: %s', frame.robot_id, exc)
                continue
            if not self._ingest.submit(frame.robot_id, protocol.encode(publish)):
                log.warning('legacy frame of %s dropped: the ingest backlog is full',
                            frame.robot_id)
        for robot_id in outcome.flagged:
            log.warning('robot %s: SSH answers but its agent is silent', robot_id)
