"""Health rules of a release's application: what the post-check requires. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TopicRule:
    """A topic the application must publish at `min_hz` or faster."""

    topic: str
    type_name: str  # e.g. 'std_msgs/msg/String'
    min_hz: float


@dataclass(frozen=True, slots=True)
class HealthRules:
    """Limits the application must meet within the health timeout."""

    topics: tuple[TopicRule, ...] = ()
    max_rss_bytes: int = 0  # 0: no limit
    max_cpu_percent: float = 0.0  # of one core; 0: no limit
    settle_s: float = 1.0  # the process must stay alive this long at least


@dataclass(frozen=True, slots=True)
class HealthReading:
    """What was measured of the application."""

    alive: bool
    seconds_up: float
    rates_hz: Mapping[str, float] = field(default_factory=dict)
    rss_bytes: int = 0
    cpu_percent: float = 0.0
    check_ok: bool | None = None  # the optional check command; None when there is none


def parse_topic_rule(text: str) -> TopicRule:
    """Parse 'topic:pkg/msg/Type:min_hz' (the node's parameter format)."""
    parts = text.rsplit(':', 2)
    if len(parts) != 3 or parts[1].count('/') != 2:
        raise ValueError(f'health topic {text!r} must be topic:pkg/msg/Type:min_hz')
    try:
        hz = float(parts[2])
    except ValueError:
        raise ValueError(f'health topic {text!r}: min_hz must be a number') from None
    return TopicRule(parts[0], parts[1], hz)


def problems(rules: HealthRules, reading: HealthReading) -> list[str]:
    """Return what is wrong (empty when healthy)."""
    if not reading.alive:
        return ['the application exited']
    found: list[str] = []
    if reading.seconds_up < rules.settle_s:
        found.append(f'up {reading.seconds_up:.1f} s of {rules.settle_s:g} s')
    for rule in rules.topics:
        rate = reading.rates_hz.get(rule.topic, 0.0)
        if rate < rule.min_hz:
            found.append(f'{rule.topic} at {rate:.1f} Hz (needs {rule.min_hz:g})')
    if rules.max_rss_bytes and reading.rss_bytes > rules.max_rss_bytes:
        found.append(f'RSS {reading.rss_bytes >> 20} MB over {rules.max_rss_bytes >> 20} MB')
    if rules.max_cpu_percent and reading.cpu_percent > rules.max_cpu_percent:
        found.append(f'CPU {reading.cpu_percent:.0f} % over {rules.max_cpu_percent:g} %')
    if reading.check_ok is False:
        found.append('the check command failed')
    return found
