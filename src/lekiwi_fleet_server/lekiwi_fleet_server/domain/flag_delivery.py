"""What a robot is sent (its evaluated flags) and what a cohort measures (pure).

`configure_payload` is the body of the `configure` command a robot gets: every live flag's
value for it, and the node parameters those values go to; its `revision` (a digest of the
rest) lets the server send a robot nothing while its revision has not changed.

`cohort_metrics` gives the guards their live metrics over a cohort's robots, from the read
model rows the server holds (the newest heartbeat and the reconstructed telemetry):
- `error_rate`: the share of the cohort's robots with a heartbeat whose state is `error`;
- `agent_memory_mb`: the 90th percentile of the robots' `agent_rss_mb` (the RSS of the agent's
  processes in MB of 10^6 bytes, as the agent reports it in its heartbeat's resources), so one
  robot's spike does not roll a whole cohort back;
- `agent_uss_mb`: the same of `agent_uss_mb`, the memory the agent's processes alone hold (its
  RSS less the shared library pages every ROS process maps, about 35 MB on a robot; the measure
  of the agent's 50 MB footprint goal). A rule "agent memory over 75 MB" on RSS trips on a
  healthy agent, whose RSS is 73-82 MB: USS is the figure that grows when the agent leaks;
- `uplink_latency_p99_ms`: the 99th percentile of the robots' own `uplink_ack_p99_ms` (each
  agent's ack latency p99 over its window, in its heartbeat's resources).
A metric no robot of the cohort reports is absent, and an absent metric trips nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from lekiwi_fleet_server.domain.flags import Flag, evaluate

# Each guard metric but error_rate: the agent's heartbeat figure it reads
# (docs/robot-protocol.md) and the cohort's percentile of it.
FIGURES: dict[str, tuple[str, float]] = {
    'agent_memory_mb': ('agent_rss_mb', 0.9),
    'agent_uss_mb': ('agent_uss_mb', 0.9),
    'uplink_latency_p99_ms': ('uplink_ack_p99_ms', 0.99),
}


@dataclass(frozen=True, slots=True)
class RobotView:
    """What evaluation and the guards read of a robot."""

    robot_id: str
    tags: tuple[str, ...] = ()
    state: str | None = None  # the newest heartbeat's state, None before any
    boot_id: str | None = None
    measures: Mapping[str, Any] = field(default_factory=dict)  # resources and telemetry


def configure_payload(flags: Iterable[Flag], robot_id: str,
                      tags: Iterable[str]) -> dict[str, Any]:
    """Return the configure command's payload for one robot (with its `revision`)."""
    tag_set = tuple(sorted(set(tags)))
    values: dict[str, Any] = {}
    parameters: list[dict[str, Any]] = []
    for flag in sorted(flags, key=lambda f: f.name):
        value, _why = evaluate(flag, robot_id, tag_set)
        values[flag.name] = value
        for target in flag.parameters:
            node, _, name = target.partition(':')
            parameters.append({'node': node, 'name': name, 'value': value, 'flag': flag.name})
    body = {'flags': values, 'parameters': parameters}
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return {'revision': digest[:32], **body}


def percentile(values: Sequence[float], share: float) -> float:
    """Return the nearest-rank percentile (share in (0, 1]) of non-empty values."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def _numbers(robots: Sequence[RobotView], name: str) -> list[float]:
    found = []
    for robot in robots:
        value = robot.measures.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and \
                math.isfinite(value):
            found.append(float(value))
    return found


def own_metric(robot: RobotView, metric: str) -> float | None:
    """Return one robot's own figure of a guard metric, or None where it reports none."""
    if metric == 'error_rate':
        return None if robot.state is None else float(robot.state == 'error')
    found = _numbers([robot], FIGURES[metric][0])
    return found[0] if found else None


def cohort_metrics(robots: Sequence[RobotView]) -> dict[str, float]:
    """Return the guards' metrics over a cohort (absent where nobody reports one)."""
    metrics: dict[str, float] = {}
    reporting = [r for r in robots if r.state is not None]
    if reporting:
        errors = sum(1 for r in reporting if r.state == 'error')
        metrics['error_rate'] = errors / len(reporting)
    for metric, (name, share) in FIGURES.items():
        found = _numbers(robots, name)
        if found:
            metrics[metric] = percentile(found, share)
    return metrics
