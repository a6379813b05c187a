"""The flag engine: operators' changes as events, delivery to robots, guards and migration plans.

The shell around the pure flag core (domain/flags.py, domain/flag_events.py,
domain/flag_delivery.py). It holds each flag's fold in memory (loaded by replay at start) and
is the one writer of the flag streams in the process (a lock), like the rollout engine.

Every `tick_s` it reads the robots' read model once and:
1. guards: for each staged flag with guards, measures the cohort its staged rules reach now
   (error rate, agent memory, uplink latency p99) and, when a guard trips, appends
   `FlagGuardTripped` (actor `guard`), which turns the flag off, steps it back or sets the
   cohort another variant; operators see it on the dashboard stream (`{"type": "flag"}`) and
   in the flag's event log. A flag whose guard tripped is not measured again for
   `guard_cooldown_s`, so the robots that left the cohort have time to apply the change;
2. plans: a flag with a migration plan advances one step when its gate held for the soak
   time (`plan_may_advance`: no trip, enough of the cohort applied it), actor `plan`;
3. delivery: each connected robot whose evaluated flags (their `revision`) differ from what it
   last applied in this boot gets a `configure` command; its answer (what it applied) is
   stored in `flag_deliveries`. A change thus reaches robots at the next tick, a robot that
   (re)connects or restarts gets its flags at the next tick after it is seen, and one that
   failed is retried after `retry_s`.

Several server processes (`serve --role gateway`, broker/): each runs this engine, and each
delivers only to the robots its own gateway holds, by design: a configure goes over the
robot's session, and the registry's claim (`held_here`) makes the holder the one process of
the fleet that sends it, so two processes never configure the same robot (an api role holds
none and delivers nothing). Guards and plans are the fleet's, not a process's: only the
process holding the `flag-guards` lease measures them (`measuring`, leadership.py), and its
plan gates count what every gateway delivered, read from `flag_deliveries` (at most every
`gate_refresh_s`, merged with this process's newer ones), not only its own deliveries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server.domain import flag_events as fe
from lekiwi_fleet_server.domain.events import DomainEvent, RobotFlagGuardTripped
from lekiwi_fleet_server.domain.flag_delivery import (
    RobotView,
    cohort_metrics,
    configure_payload,
    own_metric,
)
from lekiwi_fleet_server.domain.flags import FlagError, apply_trip, check_guards, in_cohort
from lekiwi_fleet_server.gateway.commands import CommandError
from lekiwi_fleet_server.store.flags import Delivery, FlagStore
from lekiwi_fleet_server.store.interface import RobotFilter

log = logging.getLogger(__name__)


class UnknownFlag(KeyError):
    """No live flag of that name."""


class FlagRefused(ValueError):
    """The change does not fit the flag's state (409)."""


class FlagEngine:
    """Flags for one server; built in the lifespan."""

    def __init__(self, store: FlagStore, fleet_store: Any, gateway: Any, *,
                 now: Callable[[], float], tick_s: float = 1.0, retry_s: float = 5.0,
                 guard_cooldown_s: float = 30.0, command_timeout_s: float = 10.0,
                 publish: Callable[[dict[str, Any]], None] = lambda update: None,
                 on_trip: Callable[[fe.FlagGuardTripped], None] = lambda event: None,
                 idle_ticks: int = 5, max_sending: int = 500,
                 held_here: Callable[[Sequence[str]], Awaitable[set[str]]] | None = None,
                 gate_refresh_s: float = 5.0) -> None:
        self.store = store
        self._fleet = fleet_store
        self._gateway = gateway
        # Which of the robots with a session here this process delivers to (RobotGateway's:
        # the registry's current claim); None: all of them (one process, or a test's gateway).
        self._held_here = held_here
        self._now = now
        self._tick_s = tick_s
        self._retry_s = retry_s
        self._cooldown_s = guard_cooldown_s
        self._timeout_s = command_timeout_s
        self._publish = publish
        self._on_trip = on_trip  # metrics count them (the alert LekiwiFlagGuardTripped)
        self._states: dict[str, fe.FlagState] = {}
        self._delivered: dict[str, Delivery] = {}
        self._tried: dict[str, float] = {}  # robot -> when its last delivery failed
        self._sending: set[str] = set()
        self._last_trip: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        # robot -> (flags' versions, tags, payload): a tick evaluates a robot again only when
        # a flag or its tags changed, so a steady fleet of thousands costs dict lookups.
        self._payloads: dict[str, tuple[tuple[tuple[str, int], ...], tuple[str, ...],
                                        dict[str, Any]]] = {}
        # Listing the fleet reads every robot's row (about 10 ms per 1,000 robots): done each
        # tick only while a flag has guards or a plan to measure, else every `idle_ticks`
        # ticks or at once when woken (a flag changed), so an idle engine costs the server
        # nothing at 10,000 robots (tests/bench/gateway.py measured 13 % of a core).
        self._idle_ticks = idle_ticks
        self._ticks_since_listing = idle_ticks
        # Deliveries are recorded (and told to dashboards) in batches by one task, and at most
        # `max_sending` configure commands are in flight: a fleet reconnecting at once is
        # served in waves, not by 10,000 commands and transactions in one tick.
        self._max_sending = max_sending
        self._unrecorded: list[Delivery] = []
        self._more = False  # the last tick sent configures: the next looks again at once
        self._recorder: asyncio.Task[None] | None = None
        # Guards and plans: measured here while this process holds the fleet's `flag-guards`
        # lease (always, with one process); see the module docstring.
        self.measuring = True
        self._gate_refresh_s = gate_refresh_s
        self._fleet_delivered: dict[str, Delivery] = {}
        self._fleet_read_at = -1e18

    # -- lifecycle ----------------------------------------------------------------------------
    async def load(self) -> None:
        """Load every flag by replay and what robots were sent (the CLI stops here)."""
        self._states = await run_in_threadpool(self.store.load_all)
        self._delivered = await run_in_threadpool(self.store.deliveries)

    async def start(self) -> None:
        """Load, then start ticking."""
        await self.load()
        self._task = asyncio.create_task(self._loop(), name='flag-engine')

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._recorder, *self._sends) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        woken = True
        while True:
            try:
                if woken or self._more or self._watching() \
                        or self._ticks_since_listing >= self._idle_ticks:
                    await self.tick()
                else:
                    self._ticks_since_listing += 1
            except Exception:  # a bad tick must not end the engine: log it, try again
                log.exception('flag engine tick failed')
            try:
                await asyncio.wait_for(self._wake.wait(), self._tick_s)
                woken = True
            except asyncio.TimeoutError:
                woken = False
            self._wake.clear()

    def _watching(self) -> bool:
        """Tell whether a live flag has guards or a plan, which each tick measures."""
        return self.measuring and any(s.flag.guards or s.plan is not None for s in self.live())

    def wake(self) -> None:
        """Tick at once (not at the next idle listing)."""
        self._wake.set()

    def measuring_duty(self) -> MeasuringDuty:
        """Return the `flag-guards` duty (leadership.py) that turns `measuring` on and off."""
        return MeasuringDuty(self)

    async def _gate_deliveries(self, now: float) -> Mapping[str, Delivery]:
        """Return every robot's last delivery, by any process, for the plans' gates."""
        if self._held_here is None:  # one process: its own deliveries are all there are
            return self._delivered
        if now - self._fleet_read_at >= self._gate_refresh_s:
            self._fleet_delivered = await run_in_threadpool(self.store.deliveries)
            self._fleet_read_at = now
        merged = dict(self._fleet_delivered)
        for robot_id, own in self._delivered.items():  # this process's, when newer
            stored = merged.get(robot_id)
            if stored is None or own.delivered_at >= stored.delivered_at:
                merged[robot_id] = own
        return merged

    # -- reads --------------------------------------------------------------------------------
    def live(self) -> list[fe.FlagState]:
        """Return the flags not deleted, by name."""
        return [s for _n, s in sorted(self._states.items()) if not s.deleted]

    def get(self, name: str) -> fe.FlagState:
        state = self._states.get(name)
        if state is None or state.deleted:
            raise UnknownFlag(name)
        return state

    def delivery(self, robot_id: str) -> Delivery | None:
        return self._delivered.get(robot_id)

    def payload_for(self, robot_id: str, tags: tuple[str, ...]) -> dict[str, Any]:
        """Return the configure payload a robot gets now."""
        live = self.live()
        key = tuple((s.flag.name, s.version) for s in live)
        cached = self._payloads.get(robot_id)
        if cached is not None and cached[0] == key and cached[1] == tags:
            return cached[2]
        payload = configure_payload([s.flag for s in live], robot_id, tags)
        self._payloads[robot_id] = (key, tags, payload)
        return payload

    # -- operators' changes -------------------------------------------------------------------
    async def create(self, definition: Mapping[str, Any], *, step: int, by: str) -> fe.FlagState:
        """Create a flag (again, after a delete); raise FlagError or FlagRefused."""
        flag = fe.flag_from_dict(definition, step=step)
        event = fe.FlagCreated('', flag=flag.name, definition=fe.flag_to_dict(flag), step=step,
                               at=self._now())
        async with self._lock:
            current = self._states.get(flag.name)
            if current is not None and not current.deleted:
                raise FlagRefused(f'flag {flag.name} exists')
            return await self._append(current, flag.name, [event], by)

    async def change(self, name: str, definition: Mapping[str, Any], *,
                     by: str) -> fe.FlagState:
        """Replace a flag's rules, default, variants, steps, guards or targets."""
        async with self._lock:
            state = self.get(name)
            flag = fe.flag_from_dict({**definition, 'name': name},
                                     step=min(state.flag.step,
                                              len(definition.get('steps') or
                                                  state.flag.steps) - 1))
            event = fe.FlagDefinitionChanged('', flag=name, definition=fe.flag_to_dict(flag),
                                             at=self._now())
            return await self._append(state, name, [event], by)

    async def step(self, name: str, direction: str, *, by: str,
                   to: float | None = None) -> fe.FlagState:
        """Advance ('advance'), step back ('back') or set the step of a percentage ('set')."""
        async with self._lock:
            state = self.get(name)
            flag, now = state.flag, self._now()
            if direction == 'advance':
                if flag.step >= len(flag.steps) - 1:
                    raise FlagRefused(f'flag {name} is at its last step already')
                target = flag.step + 1
            elif direction == 'back':
                if flag.step < 0:
                    raise FlagRefused(f'flag {name} is off already')
                target = flag.step - 1
            else:
                if to is None:
                    raise FlagRefused('give the percentage to set')
                if to == 0:
                    target = -1
                elif to in flag.steps:
                    target = flag.steps.index(to)
                else:
                    raise FlagRefused(f'{to:g} % is not one of the steps '
                                      f'{", ".join(f"{s:g}" for s in flag.steps)} (or 0)')
            percentage = 0.0 if target < 0 else flag.steps[target]
            cls = fe.FlagStepAdvanced if target > flag.step else fe.FlagSteppedBack
            event = cls('', flag=name, step=target, percentage=percentage,
                        reason=f'by {by}', at=now)
            return await self._append(state, name, [event], by)

    async def delete(self, name: str, *, by: str) -> fe.FlagState:
        async with self._lock:
            state = self.get(name)
            return await self._append(state, name, [fe.FlagDeleted('', flag=name,
                                                                   at=self._now())], by)

    async def plan(self, name: str, action: str, *, by: str, soak_s: float = 600.0,
                   min_applied: float = 0.8) -> fe.FlagState:
        """Set ('set'), pause or resume a flag's migration plan."""
        async with self._lock:
            state = self.get(name)
            now = self._now()
            event: DomainEvent
            if action == 'set':
                event = fe.FlagPlanSet('', flag=name, soak_s=soak_s, min_applied=min_applied,
                                       at=now)
            elif state.plan is None:
                raise FlagRefused(f'flag {name} has no migration plan')
            elif action == 'pause':
                if state.plan.paused:
                    raise FlagRefused(f'the migration of {name} is paused already')
                event = fe.FlagPlanPaused('', flag=name, reason=f'paused by {by}', at=now)
            elif action == 'resume':
                if not state.plan.paused:
                    raise FlagRefused(f'the migration of {name} is not paused')
                event = fe.FlagPlanResumed('', flag=name, at=now)
            else:
                raise FlagRefused(f'unknown plan action {action!r}')
            return await self._append(state, name, [event], by)

    async def _append(self, state: fe.FlagState | None, name: str,
                      events: list[DomainEvent], actor: str) -> fe.FlagState:
        # ConcurrencyConflict (another server process appended first) and FlagError go up.
        folded = await run_in_threadpool(self.store.append, state, name, events, actor=actor,
                                         now=self._now())
        self._states[name] = folded
        for event in events:
            self._publish({'type': 'flag', 'at': self._now(), 'flag': name,
                           'event': event.TYPE, 'summary': event.summary(), 'by': actor,
                           'severity': event.severity, 'step': folded.flag.step,
                           'percentage': folded.flag.percentage, 'deleted': folded.deleted})
        self._wake.set()
        return folded

    # -- the tick -----------------------------------------------------------------------------
    async def tick(self) -> None:
        """Check guards and plans, then deliver changed flags to connected robots."""
        now = self._now()
        self._ticks_since_listing = 0
        summaries = await run_in_threadpool(self._fleet.list_robots, RobotFilter(), now=now)
        robots = [RobotView(r.robot_id, tuple(r.tags), r.state, r.boot_id,
                            {**dict(r.telemetry), **dict(r.resources)})
                  for r in summaries if not r.revoked]
        versions = await run_in_threadpool(self.store.versions)
        async with self._lock:
            # Changes another process made (the CLI, a second server): replay those flags.
            for name, version in versions.items():
                known = self._states.get(name)
                if known is None or known.version != version:
                    fresh = await run_in_threadpool(self.store.load, name)
                    if fresh is not None:
                        self._states[name] = fresh
            if self.measuring:
                live = self.live()
                gate = await self._gate_deliveries(now) if any(
                    st.plan is not None for st in live) else self._delivered
                for state in live:
                    await self._check(state, robots, gate, now)
        self._more = False
        due: list[tuple[RobotView, dict[str, Any]]] = []
        for robot in robots:
            if len(self._sending) + len(due) >= self._max_sending:
                break  # the rest go in the next tick (self._more)
            # Only robots with a session on this process's gateway: the deliberate split of
            # the fleet between processes (module docstring).
            if robot.robot_id in self._sending or not self._gateway.is_connected(robot.robot_id):
                continue
            payload = self.payload_for(robot.robot_id, robot.tags)
            last = self._delivered.get(robot.robot_id)
            if last is not None and last.accepted and last.revision == payload['revision'] \
                    and last.boot_id == (robot.boot_id or ''):
                continue
            if now - self._tried.get(robot.robot_id, -1e18) < self._retry_s:
                continue
            due.append((robot, payload))
        if due and self._held_here is not None:
            try:
                held = await self._held_here([robot.robot_id for robot, _ in due])
            except Exception as exc:  # the registry is away: deliver nothing rather than twice
                log.warning('flags: not delivered this tick, holders unknown (%s)', exc)
                return
            due = [(robot, payload) for robot, payload in due if robot.robot_id in held]
        for robot, payload in due:
            self._sending.add(robot.robot_id)
            self._more = True
            task = asyncio.create_task(self._deliver(robot, payload))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _check(self, state: fe.FlagState, robots: list[RobotView],
                     delivered: Mapping[str, Delivery], now: float) -> None:
        flag = state.flag
        cohort = [r for r in robots if in_cohort(flag, r.robot_id, r.tags)]
        if flag.guards and cohort and \
                now - self._last_trip.get(flag.name, -1e18) >= self._cooldown_s:
            trips = check_guards(flag, cohort_metrics(cohort))
            if trips:
                trip = trips[0]  # one action at a time: the next tick measures again
                after = apply_trip(flag, trip)
                event = fe.FlagGuardTripped(
                    '', flag=flag.name, guard=trip.index, metric=trip.guard.metric,
                    above=trip.guard.above, observed=trip.observed, action=trip.guard.action,
                    value=trip.guard.value, step=after.step, cohort=len(cohort), at=now)
                log.warning('flag %s: %s', flag.name, event.summary())
                self._last_trip[flag.name] = now
                await self._append(state, flag.name, [event], 'guard')
                self._on_trip(event)
                await self._tell_robots(event, cohort)
                return
        if state.plan is None:
            return
        revision_ok = 0
        for robot in cohort:
            last = delivered.get(robot.robot_id)
            if last is not None and last.accepted and \
                    last.revision == self.payload_for(robot.robot_id, robot.tags)['revision']:
                revision_ok += 1
        reason = fe.plan_may_advance(state, now, cohort=len(cohort), applied=revision_ok)
        if reason is not None:
            target = flag.step + 1
            await self._append(state, flag.name, [fe.FlagStepAdvanced(
                '', flag=flag.name, step=target, percentage=flag.steps[target],
                reason=reason, at=now)], 'plan')

    async def _tell_robots(self, trip: fe.FlagGuardTripped, cohort: list[RobotView]) -> None:
        """Put the trip on the timeline of each robot of the cohort (actor `guard`)."""
        events = [RobotFlagGuardTripped(
            robot.robot_id, flag=trip.flag, metric=trip.metric, above=trip.above,
            observed=trip.observed, own=own_metric(robot, trip.metric), action=trip.action,
            value=trip.value, at=trip.at) for robot in cohort]
        try:
            await run_in_threadpool(self._fleet.record_robot_events, events, now=self._now(),
                                    actor='guard', causation=f'flag:{trip.flag}')
        except Exception:  # the trip itself is recorded on the flag's stream already
            log.exception('flag %s: guard trip not put on the robots\' timelines', trip.flag)

    async def _deliver(self, robot: RobotView, payload: dict[str, Any]) -> None:
        try:
            response = await self._gateway.send_command(
                robot.robot_id, 'configure', orjson.dumps(payload).decode(),
                timeout_s=self._timeout_s)
        except CommandError as exc:
            self._tried[robot.robot_id] = self._now()
            log.info('flags for %s not delivered: %s', robot.robot_id, exc)
            return
        finally:
            self._sending.discard(robot.robot_id)
        report = _report(response.message)
        applied = report.get('applied', [])
        # An agent without the configure module answers with no report: it published the
        # flags on fleet/commands, which is all it can do; count that as delivered.
        accepted = bool(response.accepted) and not report.get('failed') and \
            report.get('revision', payload['revision']) == payload['revision']
        delivery = Delivery(robot.robot_id, robot.boot_id or '', payload['revision'],
                            dict(payload['flags']), accepted,
                            list(applied) + list(report.get('failed', [])), response.message,
                            self._now())
        if not accepted:
            self._tried[robot.robot_id] = self._now()
        self._delivered[robot.robot_id] = delivery
        self._unrecorded.append(delivery)
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record(), name='flag-deliveries')

    async def _record(self) -> None:
        """Store the deliveries made since the last batch, then tell dashboards of them."""
        while self._unrecorded:
            batch, self._unrecorded = self._unrecorded, []
            try:
                await run_in_threadpool(self.store.record_deliveries, batch)
            except Exception:  # kept in memory: stored with the next delivery's batch
                log.exception('%d flag deliveries not stored, will retry', len(batch))
                self._unrecorded[:0] = batch
                return
            self._publish({'type': 'flag_delivery', 'at': self._now(), 'deliveries': [
                {'robot_id': d.robot_id, 'revision': d.revision, 'accepted': d.accepted}
                for d in batch]})


class MeasuringDuty:
    """The `flag-guards` duty: this engine measures guards and plans while it is held."""

    def __init__(self, engine: FlagEngine) -> None:
        self._engine = engine

    @property
    def driving(self) -> bool:
        return self._engine.measuring

    async def start(self) -> None:
        self._engine.measuring = True
        self._engine.wake()  # measure at once, not at the next idle listing

    async def stop(self) -> None:
        self._engine.measuring = False


def _report(message: str) -> dict[str, Any]:
    """Return the agent's JSON report of what it applied ({} from an older agent)."""
    try:
        report = orjson.loads(message)
    except orjson.JSONDecodeError:
        return {}
    return report if isinstance(report, dict) else {}


__all__ = ['FlagEngine', 'FlagError', 'FlagRefused', 'UnknownFlag']
