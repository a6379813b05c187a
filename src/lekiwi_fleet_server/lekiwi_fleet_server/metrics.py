"""Prometheus metrics of one server instance, in its own registry (no global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5,
                    1.0, 2.5)
_DEPLOYMENT_STATUSES = ('running', 'paused', 'rolling_back', 'rolled_back', 'aborting',
                        'aborted', 'completed')  # domain/rollout.py's, without importing it
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000)


class FleetMetrics:
    """The gateway's and the API's counters, gauges and histograms."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge('lekiwi_gateway_connections',
                                 'Authenticated robot connections', registry=r)
        self.messages_received = Counter('lekiwi_gateway_messages_received',
                                         'Valid robot messages queued for commit', registry=r)
        self.messages_committed = Counter('lekiwi_gateway_messages_committed',
                                          'Robot messages acknowledged after commit', registry=r)
        self.duplicates = Counter('lekiwi_gateway_duplicates',
                                  'Messages found committed before (re-acked)', registry=r)
        self.frames_refused = Counter('lekiwi_gateway_frames_refused',
                                      'Frames refused with an error status', ['code'], registry=r)
        self.commit_seconds = Histogram('lekiwi_store_commit_seconds',
                                        'Duration of one commit_batch', registry=r,
                                        buckets=_LATENCY_BUCKETS)
        self.ack_seconds = Histogram(
            'lekiwi_gateway_ack_seconds',
            "From a batch's oldest frame reaching the gateway to the batch's acks written",
            registry=r, buckets=_LATENCY_BUCKETS)
        self.ack_send_seconds = Histogram(
            'lekiwi_gateway_ack_send_seconds',
            "Time the gateway's loop spent writing one batch's acks, refusals and update",
            registry=r, buckets=_LATENCY_BUCKETS)
        self.commit_failures = Counter('lekiwi_store_commit_failures',
                                       'Batches the store refused (retried)', registry=r)
        self.batch_size = Histogram('lekiwi_store_batch_messages', 'Messages in one batch',
                                    registry=r, buckets=_BATCH_BUCKETS)
        self.queue_depth = Gauge('lekiwi_gateway_queue_depth',
                                 'Messages waiting for commit', registry=r)
        self.dashboard_subscribers = Gauge('lekiwi_stream_subscribers',
                                           'Dashboard stream subscribers', registry=r)

        self.stream_lag_seconds = Histogram(
            'lekiwi_stream_lag_seconds',
            "From a batch's commit start to its dashboard update written to a dashboard",
            registry=r, buckets=_LATENCY_BUCKETS)

        # Every status present from the start at 0: increase() sees the first change.
        self.deployment_transitions = Counter(
            'lekiwi_deployment_transitions',
            'Deployment status changes the rollout engine stored, by the new status', ['to'],
            registry=r)
        for status in _DEPLOYMENT_STATUSES:
            self.deployment_transitions.labels(status)
        # Feature flags (issue 20): each guard trip the flag engine stored.
        self.flag_guard_trips = Counter(
            'lekiwi_flag_guard_trips',
            'Flag guards that tripped (their cohort crossed a threshold), by flag, metric and '
            'action', ['flag', 'metric', 'action'], registry=r)

    def add_collector(self, collector: Collector) -> None:
        """Register a collector read at scrape time (the fleet's state)."""
        self.registry.register(collector)

    def track_queue_depth(self, depth: Callable[[], float]) -> None:
        """Read the queue depth from the batcher whenever metrics are scraped."""
        self.queue_depth.set_function(depth)

    def render(self) -> bytes:
        """Return the metrics in the Prometheus text format."""
        return generate_latest(self.registry)
