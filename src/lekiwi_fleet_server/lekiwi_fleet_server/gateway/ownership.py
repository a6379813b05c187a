"""The gateway's claims on its robots in the presence registry (broker/presence.py).

`SessionOwnership` turns the gateway's local session events into registry calls and decides,
with the fencing token, which presence changes the gateway may commit:

- an authenticated session claims its robot; the 'online' change carries the claim's token;
- a closed session releases its claim, and only a successful release (this gateway still
  held the robot) commits 'offline': a session replaced by a connection to another gateway
  closes without writing anything;
- a notice from the registry (another gateway claimed one of our robots) closes that session
  with `replaced`; a refresh that finds a claim superseded does the same (a notice missed
  while Redis was away), one that finds it merely expired (we were late) claims again;
- claims left by dead gateways are reaped here: their robots' 'offline' is committed once.

Registry calls of one robot run one after the other (a chain of tasks per robot), so a
release of an old session never overtakes the claim of the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lekiwi_fleet_server.broker.presence import (
    Claim,
    PresenceRegistry,
    RegistryUnavailable,
    fence,
)
from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError
from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, Committer, RawFrame
from lekiwi_fleet_server.store.interface import PresenceChange

if TYPE_CHECKING:
    from lekiwi_fleet_server.gateway.server import RobotGateway

log = logging.getLogger(__name__)

# WebSocket 1013, "try again later": the robot's uplink backs off and reconnects, keeping its
# outbox; it is not an authentication failure.
REGISTRY_DOWN_CLOSE = 1013


@dataclass(slots=True)
class _Hold:
    session: Any
    claim: Claim | None = None  # None while the claim is on its way


class SessionOwnership:
    """Claim, refresh and release this gateway's robots; close sessions taken elsewhere."""

    def __init__(self, gateway: RobotGateway, registry: PresenceRegistry, gateway_id: str,
                 ttl_s: float) -> None:
        self._gw = gateway
        self.registry = registry
        self.gateway_id = gateway_id
        self._refresh_s = max(0.05, ttl_s / 3)  # two refreshes may fail before a claim expires
        self._holds: dict[str, _Hold] = {}
        self._chain: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen for replacement notices and start refreshing."""
        await self.registry.listen(self.gateway_id, self._on_replaced)
        self._task = asyncio.get_running_loop().create_task(self._refresh_loop(),
                                                            name='presence-refresh')

    async def stop(self, changes: Sequence[tuple[Any, PresenceChange]]) -> None:
        """Release every claim (the gateway shuts down); commit the offline changes it may."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for session, change in changes:
            self.detached(change.robot_id, session, change)
        pending = list(self._chain.values())
        if pending:
            await asyncio.wait(pending, timeout=5.0)

    def owns(self, robot_id: str) -> int | None:
        """Return the token of this gateway's claim on the robot, or None."""
        hold = self._holds.get(robot_id)
        return hold.claim.token if hold is not None and hold.claim is not None else None

    # -- session events -------------------------------------------------------------------
    def attached(self, robot_id: str, session: Any, change: PresenceChange | None) -> None:
        """A session authenticated: claim its robot; commit `change` with the claim's token."""
        self._holds[robot_id] = _Hold(session)
        self._run(robot_id, lambda: self._claim(robot_id, session, change))

    def detached(self, robot_id: str, session: Any, change: PresenceChange | None) -> None:
        """A session closed: release its claim; commit `change` only if we still held it."""
        hold = self._holds.get(robot_id)
        if hold is None or hold.session is not session:
            return  # replaced, here or on another gateway: the new holder's state stands
        del self._holds[robot_id]
        claim = hold.claim
        if claim is not None:
            self._run(robot_id, lambda: self._release(claim, change))
        # else: the claim is still on its way; _claim sees the session gone and releases it.

    # -- registry calls, one robot at a time ----------------------------------------------
    def _run(self, robot_id: str, step: Callable[[], Awaitable[None]]) -> None:
        previous = self._chain.get(robot_id)

        async def after() -> None:
            if previous is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await previous
            try:
                await step()
            except Exception:
                log.exception('presence of %s: registry step failed', robot_id)

        task = asyncio.get_running_loop().create_task(after())
        self._chain[robot_id] = task
        task.add_done_callback(lambda t: self._chain.pop(robot_id, None)
                               if self._chain.get(robot_id) is t else None)

    async def _claim(self, robot_id: str, session: Any, change: PresenceChange | None,
                     previous: Claim | None = None) -> None:
        try:
            claim = await self.registry.claim(robot_id, self.gateway_id, self._gw.now())
        except RegistryUnavailable as exc:
            hold = self._holds.get(robot_id)
            if hold is None or hold.session is not session:
                return
            if previous is not None:  # claiming again: keep the session, retry next refresh
                log.warning('robot %s: cannot claim it again yet (%s)', robot_id, exc)
                hold.claim = previous
                return
            # A new session we cannot own: the robot tries again later, keeping its outbox.
            log.warning('robot %s: cannot claim it (%s); closing its session', robot_id, exc)
            del self._holds[robot_id]
            session.close(REGISTRY_DOWN_CLOSE, 'presence registry unavailable')
            return
        hold = self._holds.get(robot_id)
        if hold is None or hold.session is not session:  # closed (or replaced) meanwhile
            with contextlib.suppress(RegistryUnavailable):
                await self.registry.release(claim)
            return
        hold.claim = claim
        if change is not None:
            self._gw.batcher_of(robot_id).submit_presence(replace(change, token=claim.token))

    async def _release(self, claim: Claim, change: PresenceChange | None) -> None:
        try:
            still_ours = await self.registry.release(claim)
        except RegistryUnavailable as exc:
            # Unknown: commit it with its token; the fence at commit drops it if stale.
            log.warning('robot %s: cannot release its claim (%s)', claim.robot_id, exc)
            still_ours = True
        if still_ours and change is not None:
            self._gw.batcher_of(claim.robot_id).submit_presence(
                replace(change, token=claim.token))

    # -- taken elsewhere ---------------------------------------------------------------------
    def _on_replaced(self, robot_id: str, token: int) -> None:
        hold = self._holds.get(robot_id)
        if hold is None or hold.claim is None or hold.claim.token >= token:
            return  # not ours, or a notice older than our claim; a pending one: refresh sees it
        self._lose(robot_id, hold)

    def _lose(self, robot_id: str, hold: _Hold) -> None:
        del self._holds[robot_id]
        log.info('robot %s: a newer connection took it on another gateway', robot_id)
        hold.session.refuse(ProtocolError(
            ErrorCode.REPLACED, 'a newer connection of this robot took over on another gateway'))

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
            except RegistryUnavailable as exc:
                log.warning('presence refresh failed: %s', exc)
            except Exception:
                log.exception('presence refresh failed')

    async def refresh(self) -> None:
        """Extend our claims, handle the ones lost, reap claims of dead gateways."""
        now = self._gw.now()
        heard = dict(self._gw.presence.last_heard())
        held = [(robot_id, hold.claim) for robot_id, hold in self._holds.items()
                if hold.claim is not None]
        flags = await self.registry.refresh(
            [(claim, heard.get(robot_id, now)) for robot_id, claim in held], now)
        lost = [claim for (_r, claim), ok in zip(held, flags, strict=True) if not ok]
        if lost:
            latest = await self.registry.latest_tokens(c.robot_id for c in lost)
            for claim in lost:
                hold = self._holds.get(claim.robot_id)
                if hold is None or hold.claim is not claim:
                    continue
                if latest.get(claim.robot_id, claim.token) <= claim.token:
                    # Expired, not taken: we were late refreshing (a loaded host), or Redis
                    # restarted empty. Claim again.
                    hold.claim = None
                    session = hold.session
                    change = PresenceChange(claim.robot_id, True, now, 'reclaimed')
                    self._run(claim.robot_id, lambda r=claim.robot_id, s=session, c=change,
                              p=claim: self._claim(r, s, c, p))
                else:
                    self._lose(claim.robot_id, hold)
        if self.registry.shared:
            for robot_id, token in await self.registry.expired(now):
                if robot_id in self._holds:
                    continue  # ours, late: reclaimed above
                self._gw.batcher_of(robot_id).submit_presence(
                    PresenceChange(robot_id, False, now, 'expired', token=token))


class FencedCommitter:
    """A committer that drops presence changes decided under a superseded claim.

    The gateway decides each change under its claim; this re-checks the robots' newest
    tokens right before the batch goes to the writer, so a change that waited in the batch
    while another gateway claimed the robot is not committed over the new holder's. It
    forwards the Committer seam by name (commit, flush_state, forget, mark_all_offline) and
    nothing else: a method added to the seam must be added here too, on purpose.
    """

    def __init__(self, inner: Committer, registry: PresenceRegistry) -> None:
        self._inner = inner
        self._registry = registry

    async def commit(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange],
                     now: float, want_update: bool) -> CommitOutcome:
        """Fence the batch's presence changes, then commit through the inner committer."""
        if presence:
            try:
                latest = await self._registry.latest_tokens({c.robot_id for c in presence})
                presence = fence(presence, latest)
            except RegistryUnavailable as exc:
                log.warning('presence fence skipped (%s): committing the changes as decided', exc)
        return await self._inner.commit(frames, presence, now, want_update)

    async def flush_state(self, now: float) -> CommitOutcome | None:
        """Forward the current-state flush (it carries no presence: nothing to fence).

        None when the inner committer has no flush of its own (a JetStream committer: the
        writers flush there), as the Committer seam allows.
        """
        flush = getattr(self._inner, 'flush_state', None)  # optional on the seam
        return None if flush is None else await flush(now)  # type: ignore[no-any-return]

    async def forget(self, robot_ids: Sequence[str]) -> None:
        """Forward to the inner committer."""
        await self._inner.forget(robot_ids)

    async def mark_all_offline(self, now: float) -> int:
        """Forward to the inner committer."""
        return await self._inner.mark_all_offline(now)
