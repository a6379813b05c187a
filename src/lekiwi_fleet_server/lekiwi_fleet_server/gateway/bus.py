"""In-process update bus: committed changes → aggregated updates for dashboard subscribers.

`UpdateBus` is the seam: a broker-backed bus (NATS, say) implements the same three methods.
The in-process one coalesces per robot (only the newest row of a robot within a flush window is
sent), encodes each update once and hands the same text to every subscriber, so the cost of a
heartbeat does not grow with the number of dashboards.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from lekiwi_fleet_server.store.interface import BatchResult, RecordedEvent, RobotSummary

log = logging.getLogger(__name__)


def _default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, tuple | frozenset | set):
        return list(obj)
    raise TypeError(f'cannot encode {type(obj).__name__}')


def encode_update(kind: str, at: float, robots: list[RobotSummary],
                  events: list[RecordedEvent]) -> str:
    """Encode one dashboard update as JSON text (dataclasses go straight through orjson)."""
    return orjson.dumps({'type': kind, 'at': at, 'robots': robots, 'events': events},
                        default=_default).decode()


class Subscription:
    """One subscriber's bounded queue of encoded updates; dropped when it falls behind."""

    def __init__(self, max_updates: int, on_close: Callable[[Subscription], None]) -> None:
        self._queue: deque[str] = deque()
        self._max = max_updates
        self._ready = asyncio.Event()
        self._on_close = on_close
        self.closed = False
        self.dropped = False  # True when closed because the subscriber lagged

    def offer(self, update: str) -> None:
        """Queue an update, or drop the subscriber when it is too far behind."""
        if self.closed:
            return
        if len(self._queue) >= self._max:
            self.dropped = True
            self.close()
            return
        self._queue.append(update)
        self._ready.set()

    async def get(self) -> str | None:
        """Return the next update, or None once the subscription is closed."""
        while not self._queue:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def close(self) -> None:
        """End the subscription; a waiting `get` returns None."""
        if not self.closed:
            self.closed = True
            self._queue.clear()
            self._ready.set()
            self._on_close(self)


class UpdateBus(Protocol):
    """What the gateway and the stream endpoint need from a bus."""

    def publish(self, result: BatchResult) -> None: ...

    def subscribe(self) -> Subscription: ...

    def subscriber_count(self) -> int: ...


class InProcessBus:
    """Coalesce committed changes per robot and flush them to subscribers periodically."""

    def __init__(self, flush_interval_s: float, max_queued_updates: int,
                 now: Callable[[], float]) -> None:
        self._flush_interval_s = flush_interval_s
        self._max_queued = max_queued_updates
        self._now = now
        self._robots: dict[str, RobotSummary] = {}
        self._events: list[RecordedEvent] = []
        self._subscribers: set[Subscription] = set()

    def publish(self, result: BatchResult) -> None:
        """Take a committed batch's changes; they go out at the next flush."""
        if not self._subscribers:
            return  # nobody listens: keep no backlog
        robots = self._robots
        for row in result.changed_robots:
            robots[row.robot_id] = row
        self._events.extend(result.new_events)

    def subscribe(self) -> Subscription:
        """Open a subscription to future updates."""
        sub = Subscription(self._max_queued, self._subscribers.discard)
        self._subscribers.add(sub)
        return sub

    def subscriber_count(self) -> int:
        """Return how many subscribers are attached."""
        return len(self._subscribers)

    def flush(self) -> int:
        """Send what accumulated as one update to every subscriber; return robots sent."""
        if not self._robots and not self._events:
            return 0
        robots, events = list(self._robots.values()), self._events
        self._robots, self._events = {}, []
        if not self._subscribers:
            return 0
        update = encode_update('update', self._now(), robots, events)
        for sub in list(self._subscribers):
            sub.offer(update)
        return len(robots)

    async def run(self) -> None:
        """Flush every interval until cancelled."""
        while True:
            await asyncio.sleep(self._flush_interval_s)
            try:
                self.flush()
            except Exception:  # a bad row must not end the dashboard feed for good
                log.exception('update bus flush failed')

    def close(self) -> None:
        """Close every subscription."""
        for sub in list(self._subscribers):
            sub.close()
