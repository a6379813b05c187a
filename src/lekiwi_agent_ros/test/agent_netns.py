"""A network namespace of the test's own with multicast on loopback (for the mDNS tests)."""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import subprocess

_CLONE_NEWNET = 0x40000000


class NetnsUnavailable(RuntimeError):
    """No network namespace can be made here (with the reason)."""


def make_netns() -> str:
    """Make a namespace with lo up, multicast on it and a 224/4 route; return its name."""
    if os.geteuid() != 0 or shutil.which('ip') is None:
        raise NetnsUnavailable('network namespaces need root and iproute2 (ip)')
    name = f'lkwa-{secrets.token_hex(4)}'
    for cmd in (['ip', 'netns', 'add', name],
                ['ip', 'netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up', 'multicast', 'on'],
                ['ip', 'netns', 'exec', name, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo']):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            delete_netns(name)
            raise NetnsUnavailable(f'{" ".join(cmd)}: {done.stderr.strip()}')
    return name


def enter_netns(name: str) -> None:
    """Move the calling thread (and the threads it starts later) into the namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f'/run/netns/{name}', os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise NetnsUnavailable(f'setns: {os.strerror(ctypes.get_errno())}')
    finally:
        os.close(fd)


def delete_netns(name: str) -> None:
    subprocess.run(['ip', 'netns', 'del', name], capture_output=True)
