"""The stream's snapshot, built once for every dashboard that subscribed before it was read.

A snapshot of 10,000 robots is one query, one registry round trip and ~7 MB of JSON: cheap
once, expensive when every dashboard of a control room asks for it at the same moment, which
is exactly what happens after the NATS bus resynchronises (broker/nats_bus.py closes every
stream; every page reconnects within its backoff). So builds are shared, under the one rule
that makes a snapshot right for a subscriber: it was read after the subscriber subscribed
(then every update it misses is in it, and every later one reaches the subscription).

`ticket()` is taken right after subscribing; a build records the ticket count when its read
starts; a subscriber may use a build that started at or after its ticket, and waits for the
next one otherwise. A build started for nobody's sake is never made: the cache holds no
snapshot between connections (memory), only the one being shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Build:
    started: int  # tickets handed out when its read started
    done: asyncio.Future[str]


class SharedSnapshots:
    """Build the encoded snapshot at most once per wave of subscribers (see module doc)."""

    def __init__(self, build: Callable[[], Awaitable[str]]) -> None:
        self._build = build
        self._tickets = 0
        self._current: _Build | None = None
        self.builds = 0  # how many snapshots were read (the tests and metrics look)

    def ticket(self) -> int:
        """Take a ticket: call right after subscribing to the bus."""
        self._tickets += 1
        return self._tickets

    async def get(self, ticket: int) -> str:
        """Return an encoded snapshot read after the subscription of `ticket` began."""
        while True:
            current = self._current
            if current is not None and current.started >= ticket:
                return await asyncio.shield(current.done)  # one waiter leaving cancels nothing
            if current is not None and not current.done.done():
                # A build is under way but began before this subscriber: wait, then build anew.
                await asyncio.wait([current.done])
                continue
            return await self._start()

    async def _start(self) -> str:
        build = _Build(self._tickets, asyncio.get_running_loop().create_future())
        self._current = build
        self.builds += 1
        try:
            text = await self._build()
        except BaseException as exc:
            build.done.set_exception(exc)
            build.done.exception()  # retrieved: waiters get it, nobody logs it as lost
            raise
        finally:
            if self._current is build:
                self._current = None  # the next subscriber reads anew: no stale copy kept
        build.done.set_result(text)
        return text
