"""Fixtures of the legacy adapter's tests: a real OpenSSH server on loopback (ssh_lab.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ssh_lab import LabUnavailable, SshLab, make_lab

__all__ = ['SshLab']


@pytest.fixture
def ssh_lab(tmp_path: Path) -> Iterator[SshLab]:
    """Yield three SSH hosts, a hanging one and a refusing one on loopback."""
    try:
        lab, stop = make_lab(tmp_path / 'ssh', 3)
    except LabUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield lab
    finally:
        stop()
