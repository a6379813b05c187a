"""Gateway test fixtures; async test modules mark themselves `pytest.mark.anyio` (asyncio)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return 'asyncio'

