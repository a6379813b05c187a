"""A feature flag's event stream and its fold (pure): what happened to a flag, and its state.

Each flag is a stream of its own (`flag_events`, keyed by flag name and version), like a
deployment: created, its definition changed, its step advanced or stepped back, a guard
tripped, its migration plan set, paused or resumed, deleted. Who made each change is in the
event's metadata (`actor`: an operator's name, `cli:<user>`, or `guard` / `plan` for the
server's own decisions), not in its data, so every event kind carries it the same way.

`FlagState.replay` folds a stream; the read model row and the engine's in-memory state are
that fold, so both are rebuildable from the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from lekiwi_fleet_server.domain.events import DomainEvent, type_registry
from lekiwi_fleet_server.domain.flags import (
    DEFAULT_STEPS,
    Flag,
    FlagError,
    FlagValue,
    Guard,
    Rule,
)


def flag_to_dict(flag: Flag) -> dict[str, Any]:
    """Return the JSON-ready definition of a flag (without its step and trips)."""
    return {
        'name': flag.name, 'kind': flag.kind, 'default': flag.default,
        'variants': list(flag.variants),
        'rules': [{'value': r.value, 'robots': list(r.robots), 'tags': list(r.tags),
                   'staged': r.staged} for r in flag.rules],
        'steps': list(flag.steps),
        'guards': [{'metric': g.metric, 'above': g.above, 'action': g.action,
                    'value': g.value} for g in flag.guards],
        'parameters': list(flag.parameters),
    }


def flag_from_dict(data: Mapping[str, Any], *, step: int = 0,
                   tripped: Mapping[int, FlagValue] | None = None) -> Flag:
    """Return the flag a definition describes; raise FlagError when it is not usable."""
    try:
        rules = tuple(Rule(value=r['value'], robots=tuple(r.get('robots') or ()),
                           tags=tuple(r.get('tags') or ()), staged=bool(r.get('staged')))
                      for r in data.get('rules') or ())
        guards = tuple(Guard(metric=str(g['metric']), above=float(g['above']),
                             action=g['action'], value=g.get('value'))
                       for g in data.get('guards') or ())
        return Flag(name=str(data['name']), kind=data.get('kind', 'boolean'),
                    default=data.get('default', False),
                    variants=tuple(data.get('variants') or ()), rules=rules,
                    steps=tuple(float(s) for s in data.get('steps') or DEFAULT_STEPS),
                    step=step, guards=guards, tripped=dict(tripped or {}),
                    parameters=tuple(data.get('parameters') or ()))
    except (KeyError, TypeError) as exc:
        raise FlagError(f'incomplete flag definition: {exc}') from None


@dataclass(frozen=True, slots=True)
class FlagEvent(DomainEvent):
    """Base of a flag stream's events: the flag's name and when (robot_id is unused: '')."""

    flag: str = ''
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class FlagCreated(FlagEvent):
    TYPE: ClassVar[str] = 'FlagCreated'
    definition: Mapping[str, Any] = field(default_factory=dict)
    step: int = 0

    def summary(self) -> str:
        return f'flag {self.flag} created'


@dataclass(frozen=True, slots=True)
class FlagDefinitionChanged(FlagEvent):
    """New rules, default, variants, steps, guards or targets (tripped guards are reset)."""

    TYPE: ClassVar[str] = 'FlagDefinitionChanged'
    definition: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return f'flag {self.flag} changed'


@dataclass(frozen=True, slots=True)
class FlagStepAdvanced(FlagEvent):
    TYPE: ClassVar[str] = 'FlagStepAdvanced'
    step: int = 0  # the step now
    percentage: float = 0.0
    reason: str = ''

    def summary(self) -> str:
        return f'flag {self.flag} advanced to {self.percentage:g} % ({self.reason})'


@dataclass(frozen=True, slots=True)
class FlagSteppedBack(FlagEvent):
    TYPE: ClassVar[str] = 'FlagSteppedBack'
    SEVERITY: ClassVar[str] = 'warning'
    step: int = 0  # the step now (-1: off)
    percentage: float = 0.0
    reason: str = ''

    def summary(self) -> str:
        return f'flag {self.flag} back to {self.percentage:g} % ({self.reason})'


@dataclass(frozen=True, slots=True)
class FlagGuardTripped(FlagEvent):
    """A guard saw its cohort's metric above its threshold and its action applied."""

    TYPE: ClassVar[str] = 'FlagGuardTripped'
    SEVERITY: ClassVar[str] = 'error'
    guard: int = 0
    metric: str = ''
    above: float = 0.0
    observed: float = 0.0
    action: str = ''
    value: Any = None  # for 'set'
    step: int = 0  # the step after the action
    cohort: int = 0  # robots in the cohort the metric was taken over

    def summary(self) -> str:
        return (f'flag {self.flag}: guard {self.metric} > {self.above:g} tripped '
                f'({self.observed:g} over {self.cohort} robots): {self.action}')


@dataclass(frozen=True, slots=True)
class FlagPlanSet(FlagEvent):
    """A migration plan: advance by itself after `soak_s` at each step while its gate holds."""

    TYPE: ClassVar[str] = 'FlagPlanSet'
    soak_s: float = 600.0
    min_applied: float = 0.8  # share of the step's cohort that must have applied the flag

    def summary(self) -> str:
        return f'flag {self.flag}: migration plan, soak {self.soak_s:g} s per step'


@dataclass(frozen=True, slots=True)
class FlagPlanPaused(FlagEvent):
    TYPE: ClassVar[str] = 'FlagPlanPaused'
    SEVERITY: ClassVar[str] = 'warning'
    reason: str = ''

    def summary(self) -> str:
        return f'flag {self.flag}: migration paused ({self.reason})'


@dataclass(frozen=True, slots=True)
class FlagPlanResumed(FlagEvent):
    TYPE: ClassVar[str] = 'FlagPlanResumed'

    def summary(self) -> str:
        return f'flag {self.flag}: migration resumed'


@dataclass(frozen=True, slots=True)
class FlagDeleted(FlagEvent):
    TYPE: ClassVar[str] = 'FlagDeleted'
    SEVERITY: ClassVar[str] = 'warning'

    def summary(self) -> str:
        return f'flag {self.flag} deleted'


FLAG_EVENT_CLASSES: tuple[type[DomainEvent], ...] = (
    FlagCreated, FlagDefinitionChanged, FlagStepAdvanced, FlagSteppedBack, FlagGuardTripped,
    FlagPlanSet, FlagPlanPaused, FlagPlanResumed, FlagDeleted,
)
# The flag streams' type registry (decode(..., event_types=FLAG_EVENT_TYPES)).
FLAG_EVENT_TYPES: Mapping[str, type[DomainEvent]] = type_registry(FLAG_EVENT_CLASSES)


@dataclass(frozen=True, slots=True)
class Plan:
    """A flag's migration plan and where it stands."""

    soak_s: float
    min_applied: float
    paused: bool = False
    reason: str = ''


@dataclass(frozen=True, slots=True)
class FlagState:
    """The fold of one flag's stream."""

    flag: Flag
    version: int = 0
    deleted: bool = False
    plan: Plan | None = None
    step_since: float = 0.0  # when the current step began (the plan's soak counts from it)
    updated_at: float = 0.0
    updated_by: str = ''
    created_by: str = ''

    @staticmethod
    def replay(events: Iterable[tuple[DomainEvent, str]]) -> FlagState | None:
        """Fold (event, actor) pairs in stream order; None for an empty stream."""
        state: FlagState | None = None
        for event, actor in events:
            state = fold(state, event, actor)
        return state


def fold(state: FlagState | None, event: DomainEvent, actor: str) -> FlagState:
    """Return the state after one event; raise FlagError for an event that cannot follow."""
    at = float(getattr(event, 'at', 0.0))
    if isinstance(event, FlagCreated):
        if state is not None and not state.deleted:
            raise FlagError(f'flag {event.flag} exists already')
        version = state.version if state is not None else 0
        flag = flag_from_dict(event.definition, step=event.step)
        return FlagState(flag, version + 1, step_since=at, updated_at=at, updated_by=actor,
                         created_by=actor)
    if state is None:
        raise FlagError(f'{event.TYPE} before FlagCreated')
    flag, plan, since = state.flag, state.plan, state.step_since
    deleted = False
    if isinstance(event, FlagDefinitionChanged):
        step = min(flag.step, len(event.definition.get('steps') or DEFAULT_STEPS) - 1)
        flag = flag_from_dict(event.definition, step=step)
    elif isinstance(event, FlagStepAdvanced | FlagSteppedBack):
        flag, since = replace(flag, step=event.step), at
    elif isinstance(event, FlagGuardTripped):
        if event.action == 'set':
            flag = replace(flag, tripped={**flag.tripped, event.guard: event.value})
        else:
            flag, since = replace(flag, step=event.step), at
        if plan is not None:  # a tripped guard stops the migration until an operator resumes
            plan = replace(plan, paused=True, reason=f'guard {event.metric} tripped')
    elif isinstance(event, FlagPlanSet):
        plan = Plan(event.soak_s, event.min_applied)
    elif isinstance(event, FlagPlanPaused):
        plan = replace(plan, paused=True, reason=event.reason) if plan else None
    elif isinstance(event, FlagPlanResumed):
        plan = replace(plan, paused=False, reason='') if plan else None
        since = at  # a resumed step soaks again in full
    elif isinstance(event, FlagDeleted):
        deleted = True
    else:
        raise FlagError(f'{event.TYPE} is not a flag event')
    return FlagState(flag, state.version + 1, deleted, plan, since, at, actor, state.created_by)


def plan_may_advance(state: FlagState, now: float, *, cohort: int, applied: int) -> str | None:
    """Return why the plan advances now (its gate held for the soak time), or None.

    The gate, like a deployment wave's success gate: the step has soaked `soak_s` with no
    guard tripping (a trip pauses the plan), and at least `min_applied` of the step's cohort
    applied the flag (an empty cohort holds it: nobody in it failed).
    """
    plan = state.plan
    if plan is None or plan.paused or state.deleted:
        return None
    if state.flag.step >= len(state.flag.steps) - 1:
        return None
    if now - state.step_since < plan.soak_s:
        return None
    if cohort and applied / cohort < plan.min_applied:
        return None
    return (f'gate held {now - state.step_since:.0f} s: {applied}/{cohort} robots applied '
            'it, no guard tripped')
