"""Fleet state as Prometheus metrics, read from the store when Prometheus scrapes.

Robots by status and by heartbeat state, teleop sessions now, each robot's presence and last
heartbeat (what the offline alerts use), and the free space of the data directory and the blob
store. One read of the robots read model per scrape (about one a 15 s): the gateway's hot path
is not touched. PostgreSQL's own size and disk come from postgres_exporter / node_exporter.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lekiwi_fleet_server.domain.robot_state import HEARTBEAT_STATES
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import FleetStore, RobotFilter, RobotSummary, StoreError

log = logging.getLogger(__name__)
STATUSES = ('online', 'stale', 'offline', 'never_seen')
# ResourceUsage fields exported per robot: three series a robot, what the robot dashboard shows.
RESOURCES = (('battery_percent', 'Battery charge, percent'),
             ('cpu_percent', 'Busy time of all cores, percent'),
             ('temperature_c', 'Hottest thermal zone, degrees Celsius'))


class FleetStateCollector(Collector):
    """Collect the fleet's state from the store at scrape time."""

    def __init__(self, settings: Settings, store: FleetStore, now: Callable[[], float]) -> None:
        self._store = store
        self._now = now
        self._volumes = {'data_dir': settings.data_dir, 'blob_dir': settings.resolved_blob_dir}
        url = settings.resolved_database_url
        self._sqlite_file = Path(url.removeprefix('sqlite:///')) if url.startswith(
            'sqlite:///') else None

    def describe(self) -> list[Metric]:
        """Describe nothing up front (registration must not read the store)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the fleet's metrics; without the store, only its up gauge (0)."""
        up = GaugeMetricFamily('lekiwi_fleet_state_up',
                               'Whether the last scrape could read the fleet from the store')
        try:
            robots = self._store.list_robots(RobotFilter(), now=self._now())
        except StoreError as exc:
            log.warning('metrics: cannot read the fleet: %s', exc)
            up.add_metric([], 0)
            yield up
            yield from self._disk()
            return
        up.add_metric([], 1)
        yield up
        active = [r for r in robots if not r.revoked]
        by_status: Counter[str] = Counter(str(r.status) for r in active)
        status = GaugeMetricFamily('lekiwi_robots', 'Enrolled robots (not revoked) by status',
                                   labels=['status'])
        for name in STATUSES:
            status.add_metric([name], by_status.get(name, 0))
        yield status
        live = [r for r in active if r.status in ('online', 'stale')]
        by_state = Counter(r.state or 'unknown' for r in live)
        state = GaugeMetricFamily('lekiwi_robots_by_state',
                                  'Robots online or stale, by their heartbeat state',
                                  labels=['state'])
        for name in HEARTBEAT_STATES:
            state.add_metric([name], by_state.get(name, 0))
        yield state
        teleop = GaugeMetricFamily('lekiwi_teleop_active_robots',
                                   'Robots a person is teleoperating now')
        teleop.add_metric([], sum(1 for r in live if r.teleop_active))
        yield teleop
        online = GaugeMetricFamily('lekiwi_robot_online',
                                   'Whether the robot is online (1) or not (0)',
                                   labels=['robot_id'])
        seen = GaugeMetricFamily('lekiwi_robot_last_heartbeat_timestamp_seconds',
                                 "Unix time of the robot's newest heartbeat", labels=['robot_id'])
        for robot in active:
            if robot.status == 'never_seen':
                continue  # enrolled, never connected: not "offline" to an alert
            online.add_metric([robot.robot_id], 1 if robot.status in ('online', 'stale') else 0)
            if robot.last_heartbeat_at is not None:
                seen.add_metric([robot.robot_id], robot.last_heartbeat_at)
        yield online
        yield seen
        yield from _resources(live)
        yield self._undelivered({r.robot_id for r in active})
        yield from self._disk()

    def _undelivered(self, robot_ids: set[str]) -> Metric:
        family = GaugeMetricFamily(
            'lekiwi_robot_undelivered_messages',
            "Messages of the robot's current boot not committed yet though a newer one was "
            '(its outbox backlog as the server sees it)', labels=['robot_id'])
        try:
            backlog = self._store.undelivered_messages()
        except StoreError as exc:
            log.warning('metrics: cannot read the robots\' backlog: %s', exc)
            return family
        for robot_id in sorted(robot_ids & set(backlog)):
            family.add_metric([robot_id], backlog[robot_id])
        return family

    def _disk(self) -> Iterator[Metric]:
        avail = GaugeMetricFamily('lekiwi_filesystem_avail_bytes',
                                  'Free bytes of the file system holding a server directory',
                                  labels=['volume'])
        size = GaugeMetricFamily('lekiwi_filesystem_size_bytes',
                                 'Size of the file system holding a server directory',
                                 labels=['volume'])
        for name, path in self._volumes.items():
            probe = path if path.exists() else path.parent
            try:
                usage = shutil.disk_usage(probe)
            except OSError:
                continue  # not made yet (a blob store before its first release)
            avail.add_metric([name], usage.free)
            size.add_metric([name], usage.total)
        yield avail
        yield size
        if self._sqlite_file is not None and self._sqlite_file.exists():
            db = GaugeMetricFamily('lekiwi_database_file_bytes',
                                   'Size of the embedded SQLite database file')
            db.add_metric([], self._sqlite_file.stat().st_size)
            yield db


def _resources(live: list[RobotSummary]) -> Iterator[Metric]:
    for name, meaning in RESOURCES:
        family = GaugeMetricFamily(f'lekiwi_robot_{name}', f'{meaning} (newest heartbeat)',
                                   labels=['robot_id'])
        for robot in live:
            value = robot.resources.get(name)
            if isinstance(value, int | float):
                family.add_metric([robot.robot_id], float(value))
        yield family
