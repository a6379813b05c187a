"""Presence and session ownership of robots, shared by every gateway of a fleet.

A gateway that authenticates a robot *claims* it: the registry records which gateway holds
the robot and hands out a fencing token, a number that grows with every claim of that robot
(it never goes back, even across restarts of a gateway or of Redis). Whatever a gateway
decides about a robot later (refresh, release, an 'offline' presence change) carries its
token, and the registry or the store refuses it once a newer claim exists: a gateway that was
slow, partitioned or replaced cannot overwrite the new owner's 'online'.

Claims live with a TTL and the holding gateway refreshes them (one round trip for all its
robots). A gateway that dies stops refreshing: its claims expire and its robots show offline
after `presence_ttl_s`, unless they reconnected elsewhere first (the new claim replaces the
dead gateway's at once). `expired()` hands each expired claim to exactly one gateway, which
records the robot's RobotWentOffline.

Two implementations behind one interface: `InProcessRegistry` for the embedded default (one
gateway; no Redis) and `RedisRegistry` (redis-py asyncio with hiredis) for several gateways.
The contract tests (test/broker/test_presence.py) run against both.

Redis layout (standalone Redis or a primary with replicas; the scripts touch keys they derive
from the robot id, so Redis Cluster is not supported):
  <prefix>tok:<robot>   the robot's last fencing token (no TTL: stays monotonic)
  <prefix>own:<robot>   hash gw, tok, since, heard; PEXPIRE presence_ttl_s
  <prefix>expiry        sorted set robot -> when its claim expires (Unix s), for `expired()`
  <prefix>gw:<gateway>  pub/sub channel: "<robot> <token>" when another gateway took a robot
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

OnReplaced = Callable[[str, int], None]  # (robot_id, the new claim's token)
_REFRESH_CHUNK = 500  # robots per script call; one pipeline carries all chunks


class RegistryUnavailable(Exception):
    """The registry (Redis) cannot be reached; nothing was decided."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A gateway's hold on a robot, valid while its token is the robot's newest."""

    robot_id: str
    gateway_id: str
    token: int
    replaced_gateway: str | None = None  # another gateway that held the robot until now


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds a robot right now, and when its gateway last heard from it."""

    robot_id: str
    gateway_id: str
    token: int
    since: float
    heard_at: float

    def state(self, now: float, stale_after_s: float) -> str:
        """Return 'online', or 'stale' when the gateway has not heard the robot lately."""
        return 'online' if now - self.heard_at <= stale_after_s else 'stale'


class PresenceRegistry(ABC):
    """Where gateways claim robots, refresh and release their claims, and the API looks."""

    #: True when several gateways share it (Redis): the gateway then reaps expired claims.
    shared: bool = False

    @abstractmethod
    async def claim(self, robot_id: str, gateway_id: str, now: float) -> Claim:
        """Make `gateway_id` the robot's holder with a new, higher token; tell the old one."""

    @abstractmethod
    async def refresh(self, claims: Sequence[tuple[Claim, float]], now: float) -> list[bool]:
        """Extend each (claim, heard_at) still current; False for those superseded or gone."""

    @abstractmethod
    async def release(self, claim: Claim) -> bool:
        """Drop the claim if it is still the robot's current one; tell whether it was."""

    @abstractmethod
    async def lookup(self, robot_ids: Iterable[str]) -> dict[str, Owner]:
        """Return the current owner of each robot that has one (one round trip)."""

    @abstractmethod
    async def latest_tokens(self, robot_ids: Iterable[str]) -> dict[str, int]:
        """Return each robot's newest token handed out (claimed or since released)."""

    @abstractmethod
    async def expired(self, now: float, limit: int = 1000) -> list[tuple[str, int]]:
        """Take (robot_id, last token) of claims that expired unreleased, each exactly once."""

    @abstractmethod
    async def listen(self, gateway_id: str, on_replaced: OnReplaced) -> None:
        """Call `on_replaced(robot, token)` whenever another gateway claims one of ours."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise RegistryUnavailable unless the registry answers."""

    async def close(self) -> None:
        """Release connections and listeners."""
        return None


# -- in process (embedded default) ---------------------------------------------------------------
@dataclass(slots=True)
class _Held:
    gateway_id: str
    token: int
    since: float
    heard_at: float
    expires_at: float


class InProcessRegistry(PresenceRegistry):
    """The registry of one process: dictionaries, with the same TTL and token rules as Redis."""

    shared = False

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        if ttl_s <= 0:
            raise ValueError('ttl_s must be positive')
        self._ttl_s = ttl_s
        self._clock = clock  # lookups only: every other call is given `now`
        self._tokens: dict[str, int] = {}
        self._held: dict[str, _Held] = {}
        self._listeners: dict[str, OnReplaced] = {}

    def _current(self, robot_id: str, now: float) -> _Held | None:
        held = self._held.get(robot_id)
        return held if held is not None and held.expires_at > now else None

    async def claim(self, robot_id: str, gateway_id: str, now: float) -> Claim:
        token = self._tokens[robot_id] = self._tokens.get(robot_id, 0) + 1
        previous = self._current(robot_id, now)
        self._held[robot_id] = _Held(gateway_id, token, now, now, now + self._ttl_s)
        replaced = None
        if previous is not None and previous.gateway_id != gateway_id:
            replaced = previous.gateway_id
            listener = self._listeners.get(replaced)
            if listener is not None:
                listener(robot_id, token)
        return Claim(robot_id, gateway_id, token, replaced)

    async def refresh(self, claims: Sequence[tuple[Claim, float]], now: float) -> list[bool]:
        kept = []
        for claim, heard_at in claims:
            held = self._current(claim.robot_id, now)
            ok = held is not None and held.token == claim.token
            if ok:
                assert held is not None
                held.heard_at, held.expires_at = heard_at, now + self._ttl_s
            kept.append(ok)
        return kept

    async def release(self, claim: Claim) -> bool:
        held = self._held.get(claim.robot_id)
        if held is None or held.token != claim.token:
            return False
        del self._held[claim.robot_id]
        return True

    async def lookup(self, robot_ids: Iterable[str]) -> dict[str, Owner]:
        now, out = self._clock(), {}
        for robot_id in robot_ids:
            held = self._current(robot_id, now)
            if held is not None:
                out[robot_id] = Owner(robot_id, held.gateway_id, held.token, held.since,
                                      held.heard_at)
        return out

    async def latest_tokens(self, robot_ids: Iterable[str]) -> dict[str, int]:
        return {r: self._tokens[r] for r in robot_ids if r in self._tokens}

    async def expired(self, now: float, limit: int = 1000) -> list[tuple[str, int]]:
        gone = [(r, h.token) for r, h in self._held.items() if h.expires_at <= now][:limit]
        for robot_id, _token in gone:
            del self._held[robot_id]
        return gone

    async def listen(self, gateway_id: str, on_replaced: OnReplaced) -> None:
        self._listeners[gateway_id] = on_replaced

    async def ping(self) -> None:
        return None


# -- Redis (several gateways) ------------------------------------------------------------------
# Each script runs atomically in Redis: no other client's command interleaves, which is what
# makes "compare the token, then act" safe without WATCH/MULTI retries.
# The token is the larger of last + 1 and Redis's clock in microseconds: monotonic per robot
# like INCR, and still higher than any token handed out before if Redis lost its data (a
# restart without persistence), so a gateway's old claim can never outrank a new one.
_CLAIM = """
local t = redis.call('TIME')
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = string.format('%.0f', math.max(last + 1, tonumber(t[1]) * 1000000 + tonumber(t[2])))
redis.call('SET', KEYS[1], token)
local prev = redis.call('HGET', KEYS[2], 'gw')
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'gw', ARGV[1], 'tok', token, 'since', ARGV[2], 'heard', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
if prev and prev ~= ARGV[1] then
  redis.call('PUBLISH', ARGV[6] .. prev, ARGV[5] .. ' ' .. token)
end
return {token, prev}
"""

_REFRESH = """
local z = KEYS[#KEYS]
local out = {}
for i = 1, #KEYS - 1 do
  local base = 2 + (i - 1) * 3
  if redis.call('HGET', KEYS[i], 'tok') == ARGV[base + 1] then
    redis.call('HSET', KEYS[i], 'heard', ARGV[base + 2])
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    redis.call('ZADD', z, ARGV[2], ARGV[base + 3])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'tok') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# A robot due in the expiry set whose claim still exists was refreshed by a gateway whose
# ZADD we have not seen in this order; put it back at its real expiry so it is reaped later.
_EXPIRED = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, robot in ipairs(due) do
  local owner = ARGV[3] .. 'own:' .. robot
  local left = redis.call('PTTL', owner)
  if left > 0 then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + left / 1000.0, robot)
  else
    redis.call('ZREM', KEYS[1], robot)
    table.insert(out, robot)
    table.insert(out, redis.call('GET', ARGV[3] .. 'tok:' .. robot) or '0')
  end
end
return out
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_POOL_CONNECTIONS = 64  # Redis connections of one process's registry


class RedisRegistry(PresenceRegistry):
    """The registry in Redis, shared by every gateway and API process of a fleet."""

    shared = True

    def __init__(self, url: str, ttl_s: float, *, prefix: str = 'lekiwi:presence:',
                 timeout_s: float = 2.0) -> None:
        import redis.asyncio as aioredis  # the Redis stack only where it is configured

        if ttl_s <= 0:
            raise ValueError('ttl_s must be positive')
        self._errors = (aioredis.RedisError, OSError)
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        # One retry: a pooled connection that Redis closed (it restarted) fails its first
        # command; a second attempt on a new connection answers. A blocking pool: a fleet
        # reconnecting at once claims thousands of robots concurrently, and redis-py's default
        # pool refuses the command after its 100th connection ("Too many connections"), so
        # those logins failed; here a command waits up to `timeout_s` for a free connection
        # (each takes well under a millisecond). `?max_connections=N` in the URL sets the size.
        self._redis = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
            url, max_connections=_POOL_CONNECTIONS, timeout=timeout_s,
            socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            health_check_interval=max(1, int(ttl_s)),
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
            retry_on_error=[aioredis.ConnectionError, aioredis.TimeoutError]))
        self._ttl_ms = int(ttl_s * 1000)
        self._ttl_s = ttl_s
        self._prefix = prefix
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._expired = self._redis.register_script(_EXPIRED)
        self._listener: asyncio.Task[None] | None = None

    def _tok(self, robot_id: str) -> str:
        return f'{self._prefix}tok:{robot_id}'

    def _own(self, robot_id: str) -> str:
        return f'{self._prefix}own:{robot_id}'

    @property
    def _expiry(self) -> str:
        return f'{self._prefix}expiry'

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except self._errors as exc:
            raise RegistryUnavailable(f'redis {what}: {exc}') from None

    async def claim(self, robot_id: str, gateway_id: str, now: float) -> Claim:
        token, previous = await self._call('claim', self._claim(
            keys=[self._tok(robot_id), self._own(robot_id), self._expiry],
            args=[gateway_id, repr(now), self._ttl_ms, repr(now + self._ttl_s), robot_id,
                  f'{self._prefix}gw:']))
        previous = _text(previous) if previous is not None else None
        return Claim(robot_id, gateway_id, int(token),
                     previous if previous not in (None, gateway_id) else None)

    async def refresh(self, claims: Sequence[tuple[Claim, float]], now: float) -> list[bool]:
        if not claims:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for start in range(0, len(claims), _REFRESH_CHUNK):
            chunk = claims[start:start + _REFRESH_CHUNK]
            args: list[Any] = [self._ttl_ms, repr(now + self._ttl_s)]
            for claim, heard_at in chunk:
                args += [str(claim.token), repr(heard_at), claim.robot_id]
            keys = [self._own(c.robot_id) for c, _ in chunk] + [self._expiry]
            # EVAL, not the registered script: a pipeline cannot retry NOSCRIPT per command.
            pipe.eval(_REFRESH, len(keys), *keys, *args)
        replies = await self._call('refresh', pipe.execute())
        return [bool(flag) for reply in replies for flag in reply]

    async def release(self, claim: Claim) -> bool:
        done = await self._call('release', self._release(
            keys=[self._own(claim.robot_id), self._expiry],
            args=[str(claim.token), claim.robot_id]))
        return bool(done)

    async def lookup(self, robot_ids: Iterable[str]) -> dict[str, Owner]:
        ids = list(robot_ids)
        if not ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for robot_id in ids:
            pipe.hmget(self._own(robot_id), 'gw', 'tok', 'since', 'heard')
        rows = await self._call('lookup', pipe.execute())
        out = {}
        for robot_id, (gw, tok, since, heard) in zip(ids, rows, strict=True):
            if gw is not None and tok is not None:
                out[robot_id] = Owner(robot_id, _text(gw), int(tok), float(since or 0),
                                      float(heard or 0))
        return out

    async def latest_tokens(self, robot_ids: Iterable[str]) -> dict[str, int]:
        ids = list(robot_ids)
        if not ids:
            return {}
        values = await self._call('tokens', self._redis.mget([self._tok(r) for r in ids]))
        return {r: int(v) for r, v in zip(ids, values, strict=True) if v is not None}

    async def expired(self, now: float, limit: int = 1000) -> list[tuple[str, int]]:
        flat = await self._call('expired', self._expired(
            keys=[self._expiry], args=[repr(now), limit, self._prefix]))
        return [(_text(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def listen(self, gateway_id: str, on_replaced: OnReplaced) -> None:
        if self._listener is not None:
            raise RuntimeError('already listening')
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(f'{self._prefix}gw:{gateway_id}', on_replaced),
            name=f'presence-listen-{gateway_id}')

    async def _listen(self, channel: str, on_replaced: OnReplaced) -> None:
        # A notice missed while Redis is unreachable is not lost for good: the next refresh
        # finds the claim superseded and the gateway closes that session then.
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get('type') != 'message':
                        continue
                    robot_id, _, token = _text(message['data']).rpartition(' ')
                    with contextlib.suppress(ValueError):
                        on_replaced(robot_id, int(token))
            except asyncio.CancelledError:
                raise
            except self._errors as exc:
                log.warning('presence: replacement notices interrupted (%s); resubscribing', exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(*self._errors):
                    await pubsub.aclose()

    async def ping(self) -> None:
        await self._call('ping', self._redis.ping())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        with contextlib.suppress(*self._errors):
            await self._redis.aclose()


def open_registry(settings: Any) -> PresenceRegistry:
    """Return the registry the settings name: Redis when `redis_url` is set, else in-process."""
    if settings.redis_url:
        return RedisRegistry(settings.redis_url, settings.presence_ttl_s)
    return InProcessRegistry(settings.presence_ttl_s)


def fence(changes: Sequence[Any], latest: Mapping[str, int]) -> list[Any]:
    """Keep the presence changes whose fencing token is the robot's newest.

    `latest` maps robot ids to their newest token (`latest_tokens`). A change decided under an
    older claim comes from a gateway that has lost the robot since: its 'offline' (or a late
    'online') would overwrite the new holder's record, so it goes. A change with token 0 was
    made without a registry (an older caller) and is kept.
    """
    kept = []
    for change in changes:
        token = getattr(change, 'token', 0)
        newest = latest.get(change.robot_id)
        if token and newest is not None and token < newest:
            continue  # decided by a gateway that no longer holds the robot
        kept.append(change)
    return kept


def live_status(stored: str, owner: Owner | None, now: float, stale_after_s: float,
                claimed: bool = True) -> str:
    """Return a robot's status with live presence laid over the read model's `stored` one.

    Online or not comes from the registry (a claim held and refreshed by a living gateway);
    the read model keeps what it knows better: 'stale' (no heartbeat lately) and
    'never_seen'. A robot no gateway ever claimed (`claimed` False: one the legacy poller
    watches over SSH, say) keeps the read model's presence.
    """
    if owner is None and not claimed:
        return stored
    if owner is None:
        return 'never_seen' if stored == 'never_seen' else 'offline'
    if stored in ('online', 'stale'):
        return stored
    # Claimed, but the read model has not taken the 'online' yet (or the robot sends nothing).
    return owner.state(now, stale_after_s)
