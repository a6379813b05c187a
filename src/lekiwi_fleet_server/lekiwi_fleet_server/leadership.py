"""Fleet-wide duties that exactly one server process runs: a lease per duty, and its loop.

Every server process of a scaled-out fleet (`serve --role gateway|api`, each a create_app)
builds the same services, but some work must happen once for the fleet, not once per process:

- `deployment-engine`: only the holder's rollout engine ticks (two would send the same robots
  their goals and race on the deployments' streams);
- `flag-guards`: only the holder's flag engine measures guards and advances migration plans
  (every process still delivers flags to the robots it holds: flags/engine.py);
- `legacy`: only the holder polls the legacy robots over SSH and installs agents on a
  migration's new cohort (two would open every SSH session twice);
- `discovery`: only the holder runs the scheduled scans, browses mDNS and dials the rosbridge
  robots (two dialling one robot would take its session from each other in turn).

A lease rather than "the api role only": an operator may run no api process at all (the
compose file's gateway serves the API), or several, and a holder that dies must be replaced
without a human.

- Without Redis (the embedded default, role `all`): one process, always the holder.
- With Redis (`redis_url`): a lease `SET NX PX` of `ttl_s` holding `<holder>|<token>`, renewed
  every third of its TTL by its holder only (one Lua script: check, then extend). Each new
  lease takes the next fencing token (`INCR`): a process that lost the lease (paused longer
  than the TTL, cut off from Redis) stops its duty at its next renewal. For rollouts and flags
  a stale write it might still make is refused by the event store itself, whose `(stream,
  version)` key fails an append at a version the new holder already used (the engines reload
  then); a stale poll or scan only repeats a reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEPLOYMENTS, FLAG_GUARDS, LEGACY, DISCOVERY = (
    'deployment-engine', 'flag-guards', 'legacy', 'discovery')


def lease_key(duty: str) -> str:
    """Return the Redis key of a duty's lease (its fencing counter is the key + ':fence')."""
    return f'lekiwi:lease:{duty}'


# KEYS: lease, fence; ARGV: holder, ttl ms. Returns the holder's token, or false (someone else).
_ACQUIRE = """
local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, '|', 1, true)
  if sep and string.sub(v, 1, sep - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(v, sep + 1))
  end
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
"""
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and v == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease(Protocol):
    """Who holds a duty."""

    ttl_s: float

    async def acquire(self) -> int | None:
        """Take or renew the lease; return its fencing token, or None (another holds it)."""
        ...

    async def release(self) -> None:
        """Give the lease up (at a clean stop), if held."""
        ...


class SoleLease:
    """One process, no Redis: this process always leads (token 1)."""

    ttl_s = 1.0

    async def acquire(self) -> int | None:
        """Return 1: there is no one else."""
        return 1

    async def release(self) -> None:
        """Nothing to give up."""


class RedisLease:
    """A lease in Redis with a TTL and a fencing token (see the module docstring)."""

    def __init__(self, url: str, holder: str, ttl_s: float = 10.0, *,
                 duty: str = DEPLOYMENTS, timeout_s: float = 2.0) -> None:
        import redis.asyncio as aioredis  # the Redis stack only where it is configured

        self.ttl_s = ttl_s
        self.duty = duty
        self._key = lease_key(duty)
        self._holder = holder
        self._token: int | None = None
        self._redis: Any = aioredis.Redis.from_url(url, socket_timeout=timeout_s,
                                                   socket_connect_timeout=timeout_s)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)

    async def acquire(self) -> int | None:
        """Take or renew the lease; None when another holds it or Redis does not answer."""
        try:
            token = await self._acquire(keys=[self._key, f'{self._key}:fence'],
                                        args=[self._holder, int(self.ttl_s * 1000)])
        except Exception as exc:  # Redis down: not the leader (safe side), try again later
            log.warning('%s lease: Redis unavailable (%s)', self.duty, exc)
            self._token = None
            return None
        self._token = int(token) if token else None
        return self._token

    async def release(self) -> None:
        """Delete the lease if it is still ours, so another process takes over at once."""
        if self._token is not None:
            with contextlib.suppress(Exception):
                await self._release(keys=[self._key], args=[f'{self._holder}|{self._token}'])
        self._token = None
        with contextlib.suppress(Exception):
            await self._redis.aclose()


class Drivable(Protocol):
    """A duty's lifecycle (the rollout engine, deployments/engine.py; a TaskDuty)."""

    @property
    def driving(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class TaskDuty:
    """A duty made of tasks: started while the lease is held, cancelled when it is lost.

    `begin` starts the duty's tasks on the running loop and returns them; `end`, when given,
    runs after they are cancelled (to close what they opened).
    """

    def __init__(self, begin: Callable[[], Awaitable[Sequence[asyncio.Task[Any]]]],
                 end: Callable[[], Awaitable[None]] | None = None) -> None:
        self._begin = begin
        self._end = end
        self._tasks: Sequence[asyncio.Task[Any]] = ()
        self.driving = False

    async def start(self) -> None:
        """Start the duty's tasks."""
        self._tasks = await self._begin()
        self.driving = True

    async def stop(self) -> None:
        """Cancel the duty's tasks and wait for them, then end it."""
        self.driving = False
        tasks, self._tasks = self._tasks, ()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._end is not None:
            await self._end()


class LeaderLoop:
    """Run a duty while this process holds its lease, stop it when it does not."""

    def __init__(self, lease: Lease, runner: Drivable, *, duty: str = DEPLOYMENTS) -> None:
        self._lease = lease
        self._runner = runner
        self._duty = duty
        self._task: asyncio.Task[None] | None = None
        self.token: int | None = None  # the fencing token of this process's lease

    async def start(self) -> None:
        """Try for the lease now (so a lone process starts driving at once), then keep at it."""
        await self.step()
        self._task = asyncio.create_task(self._loop(), name=f'{self._duty}-lease')

    async def step(self) -> None:
        """Take or renew the lease once; start or stop the duty to match."""
        token = await self._lease.acquire()
        if token is not None and token != self.token and self._runner.driving:
            await self._runner.stop()  # a new lease of ours: reload from the store
        self.token = token
        if token is not None and not self._runner.driving:
            log.info('%s: this process holds the duty (fencing token %d)', self._duty, token)
            await self._runner.start()
        elif token is None and self._runner.driving:
            log.warning('%s: lease lost, this process no longer runs the duty', self._duty)
            await self._runner.stop()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._lease.ttl_s / 3)
            try:
                await self.step()
            except Exception:  # a bad step must not end the loop: the duty keeps its state
                log.exception('%s lease step failed', self._duty)

    async def stop(self) -> None:
        """Stop the loop and the duty; give the lease up."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._runner.driving:
            await self._runner.stop()
        await self._lease.release()
        self.token = None


def lease_for(settings: Any, duty: str, ttl_s: float = 10.0) -> Lease:
    """Return the duty's lease the settings call for: Redis when `redis_url` is set, else sole."""
    if settings.redis_url:
        return RedisLease(settings.redis_url, settings.resolved_gateway_id, ttl_s, duty=duty)
    return SoleLease()


async def hold(settings: Any, duty: str, runner: Drivable) -> LeaderLoop:
    """Start the loop that runs `runner` while this process holds the duty's lease."""
    loop = LeaderLoop(lease_for(settings, duty), runner, duty=duty)
    await loop.start()
    return loop
