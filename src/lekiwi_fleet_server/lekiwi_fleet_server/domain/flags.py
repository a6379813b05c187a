"""Feature flags: targeting, stable percentage buckets, staged steps and guards (pure).

A flag is boolean or a variant (one of named values). Its rules are tried in order; the first
that matches a robot gives the robot's value, else the flag's default. A rule matches by robot
list, by tag, or everyone, and optionally only a percentage of those: the robot's bucket, a
hash of (flag name, robot id) in [0, 100), must be below it. The hash is stable, so a robot
in the 5 % stays in as the rollout grows to 25 %, 50 % and 100 %, and each flag buckets the
fleet independently of the others.

A staged flag moves through `steps` (default 5 → 25 → 50 → 100 %, like deployment waves): its
percentage rules take the current step's percentage. Guards watch the cohort that gets the
rule's value: when a live metric of that cohort crosses its threshold, the guard trips and
its action applies: `off` (back to 0 %, immediately), `step_back` (one step back, gradually)
or `set` (the cohort gets another variant, e.g. uplink transport `polling`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

FlagValue = bool | str
FlagKind = Literal['boolean', 'variant']
GuardAction = Literal['off', 'step_back', 'set']
METRICS = ('error_rate', 'agent_memory_mb', 'agent_uss_mb', 'uplink_latency_p99_ms')
DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)
NAME = re.compile(r'^[a-z][a-z0-9_.-]{0,63}$')
# A ROS node name (with an optional namespace) and a parameter name (dots for nesting).
PARAMETER = re.compile(r'^/?[A-Za-z_][A-Za-z0-9_/]{0,127}:[A-Za-z_][A-Za-z0-9_.]{0,127}$')


class FlagError(ValueError):
    """A flag definition that cannot be used."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Who gets `value`: listed robots, robots with any of the tags, or (neither) everyone."""

    value: FlagValue
    robots: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    staged: bool = False  # True: only the flag's current step percentage of the matches

    def matches(self, robot_id: str, tags: Iterable[str]) -> bool:
        """Tell whether the rule's audience holds the robot (before any percentage)."""
        if self.robots and robot_id not in self.robots:
            return False
        return not self.tags or not set(self.tags).isdisjoint(tags)


@dataclass(frozen=True, slots=True)
class Guard:
    """Trip when the cohort's `metric` exceeds `above`; then do `action`."""

    metric: str
    above: float
    action: GuardAction
    value: FlagValue | None = None  # for 'set'

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise FlagError(f'guard metric must be one of {", ".join(METRICS)}')
        if self.action == 'set' and self.value is None:
            raise FlagError("a 'set' guard needs the value to set")


@dataclass(frozen=True, slots=True)
class Flag:
    """A flag's whole definition and where its staged rollout stands."""

    name: str
    kind: FlagKind = 'boolean'
    default: FlagValue = False
    variants: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    steps: tuple[float, ...] = DEFAULT_STEPS
    step: int = 0  # index into steps; -1: staged rules reach nobody (off)
    guards: tuple[Guard, ...] = ()
    tripped: Mapping[int, FlagValue] = field(default_factory=dict)  # guard index → value set
    # Where robots apply the value: 'node:parameter' targets of the configure command
    # (e.g. 'fleet_uplink:transport'); none: the robot only reports that it received it.
    parameters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise FlagError('flag name must be 1-64 of [a-z0-9_.-], starting with a letter')
        values = [self.default, *(r.value for r in self.rules),
                  *(g.value for g in self.guards if g.value is not None)]
        if self.kind == 'boolean':
            if self.variants or any(type(v) is not bool for v in values):
                raise FlagError('a boolean flag has only true/false values and no variants')
        else:
            if not self.variants or len(set(self.variants)) != len(self.variants):
                raise FlagError('a variant flag names its distinct variants')
            bad = [v for v in values if not isinstance(v, str) or v not in self.variants]
            if bad:
                raise FlagError(f'values {bad!r} are not among the variants')
        if not self.steps or any(not 0 < s <= 100 for s in self.steps) or \
                list(self.steps) != sorted(set(self.steps)):
            raise FlagError('steps must be increasing percentages in (0, 100]')
        if not -1 <= self.step < len(self.steps):
            raise FlagError(f'step must be -1..{len(self.steps) - 1}')
        for target in self.parameters:
            if not PARAMETER.match(target):
                raise FlagError(f"parameter target {target!r} is not 'node:parameter'")

    @property
    def percentage(self) -> float:
        """Return the share of each staged rule's audience that gets its value now."""
        return 0.0 if self.step < 0 else self.steps[self.step]


def bucket(flag_name: str, robot_id: str) -> float:
    """Return the robot's stable bucket in [0, 100) for this flag."""
    digest = hashlib.sha256(f'{flag_name}\x00{robot_id}'.encode()).digest()
    return int.from_bytes(digest[:8], 'big') / 2**64 * 100.0


def evaluate(flag: Flag, robot_id: str, tags: Iterable[str]) -> tuple[FlagValue, str]:
    """Return the robot's value of the flag and why ('rule N', 'default', 'guard N')."""
    tag_set = frozenset(tags)
    for index, rule in enumerate(flag.rules):
        if not rule.matches(robot_id, tag_set):
            continue
        if rule.staged and bucket(flag.name, robot_id) >= flag.percentage:
            continue
        if rule.staged and flag.tripped:
            latest = max(flag.tripped)  # of the tripped guards, the last defined decides
            return flag.tripped[latest], f'guard {latest}'
        return rule.value, f'rule {index}'
    return flag.default, 'default'


def in_cohort(flag: Flag, robot_id: str, tags: Iterable[str]) -> bool:
    """Tell whether the robot is in the cohort the guards watch (a staged rule reached it)."""
    tag_set = frozenset(tags)
    for rule in flag.rules:
        if rule.matches(robot_id, tag_set):
            return rule.staged and bucket(flag.name, robot_id) < flag.percentage
    return False


@dataclass(frozen=True, slots=True)
class GuardTrip:
    """A guard that tripped, with the metric value that tripped it."""

    index: int
    guard: Guard
    observed: float


def check_guards(flag: Flag, cohort_metrics: Mapping[str, float]) -> list[GuardTrip]:
    """Return the guards the cohort's metrics trip (a metric not measured trips nothing)."""
    trips = []
    for index, guard in enumerate(flag.guards):
        observed = cohort_metrics.get(guard.metric)
        if observed is not None and observed > guard.above and index not in flag.tripped:
            trips.append(GuardTrip(index, guard, observed))
    return trips


def apply_trip(flag: Flag, trip: GuardTrip) -> Flag:
    """Return the flag after a guard's action."""
    action = trip.guard.action
    if action == 'off':
        return replace(flag, step=-1)
    if action == 'step_back':
        return replace(flag, step=max(-1, flag.step - 1))
    assert trip.guard.value is not None  # checked at construction
    return replace(flag, tripped={**flag.tripped, trip.index: trip.guard.value})


def advance(flag: Flag) -> Flag:
    """Return the flag one step further (the next wave of a staged migration)."""
    if flag.step >= len(flag.steps) - 1:
        raise FlagError(f'flag {flag.name} is at its last step already')
    return replace(flag, step=flag.step + 1)
