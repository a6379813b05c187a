"""Fixtures shared by the agent package's tests."""

import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def small_filesystem(tmp_path: Path):
    """A 4 MiB tmpfs of its own (needs root, as the test machines run)."""
    mount = tmp_path / 'small'
    mount.mkdir()
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f'cannot mount a small tmpfs here: {result.stderr.strip()}')
    try:
        yield mount
    finally:
        subprocess.run(['umount', '-l', str(mount)], check=False)


def fill(path: Path) -> None:
    """Write `path` until the filesystem has no space left."""
    with open(path, 'wb') as handle:
        try:
            for _ in range(1024):
                handle.write(b'\0' * 65536)
                handle.flush()
        except OSError:
            pass
