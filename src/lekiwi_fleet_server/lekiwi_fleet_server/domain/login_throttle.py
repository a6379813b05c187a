"""Slow down repeated failed logins, per account and per client address.

Each key (an account name, an address) may fail `free_failures` times; every further failure
locks it for `base_delay_s` doubled per failure, at most `max_delay_s`. A success clears the
account's key only: an address that guesses across many accounts stays slowed down. Failures
older than `forget_after_s` are forgotten, and at most `max_keys` keys are held (the oldest go
first) so a flood of made-up names cannot grow memory without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Failures:
    count: int
    last_at: float
    locked_until: float


class LoginThrottle:
    """Decide how long a login attempt must wait (see the module docstring)."""

    def __init__(self, now: Callable[[], float], *, free_failures: int = 5,
                 base_delay_s: float = 1.0, max_delay_s: float = 300.0,
                 forget_after_s: float = 3600.0, max_keys: int = 100_000) -> None:
        self._now = now
        self._free = free_failures
        self._base = base_delay_s
        self._max = max_delay_s
        self._forget = forget_after_s
        self._max_keys = max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, account: str, address: str) -> float:
        """Return the seconds this attempt must still wait; 0 when it may go ahead."""
        now = self._now()
        waits = [self._wait(key, now) for key in (f'a:{account}', f'ip:{address}')]
        return max(waits)

    def failed(self, account: str, address: str) -> None:
        """Count a failed attempt against the account and the address."""
        now = self._now()
        for key in (f'a:{account}', f'ip:{address}'):
            entry = self._live(key, now)
            count = entry.count + 1 if entry else 1
            locked_until = now
            if count > self._free:
                locked_until = now + min(self._max, self._base * 2 ** (count - self._free - 1))
            self._keys[key] = _Failures(count, now, locked_until)
            self._keys.move_to_end(key)
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)

    def succeeded(self, account: str) -> None:
        """Forget the account's failures (the address's stay)."""
        self._keys.pop(f'a:{account}', None)

    def _live(self, key: str, now: float) -> _Failures | None:
        entry = self._keys.get(key)
        if entry is not None and now - entry.last_at > self._forget:
            del self._keys[key]
            return None
        return entry

    def _wait(self, key: str, now: float) -> float:
        entry = self._live(key, now)
        return max(0.0, entry.locked_until - now) if entry else 0.0
