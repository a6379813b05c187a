"""SessionOwnership against the in-process registry, with a clock and failures of the test's.

The two-gateway tests (test_gateway_ownership.py) run it inside real gateways on Redis; here
each branch is made to happen on purpose: the registry fails a given call, a claim expires
because the clock moved, a notice arrives late. The gateway is a stand-in with the three
things ownership uses of it (its clock, who it heard lately, a batcher per robot); sessions
record how they were closed or refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from lekiwi_fleet_server.broker.presence import (
    Claim,
    InProcessRegistry,
    OnReplaced,
    RegistryUnavailable,
)
from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError
from lekiwi_fleet_server.gateway.ownership import FencedCommitter, SessionOwnership
from lekiwi_fleet_server.store.interface import PresenceChange

pytestmark = pytest.mark.anyio

TTL_S = 3.0


class Registry(InProcessRegistry):
    """The in-process registry whose calls the test can make fail, shared or not."""

    def __init__(self, clock: Any, *, shared: bool = False) -> None:
        super().__init__(TTL_S, clock)
        self.shared = shared
        self.failing: dict[str, Exception] = {}  # method name -> what it raises, once each call
        self.listener: OnReplaced | None = None
        self.refreshes = 0
        self.on_latest_tokens: Any = None  # called inside latest_tokens (a session closes)

    def _maybe_fail(self, what: str) -> None:
        if what in self.failing:
            raise self.failing[what]

    async def claim(self, robot_id: str, gateway_id: str, now: float) -> Claim:
        self._maybe_fail('claim')
        return await super().claim(robot_id, gateway_id, now)

    async def refresh(self, claims: Sequence[tuple[Claim, float]], now: float) -> list[bool]:
        self.refreshes += 1
        self._maybe_fail('refresh')
        return await super().refresh(claims, now)

    async def release(self, claim: Claim) -> bool:
        self._maybe_fail('release')
        return await super().release(claim)

    async def latest_tokens(self, robot_ids: Iterable[str]) -> dict[str, int]:
        self._maybe_fail('latest_tokens')
        if self.on_latest_tokens is not None:
            self.on_latest_tokens()
        return await super().latest_tokens(robot_ids)

    async def listen(self, gateway_id: str, on_replaced: OnReplaced) -> None:
        self.listener = on_replaced
        await super().listen(gateway_id, on_replaced)


class Session:
    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None
        self.refused: list[ProtocolError] = []

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def refuse(self, error: ProtocolError) -> None:
        self.refused.append(error)


class Gateway:
    """What SessionOwnership uses of the gateway: a clock, last heard, a batcher per robot."""

    def __init__(self) -> None:
        self.clock = 1000.0
        self.heard: dict[str, float] = {}
        self.submitted: list[tuple[str, bool, str, int]] = []
        self.presence = self

    def now(self) -> float:
        return self.clock

    def last_heard(self) -> list[tuple[str, float]]:
        return list(self.heard.items())

    def batcher_of(self, robot_id: str) -> Gateway:
        return self

    def submit_presence(self, change: PresenceChange) -> None:
        self.submitted.append((change.robot_id, change.online, change.reason, change.token))


def online(robot_id: str, at: float = 1000.0) -> PresenceChange:
    return PresenceChange(robot_id, True, at, 'connected')


def offline(robot_id: str, at: float = 1000.0) -> PresenceChange:
    return PresenceChange(robot_id, False, at, 'disconnected')


async def settle() -> None:
    """Let the registry steps queued so far run (the in-process registry never waits on I/O)."""
    for _ in range(20):
        await asyncio.sleep(0)


def make(shared: bool = False) -> tuple[SessionOwnership, Registry, Gateway]:
    gateway = Gateway()
    registry = Registry(gateway.now, shared=shared)
    return SessionOwnership(gateway, registry, 'gw-a', TTL_S), registry, gateway  # type: ignore[arg-type]


async def test_a_claimed_robot_goes_online_with_its_token_and_offline_at_stop() -> None:
    ownership, registry, gateway = make()
    session = Session()
    ownership.attached('kiwi-1', session, online('kiwi-1'))
    await settle()
    assert ownership.owns('kiwi-1') == 1
    assert gateway.submitted == [('kiwi-1', True, 'connected', 1)]
    await ownership.stop([(session, offline('kiwi-1'))])
    assert gateway.submitted[-1] == ('kiwi-1', False, 'disconnected', 1)
    assert ownership.owns('kiwi-1') is None
    assert await registry.lookup(['kiwi-1']) == {}


async def test_a_session_replaced_before_its_claim_landed_releases_that_claim() -> None:
    ownership, registry, gateway = make()
    first, second = Session(), Session()
    ownership.attached('kiwi-1', first, online('kiwi-1'))
    ownership.attached('kiwi-1', second, online('kiwi-1', 1001.0))  # queued behind the first
    await settle()
    # The first claim found its session gone and let go; only the second went online.
    assert gateway.submitted == [('kiwi-1', True, 'connected', 2)]
    assert ownership.owns('kiwi-1') == 2
    assert (await registry.lookup(['kiwi-1']))['kiwi-1'].token == 2
    ownership.detached('kiwi-1', first, offline('kiwi-1'))  # the old session: changes nothing
    await settle()
    assert ownership.owns('kiwi-1') == 2 and len(gateway.submitted) == 1


async def test_a_new_session_the_registry_cannot_claim_is_closed_try_again_later() -> None:
    ownership, registry, gateway = make()
    registry.failing['claim'] = RegistryUnavailable('redis is away')
    session = Session()
    ownership.attached('kiwi-1', session, online('kiwi-1'))
    await settle()
    assert session.closed == (1013, 'presence registry unavailable')
    assert ownership.owns('kiwi-1') is None and gateway.submitted == []


async def test_a_session_gone_while_its_claim_failed_is_left_alone() -> None:
    ownership, registry, gateway = make()
    registry.failing['claim'] = RegistryUnavailable('redis is away')
    session = Session()
    ownership.attached('kiwi-1', session, online('kiwi-1'))
    ownership.detached('kiwi-1', session, offline('kiwi-1'))  # before the claim answered
    await settle()
    assert session.closed is None and gateway.submitted == []


async def test_a_failing_registry_step_is_logged_and_the_next_step_still_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    ownership, registry, gateway = make()
    registry.failing['claim'] = RuntimeError('a bug in the registry')
    with caplog.at_level(logging.ERROR, 'lekiwi_fleet_server.gateway.ownership'):
        ownership.attached('kiwi-1', Session(), online('kiwi-1'))
        await settle()
    assert 'presence of kiwi-1: registry step failed' in caplog.text
    del registry.failing['claim']
    ownership.attached('kiwi-1', Session(), online('kiwi-1'))
    await settle()
    assert ownership.owns('kiwi-1') == 1 and gateway.submitted == [('kiwi-1', True, 'connected', 1)]


async def test_an_unknown_release_still_commits_the_offline_with_its_token() -> None:
    ownership, registry, gateway = make()
    session = Session()
    ownership.attached('kiwi-1', session, online('kiwi-1'))
    await settle()
    registry.failing['release'] = RegistryUnavailable('redis is away')
    ownership.detached('kiwi-1', session, offline('kiwi-1'))
    await settle()
    # Whether it was still ours is unknown: the fence at commit decides (FencedCommitter).
    assert gateway.submitted[-1] == ('kiwi-1', False, 'disconnected', 1)


async def test_a_release_of_a_claim_taken_meanwhile_commits_nothing() -> None:
    ownership, registry, gateway = make()
    session = Session()
    ownership.attached('kiwi-1', session, online('kiwi-1'))
    await settle()
    await registry.claim('kiwi-1', 'gw-b', gateway.now())  # no listener: we are not told
    ownership.detached('kiwi-1', session, offline('kiwi-1'))
    await settle()
    assert gateway.submitted == [('kiwi-1', True, 'connected', 1)]


async def test_a_notice_of_a_newer_claim_refuses_the_session_and_an_older_one_does_not() -> None:
    ownership, registry, gateway = make()
    await ownership.start()
    try:
        session = Session()
        ownership.attached('kiwi-1', session, online('kiwi-1'))
        await settle()
        assert registry.listener is not None
        registry.listener('kiwi-1', 1)  # a notice no newer than our claim (out of order)
        registry.listener('kiwi-9', 5)  # a robot we do not hold
        assert session.refused == [] and ownership.owns('kiwi-1') == 1
        await registry.claim('kiwi-1', 'gw-b', gateway.now())  # tells us, token 2
        assert [e.code for e in session.refused] == [ErrorCode.REPLACED]
        assert 'another gateway' in str(session.refused[0])
        assert ownership.owns('kiwi-1') is None
    finally:
        await ownership.stop([])


async def test_a_refresh_that_finds_the_claim_superseded_refuses_the_session() -> None:
    ownership, registry, gateway = make()
    session = Session()
    ownership.attached('kiwi-1', session, online('kiwi-1'))
    await settle()
    await registry.claim('kiwi-1', 'gw-b', gateway.now())  # a notice we missed
    await ownership.refresh()
    assert [e.code for e in session.refused] == [ErrorCode.REPLACED]
    assert ownership.owns('kiwi-1') is None


async def test_a_session_closing_while_the_refresh_looks_it_up_is_left_to_its_release() -> None:
    ownership, registry, gateway = make()
    session = Session()
    ownership.attached('kiwi-1', session, online('kiwi-1'))
    await settle()
    await registry.claim('kiwi-1', 'gw-b', gateway.now())
    registry.on_latest_tokens = lambda: ownership.detached('kiwi-1', session, offline('kiwi-1'))
    await ownership.refresh()
    await settle()
    assert session.refused == [] and session.closed is None
    # Its release found gw-b's claim: no offline over the new holder's online.
    assert gateway.submitted == [('kiwi-1', True, 'connected', 1)]
    assert (await registry.lookup(['kiwi-1']))['kiwi-1'].gateway_id == 'gw-b'


async def test_a_refresh_that_finds_the_claim_expired_claims_again_and_retries_later() -> None:
    ownership, registry, gateway = make()
    session = Session()
    ownership.attached('kiwi-1', session, online('kiwi-1'))
    await settle()
    gateway.heard['kiwi-1'] = gateway.clock
    gateway.clock += 2 * TTL_S  # we were late refreshing: the claim expired, nobody took it
    registry.failing['claim'] = RegistryUnavailable('redis is away')
    await ownership.refresh()
    await settle()
    # Claiming again failed: the session stays, with its old claim, for the next refresh.
    assert session.closed is None and session.refused == []
    assert ownership.owns('kiwi-1') == 1
    del registry.failing['claim']
    await ownership.refresh()
    await settle()
    assert ownership.owns('kiwi-1') == 2
    assert gateway.submitted[-1] == ('kiwi-1', True, 'reclaimed', 2)
    assert (await registry.lookup(['kiwi-1']))['kiwi-1'].gateway_id == 'gw-a'


async def test_a_shared_registry_reaps_claims_of_dead_gateways_but_not_ours() -> None:
    ownership, registry, gateway = make(shared=True)
    ownership.attached('kiwi-1', Session(), online('kiwi-1'))
    dead = await registry.claim('kiwi-dead', 'gw-dead', gateway.now())
    await settle()
    gateway.clock += 2 * TTL_S  # both claims expired
    await ownership.refresh()
    await settle()
    assert ('kiwi-dead', False, 'expired', dead.token) in gateway.submitted
    assert not any(r == 'kiwi-1' and not up for r, up, _why, _t in gateway.submitted)
    assert ownership.owns('kiwi-1') == 2  # ours was late, not dead: claimed again


async def test_the_refresh_loop_survives_failing_refreshes(
        caplog: pytest.LogCaptureFixture) -> None:
    gateway = Gateway()
    registry = Registry(gateway.now)
    ownership = SessionOwnership(gateway, registry, 'gw-a', ttl_s=0.15)  # type: ignore[arg-type]
    registry.failing['refresh'] = RegistryUnavailable('redis is away')
    with caplog.at_level(logging.WARNING, 'lekiwi_fleet_server.gateway.ownership'):
        await ownership.start()
        try:
            await _until(lambda: registry.refreshes >= 2)
            registry.failing['refresh'] = RuntimeError('a bug')
            seen = registry.refreshes
            await _until(lambda: registry.refreshes >= seen + 2)
            del registry.failing['refresh']
            seen = registry.refreshes
            await _until(lambda: registry.refreshes >= seen + 1)
        finally:
            await ownership.stop([])
    messages = [r.getMessage() for r in caplog.records]
    assert 'presence refresh failed: redis is away' in messages
    assert any(r.getMessage() == 'presence refresh failed' and r.exc_info for r in caplog.records)


async def _until(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, 'condition not met in time'
        await asyncio.sleep(0.01)


class _Inner:
    def __init__(self) -> None:
        self.presence: list[PresenceChange] = []

    async def commit(self, frames: Any, presence: Any, now: float, want_update: bool) -> str:
        self.presence.extend(presence)
        return 'committed'


async def test_the_fence_drops_stale_changes_and_is_skipped_when_the_registry_is_away() -> None:
    registry = Registry(time.time)
    await registry.claim('kiwi-1', 'gw-a', time.time())
    await registry.claim('kiwi-1', 'gw-b', time.time())  # kiwi-1's newest token: 2
    changes = [PresenceChange('kiwi-1', False, 1.0, 'timeout', token=1),
               PresenceChange('kiwi-1', True, 1.0, 'connected', token=2)]
    inner = _Inner()
    fenced = FencedCommitter(inner, registry)  # type: ignore[arg-type]
    assert await fenced.commit([], changes, 1.0, False) == 'committed'
    assert inner.presence == changes[1:]  # gw-a's late offline is dropped
    registry.failing['latest_tokens'] = RegistryUnavailable('redis is away')
    inner.presence.clear()
    assert await fenced.commit([], changes, 1.0, False) == 'committed'
    assert inner.presence == changes  # committed as decided, none dropped
