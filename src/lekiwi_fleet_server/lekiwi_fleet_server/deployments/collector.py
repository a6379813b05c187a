"""Rollouts as Prometheus metrics, read when Prometheus scrapes.

Deployments by status come from the deployments read model (one grouped count a scrape, so
they survive a restart and agree with the API); robots per state of each deployment in
progress come from the engine's folds of those deployments' streams, which it holds anyway
(no replay per scrape). The status changes themselves are counted as they happen by the engine
(`lekiwi_deployment_transitions_total` in metrics.py): a rollout that paused and was resumed
between two scrapes is seen there and nowhere else.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lekiwi_fleet_server.domain.rollout import ACTIVE_STATUSES, ENDED_STATUSES, Rollout

log = logging.getLogger(__name__)
DEPLOYMENT_STATUSES = tuple(sorted(ACTIVE_STATUSES | ENDED_STATUSES))
ROBOT_STATES = ('pending', 'running', 'succeeded', 'failed', 'skipped')


class DeploymentCollector(Collector):
    """Collect deployments by status and robots per state of the ones in progress."""

    def __init__(self, counts: Callable[[], dict[str, int]],
                 active: Callable[[], list[Rollout]]) -> None:
        self._counts = counts
        self._active = active

    def describe(self) -> list[Metric]:
        """Describe nothing up front (registration must not read the store)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the deployments' metrics; by status only when the read model answered."""
        up = GaugeMetricFamily('lekiwi_deployments_state_up',
                               'Whether the last scrape could read the deployments read model')
        try:
            counts = self._counts()
        except Exception as exc:  # the database is down: say so, keep /metrics answering
            log.warning('metrics: cannot read the deployments: %s', exc)
            counts = None
        up.add_metric([], 0 if counts is None else 1)
        yield up
        if counts is not None:
            by_status = GaugeMetricFamily('lekiwi_deployments', 'Deployments by status',
                                          labels=['status'])
            for name in DEPLOYMENT_STATUSES:
                by_status.add_metric([name], counts.get(name, 0))
            yield by_status
        status = GaugeMetricFamily(
            'lekiwi_deployment_status',
            'A deployment in progress (1), labelled with its release and status',
            labels=['deployment_id', 'release_version', 'status'])
        robots = GaugeMetricFamily('lekiwi_deployment_robots',
                                   'Robots of a deployment in progress, by their state in it',
                                   labels=['deployment_id', 'release_version', 'state'])
        for rollout in self._active():
            if not rollout.active:
                continue  # ended in this tick: the engine lets go of it right after
            labels = [rollout.deployment_id, rollout.release_version]
            status.add_metric([*labels, rollout.status], 1)
            states = Counter(r.state for r in rollout.robots.values())
            for state in ROBOT_STATES:
                robots.add_metric([*labels, state], states.get(state, 0))
        yield status
        yield robots
