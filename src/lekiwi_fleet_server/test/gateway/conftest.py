"""Gateway test fixtures; async test modules mark themselves `pytest.mark.anyio` (asyncio)."""

from __future__ import annotations

import pytest
from memory_store import MemoryStore


@pytest.fixture
def anyio_backend() -> str:
    return 'asyncio'


@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore()
