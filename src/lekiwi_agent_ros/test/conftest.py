"""Fixtures shared by the agent package's tests."""

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_harness import AgentHarness, agent_harness
from uplink_server import UplinkTestServer


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


@pytest.fixture
def make_uplink_server() -> Iterator[Callable[[str, str], UplinkTestServer]]:
    """Make protocol-checking uplink servers for a robot id and token; each must end clean."""
    made: list[UplinkTestServer] = []

    def make(robot_id: str, token: str) -> UplinkTestServer:
        made.append(UplinkTestServer({robot_id: token}))
        return made[-1]

    yield make
    for server in made:
        server.close()
        assert server.violations == []


@pytest.fixture
def harness() -> Iterator[AgentHarness]:
    """The agent's ROS harness (one context and executor for the test's nodes)."""
    with agent_harness() as harness:
        yield harness
