"""Tokens an admin granted that did not reach the robot: kept for the key that asked.

The accept/disconnect race: an admin accepts a pending robot while its connection closes (it
restarted, its network dropped). The store has enrolled the robot by then; the token, which
the server holds only in memory (only its hash is stored), had nowhere to go. Without this
shelf the robot would reconnect, ask admission again and be refused for ever (its id is
enrolled), while nobody holds its token. So the grant waits here, for the same robot id and
the same key only, for `ttl_s`: the robot asks again with its key, proves it on the new
connection, and gets the token there. A grant that expires, or a server restart, leaves a
clear outcome: the admin saw `delivered: false` and the robot is refused with a message
saying to re-enrol it. Pure: time comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar('T')


@dataclass(frozen=True, slots=True)
class _Grant(Generic[T]):
    fingerprint: str
    grant: T
    expires_at: float


class UndeliveredGrants(Generic[T]):
    """Grants that missed their connection, by robot id, for one key each, until they expire."""

    def __init__(self, ttl_s: float, max_grants: int = 1000) -> None:
        if ttl_s <= 0 or max_grants < 1:
            raise ValueError('ttl_s must be > 0 and max_grants >= 1')
        self._ttl = ttl_s
        self._max = max_grants
        self._grants: dict[str, _Grant[T]] = {}

    def __len__(self) -> int:
        return len(self._grants)

    def put(self, robot_id: str, fingerprint: str, grant: T, *, now: float) -> None:
        """Keep a grant for the robot's key (replacing an older one of that robot)."""
        self._expire(now)
        if robot_id not in self._grants and len(self._grants) >= self._max:
            # Bounded: drop the grant closest to expiring (admins accept a few at a time).
            oldest = min(self._grants, key=lambda k: self._grants[k].expires_at)
            del self._grants[oldest]
        self._grants[robot_id] = _Grant(fingerprint, grant, now + self._ttl)

    def take(self, robot_id: str, fingerprint: str, *, now: float) -> T | None:
        """Return and drop the robot's grant if it is for this key and not expired; else None."""
        self._expire(now)
        kept = self._grants.get(robot_id)
        if kept is None or kept.fingerprint != fingerprint:
            return None  # another key does not get it, and does not spoil it either
        del self._grants[robot_id]
        return kept.grant

    def _expire(self, now: float) -> None:
        for robot_id in [k for k, g in self._grants.items() if g.expires_at <= now]:
            del self._grants[robot_id]
