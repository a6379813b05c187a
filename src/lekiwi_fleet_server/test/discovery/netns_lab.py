"""A network namespace a test makes for itself: 127.0.0.0/8 of its own, hosts that drop packets.

Inside a fresh namespace the loopback device answers the whole 127.0.0.0/8, so a test gets
many addresses and fixed ports without touching the machine's own network. `drop(addresses)`
makes those addresses silent with an nftables rule (packets dropped, not refused), so probes
of them run into their timeouts as a dead host on a real network does. `run(coro)` runs a
coroutine on an event loop in a thread that entered the namespace (setns is per thread, and
sockets stay in the namespace they were made in); threads it starts (zeroconf's) inherit it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar('T')
_CLONE_NEWNET = 0x40000000


class NetnsUnavailable(RuntimeError):
    """This machine does not let the test make a network namespace (with the reason)."""


class NetnsLab:
    """One throwaway network namespace with loopback up."""

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def create(cls, multicast: bool = False) -> NetnsLab:
        """Make a namespace `lkw-<random>` with lo up; raise NetnsUnavailable if not allowed."""
        if os.geteuid() != 0 or shutil.which('ip') is None:
            raise NetnsUnavailable('network namespaces need root and iproute2 (ip)')
        name = f'lkw-{secrets.token_hex(4)}'
        done = subprocess.run(['ip', 'netns', 'add', name], capture_output=True, text=True)
        if done.returncode != 0:
            raise NetnsUnavailable(f'ip netns add failed: {done.stderr.strip()}')
        lab = cls(name)
        try:
            lab.sh('ip', 'link', 'set', 'lo', 'up')
            if multicast:
                # mDNS over loopback: lo needs the MULTICAST flag and a route for 224/4.
                lab.sh('ip', 'link', 'set', 'lo', 'multicast', 'on')
                lab.sh('ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo')
        except BaseException:
            lab.close()
            raise
        return lab

    def sh(self, *cmd: str, stdin: str | None = None) -> str:
        """Run a command inside the namespace; raise NetnsUnavailable when it fails."""
        done = subprocess.run(['ip', 'netns', 'exec', self.name, *cmd], input=stdin,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise NetnsUnavailable(f'{" ".join(cmd)} failed: {done.stderr.strip()}')
        return done.stdout

    def drop(self, addresses: Iterable[str]) -> None:
        """Drop every packet to these addresses (a silent host, not a refusing one)."""
        addresses = list(addresses)
        if not addresses:
            return
        if shutil.which('nft') is None:
            raise NetnsUnavailable('nft (nftables) is not installed')
        elements = ', '.join(addresses)
        self.sh('nft', '-f', '-', stdin=(
            'table inet lab {\n'
            ' chain out { type filter hook output priority 0; policy accept;\n'
            f'  ip daddr {{ {elements} }} drop\n'
            ' }\n'
            '}\n'))

    def run(self, factory: Callable[[], Awaitable[T]], timeout_s: float = 120.0) -> T:
        """Run `factory()` on a new event loop in a thread inside the namespace."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def main() -> None:
            try:
                self.enter()
                future.set_result(asyncio.run(_awaited(factory)))
            except BaseException as exc:  # handed to the caller's thread
                future.set_exception(exc)

        thread = threading.Thread(target=main, name=f'netns-{self.name}', daemon=True)
        thread.start()
        return future.result(timeout_s)

    def enter(self) -> None:
        """Move the calling thread into the namespace."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f'/run/netns/{self.name}', os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise NetnsUnavailable(f'setns: {os.strerror(ctypes.get_errno())}')
        finally:
            os.close(fd)

    def close(self) -> None:
        """Delete the namespace (its sockets and rules go with it)."""
        subprocess.run(['ip', 'netns', 'del', self.name], capture_output=True)


async def _awaited(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()
