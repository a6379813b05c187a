"""Prometheus metrics of one writer (a writer process, or the server's writer thread).

A writer process has a registry of its own and serves it on a port of its own
(`writer_metrics_port` + its shard index): simple, and replaced without trouble when the writers
move (a writer reached through a broker would serve the same names). The writer thread of a
server without writer processes records into the server's registry instead.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from lekiwi_fleet_server.store.interface import RecordedEvent

_COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5,
                   1.0, 2.5, 5.0)
DEPLOYMENT_EVENT = 'DeploymentStatusReported'


class WriterMetrics:
    """Batches, messages, commit time, errors and events of one writer shard."""

    def __init__(self, registry: CollectorRegistry, shard: int) -> None:
        self.registry = registry
        labels = {'shard': str(shard)}
        self._batches = Counter('lekiwi_writer_batches', 'Batches the writer committed',
                                ['shard'], registry=registry).labels(**labels)
        self._messages = Counter('lekiwi_writer_messages', 'Robot messages in committed batches',
                                 ['shard'], registry=registry).labels(**labels)
        self._seconds = Histogram('lekiwi_writer_commit_seconds',
                                  'Time to decode, plan and commit one batch', ['shard'],
                                  registry=registry, buckets=_COMMIT_BUCKETS).labels(**labels)
        self._errors = Counter('lekiwi_writer_errors', 'Batches that failed (retried)',
                               ['shard', 'error'], registry=registry)
        self._events = Counter('lekiwi_writer_events', 'Events appended, by type',
                               ['shard', 'type'], registry=registry)
        self._deployments = Counter(
            'lekiwi_writer_deployment_reports',
            "Robots' deployment status reports committed, by phase (rolled_back, failed, ...)",
            ['shard', 'phase'], registry=registry)
        self._flushes = Counter('lekiwi_writer_state_flushes',
                                'Current-state flushes that wrote rows (one statement each)',
                                ['shard'], registry=registry).labels(**labels)
        self._flushed = Counter('lekiwi_writer_state_flushed_robots',
                                'Robot rows the current-state flushes wrote', ['shard'],
                                registry=registry).labels(**labels)
        self._shard = str(shard)

    def committed(self, messages: int, seconds: float, events: Sequence[RecordedEvent]) -> None:
        """Record one committed batch."""
        self._batches.inc()
        self._messages.inc(messages)
        self._seconds.observe(seconds)
        if not events:
            return
        # One labelled increment per event type, not per event: a batch may hold thousands.
        for kind, count in collections.Counter(e.type for e in events).items():
            self._events.labels(self._shard, kind).inc(count)
        for event in events:
            if event.type == DEPLOYMENT_EVENT:
                self._deployments.labels(self._shard, str(event.data.get('phase', ''))).inc()

    def flushed(self, robots: int) -> None:
        """Record one current-state flush (`robots` rows written; 0: nothing was due)."""
        if robots:
            self._flushes.inc()
            self._flushed.inc(robots)

    def failed(self, exc: BaseException) -> None:
        """Record one failed batch."""
        self._errors.labels(self._shard, type(exc).__name__).inc()


def serve_writer_metrics(host: str, base_port: int | None, shard: int
                         ) -> tuple[WriterMetrics, int | None]:
    """Return a writer process's metrics and the port they are served on (None: not served)."""
    metrics = WriterMetrics(CollectorRegistry(auto_describe=True), shard)
    if base_port is None:
        return metrics, None
    port = base_port + shard if base_port else 0
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return metrics, int(server.server_port)
