"""In-process update bus: committed batches → aggregated updates for dashboard subscribers.

`UpdateBus` is the seam: a broker-backed bus (NATS, say) implements the same methods. An update
is the aggregate of one committed batch (every robot row the batch changed, once, as a delta
from the row the updates carried before: gateway/summary_deltas.py; and the events it appended),
encoded once by the writer; the bus hands the same text to every subscriber as
soon as the batch commits, so a dashboard sees a change about when its robot sees the ack, and
the cost of a heartbeat does not grow with the number of dashboards.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from lekiwi_fleet_server.store.interface import RecordedEvent, RobotSummary


def _default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, tuple | frozenset | set):
        return list(obj)
    raise TypeError(f'cannot encode {type(obj).__name__}')


def encode_update(kind: str, at: float, robots: Sequence[RobotSummary | Mapping[str, Any]],
                  events: Sequence[RecordedEvent]) -> str:
    """Encode one dashboard update as JSON text (dataclasses go straight through orjson).

    `robots` holds whole summaries (a snapshot) or, in an update, whole summaries and deltas
    (gateway/summary_deltas.py).
    """
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

    def wants_updates(self) -> bool: ...

    def begin_batch(self) -> bool: ...

    def end_batch(self, wanted: bool) -> None: ...

    async def settled(self) -> None: ...

    def publish(self, update: str) -> None: ...

    def subscribe(self) -> Subscription: ...

    def subscriber_count(self) -> int: ...


class InProcessBus:
    """Hand each committed batch's encoded update to every subscriber."""

    def __init__(self, max_queued_updates: int) -> None:
        self._max_queued = max_queued_updates
        self._subscribers: set[Subscription] = set()
        # Batches committing without row deltas (nobody listened when they began), and an
        # event set while there are none: the hand-over to a new subscriber waits on it.
        self._blind = 0
        self._no_blind = asyncio.Event()
        self._no_blind.set()

    def wants_updates(self) -> bool:
        """Tell whether anybody listens (the writer skips building updates otherwise)."""
        return bool(self._subscribers)

    def begin_batch(self) -> bool:
        """Note a batch that starts committing; return whether it should build row deltas.

        Called on the event loop when the batch is handed to its writer, and matched by one
        `end_batch` once its update (if any) was published or the commit failed.
        """
        wanted = bool(self._subscribers)
        if not wanted:
            self._blind += 1
            self._no_blind.clear()
        return wanted

    def end_batch(self, wanted: bool) -> None:
        """Note that a batch begun with `begin_batch() == wanted` is done."""
        if not wanted:
            self._blind -= 1
            if self._blind == 0:
                self._no_blind.set()

    async def settled(self) -> None:
        """Return once every batch begun without row deltas is done.

        A new subscriber reads its snapshot after this: a batch that began before anybody
        listened carries only its events in its update, so its rows must be in the snapshot.
        No such batch begins while the subscriber is attached, so the wait ends.
        """
        await self._no_blind.wait()

    def publish(self, update: str) -> None:
        """Offer an encoded update to every subscriber (a lagging one is dropped)."""
        for sub in list(self._subscribers):
            sub.offer(update)

    def subscribe(self) -> Subscription:
        """Open a subscription to future updates."""
        sub = Subscription(self._max_queued, self._subscribers.discard)
        self._subscribers.add(sub)
        return sub

    def subscriber_count(self) -> int:
        """Return how many subscribers are attached."""
        return len(self._subscribers)

    def close(self) -> None:
        """Close every subscription."""
        for sub in list(self._subscribers):
            sub.close()
