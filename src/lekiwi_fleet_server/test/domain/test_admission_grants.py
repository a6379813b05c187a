"""Grants that missed their connection (the accept/disconnect race): kept per key, expiring."""

from __future__ import annotations

import pytest

from lekiwi_fleet_server.domain.admission_grants import UndeliveredGrants


def test_a_grant_goes_to_the_same_key_once() -> None:
    shelf: UndeliveredGrants[str] = UndeliveredGrants(ttl_s=10)
    shelf.put('kiwi', 'SHA256:a', 'token-a', now=0.0)
    assert shelf.take('kiwi', 'SHA256:b', now=1.0) is None  # another key: nothing
    assert shelf.take('other', 'SHA256:a', now=1.0) is None
    assert shelf.take('kiwi', 'SHA256:a', now=2.0) == 'token-a'
    assert shelf.take('kiwi', 'SHA256:a', now=2.0) is None and len(shelf) == 0


def test_a_grant_expires_and_the_shelf_is_bounded() -> None:
    shelf: UndeliveredGrants[str] = UndeliveredGrants(ttl_s=10, max_grants=2)
    shelf.put('a', 'k', 'ta', now=0.0)
    assert shelf.take('a', 'k', now=10.0) is None  # expired at 10 s
    shelf.put('a', 'k', 'ta', now=20.0)
    shelf.put('b', 'k', 'tb', now=21.0)
    shelf.put('c', 'k', 'tc', now=22.0)  # over the bound: the oldest goes
    assert len(shelf) == 2 and shelf.take('a', 'k', now=23.0) is None
    assert shelf.take('c', 'k', now=23.0) == 'tc'
    with pytest.raises(ValueError):
        UndeliveredGrants(ttl_s=0)
