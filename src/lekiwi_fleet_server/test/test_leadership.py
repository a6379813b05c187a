"""Exactly one process drives rollouts: the Redis lease, across two real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from redis_server import RedisServer  # test/broker/, on the path by test/conftest.py

from lekiwi_fleet_server.deployments.leadership import LeaderLoop, SoleLease

pytestmark = pytest.mark.anyio

# One server process's lease loop with a stand-in engine that says when it starts and stops.
PROCESS = textwrap.dedent('''
    import asyncio, sys
    from lekiwi_fleet_server.deployments.leadership import LeaderLoop, RedisLease

    class Engine:
        driving = False
        async def start(self):
            self.driving = True
            print('start', loop.token, flush=True)
        async def stop(self):
            self.driving = False
            print('stop', flush=True)

    async def main():
        global loop
        loop = LeaderLoop(RedisLease(sys.argv[1], sys.argv[2], ttl_s=0.9), Engine())
        await loop.start()
        await asyncio.sleep(3600)

    asyncio.run(main())
''')


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.05)


def test_two_processes_one_leader_and_the_other_takes_over_with_a_newer_token(
        redis_server: RedisServer, tmp_path: Path) -> None:
    outs = {name: tmp_path / f'{name}.out' for name in ('a', 'b')}
    procs = {}
    try:
        for name in ('a', 'b'):
            with open(outs[name], 'w') as out:
                procs[name] = subprocess.Popen(
                    [sys.executable, '-c', PROCESS, redis_server.url, f'proc-{name}'],
                    stdout=out, stderr=subprocess.DEVNULL, env=os.environ.copy())
            if name == 'a':  # a first, so the order of leadership is known
                _wait(lambda: _lines(outs['a']))
        assert _lines(outs['a']) == ['start 1']
        time.sleep(2.0)  # b renews its try several times a second: it never leads meanwhile
        assert _lines(outs['b']) == []
        procs['a'].send_signal(signal.SIGKILL)  # no release: b waits for the lease's TTL
        procs['a'].wait(10)
        killed = time.monotonic()
        _wait(lambda: _lines(outs['b']))
        took = time.monotonic() - killed
        assert _lines(outs['b']) == ['start 2']  # the next fencing token
        assert took < 5.0, took
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


async def test_without_redis_the_one_process_always_leads() -> None:
    class Engine:
        driving = False

        async def start(self) -> None:
            self.driving = True

        async def stop(self) -> None:
            self.driving = False

    engine = Engine()
    loop = LeaderLoop(SoleLease(), engine)
    await loop.start()
    assert engine.driving and loop.token == 1
    await loop.stop()
    assert not engine.driving and loop.token is None
