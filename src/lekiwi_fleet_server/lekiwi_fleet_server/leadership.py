"""Exactly one process drives rollouts: a lease, and the loop that starts and stops the engine.

Every server process builds a DeploymentEngine (its REST and GraphQL routes read and command
deployments through it), but only the lease holder's engine ticks: with several processes
(`serve --role gateway|api`, each a create_app) two ticking engines would each send the same
robots their goals and race on the deployments' streams. Chosen over "the api role only":
an operator may run no api process at all (the compose file's gateway serves the API), or
several, and a leader that dies must be replaced without a human.

- Without Redis (the embedded default, role `all`): one process, always the leader.
- With Redis (`redis_url`): a lease `SET NX PX` of `ttl_s` holding `<holder>|<token>`, renewed
  every third of its TTL by its holder only (one Lua script: check, then extend). Each new
  lease takes the next fencing token (`INCR`): a process that lost the lease (paused longer
  than the TTL, cut off from Redis) stops ticking at its next renewal, and a stale write it
  might still make is refused by the event store itself, whose `(stream, version)` key fails
  an append at a version the new leader already used (engine.py reloads the rollout then).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)

LEASE_KEY = 'lekiwi:lease:deployment-engine'
FENCE_KEY = 'lekiwi:lease:deployment-engine:fence'

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
    """Who drives the rollouts."""

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

    def __init__(self, url: str, holder: str, ttl_s: float = 10.0, *, timeout_s: float = 2.0
                 ) -> None:
        import redis.asyncio as aioredis  # the Redis stack only where it is configured

        self.ttl_s = ttl_s
        self._holder = holder
        self._token: int | None = None
        self._redis: Any = aioredis.Redis.from_url(url, socket_timeout=timeout_s,
                                                   socket_connect_timeout=timeout_s)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)

    async def acquire(self) -> int | None:
        """Take or renew the lease; None when another holds it or Redis does not answer."""
        try:
            token = await self._acquire(keys=[LEASE_KEY, FENCE_KEY],
                                        args=[self._holder, int(self.ttl_s * 1000)])
        except Exception as exc:  # Redis down: not the leader (safe side), try again later
            log.warning('deployment engine lease: Redis unavailable (%s)', exc)
            self._token = None
            return None
        self._token = int(token) if token else None
        return self._token

    async def release(self) -> None:
        """Delete the lease if it is still ours, so another process takes over at once."""
        if self._token is not None:
            with contextlib.suppress(Exception):
                await self._release(keys=[LEASE_KEY], args=[f'{self._holder}|{self._token}'])
        self._token = None
        with contextlib.suppress(Exception):
            await self._redis.aclose()


class Drivable(Protocol):
    """The engine's lifecycle (deployments/engine.py)."""

    @property
    def driving(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LeaderLoop:
    """Start the engine while this process holds the lease, stop it when it does not."""

    def __init__(self, lease: Lease, engine: Drivable) -> None:
        self._lease = lease
        self._engine = engine
        self._task: asyncio.Task[None] | None = None
        self.token: int | None = None  # the fencing token of this process's lease

    async def start(self) -> None:
        """Try for the lease now (so a lone process starts driving at once), then keep at it."""
        await self.step()
        self._task = asyncio.create_task(self._loop(), name='deployment-lease')

    async def step(self) -> None:
        """Take or renew the lease once; start or stop the engine to match."""
        token = await self._lease.acquire()
        if token is not None and token != self.token and self._engine.driving:
            await self._engine.stop()  # a new lease of ours: reload from the store
        self.token = token
        if token is not None and not self._engine.driving:
            log.info('deployment engine: leading (fencing token %d)', token)
            await self._engine.start()
        elif token is None and self._engine.driving:
            log.warning('deployment engine: lease lost, no longer driving rollouts')
            await self._engine.stop()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._lease.ttl_s / 3)
            try:
                await self.step()
            except Exception:  # a bad step must not end the loop: the engine keeps its state
                log.exception('deployment engine lease step failed')

    async def stop(self) -> None:
        """Stop the loop and the engine; give the lease up."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._engine.driving:
            await self._engine.stop()
        await self._lease.release()
        self.token = None


def deployment_lease(settings: Any, ttl_s: float = 10.0) -> Lease:
    """Return the lease the settings call for: Redis when `redis_url` is set, else sole."""
    if settings.redis_url:
        return RedisLease(settings.redis_url, settings.resolved_gateway_id, ttl_s)
    return SoleLease()
