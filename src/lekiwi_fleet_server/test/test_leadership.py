"""Exactly one process runs each fleet-wide duty: the Redis lease, across real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from redis_server import RedisServer  # test/broker/, on the path by test/conftest.py

from lekiwi_fleet_server.leadership import (
    FLAG_GUARDS,
    LEGACY,
    LeaderLoop,
    RedisLease,
    SoleLease,
    TaskDuty,
)

pytestmark = pytest.mark.anyio

# One server process's lease loop with a stand-in engine that says when it starts and stops.
PROCESS = textwrap.dedent('''
    import asyncio, sys
    from lekiwi_fleet_server.leadership import LeaderLoop, RedisLease

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


async def test_a_task_duty_runs_in_one_holder_and_moves_when_it_lets_go(
        redis_server: RedisServer) -> None:
    # Two processes' loops for the legacy poller (here in one event loop), and a third
    # process holding another duty: leases are per duty.
    runs: dict[str, list[str]] = {'first': [], 'second': [], 'guards': []}

    def duty(name: str) -> TaskDuty:
        async def begin() -> list[asyncio.Task[None]]:
            async def poll() -> None:
                while True:
                    runs[name].append('poll')
                    await asyncio.sleep(0.02)
            return [asyncio.create_task(poll())]

        async def end() -> None:
            runs[name].append('ended')
        return TaskDuty(begin, end)

    first, second = duty('first'), duty('second')
    a = LeaderLoop(RedisLease(redis_server.url, 'gw-a', ttl_s=3.0, duty=LEGACY), first,
                   duty=LEGACY)
    b = LeaderLoop(RedisLease(redis_server.url, 'gw-b', ttl_s=3.0, duty=LEGACY), second,
                   duty=LEGACY)
    other = LeaderLoop(RedisLease(redis_server.url, 'gw-b', ttl_s=3.0, duty=FLAG_GUARDS),
                       duty('guards'), duty=FLAG_GUARDS)
    await a.start()
    await b.start()
    await other.start()
    try:
        await asyncio.sleep(0.5)
        assert first.driving and not second.driving and a.token == 1 and b.token is None
        assert not runs['second'] and runs['guards']  # b holds the other duty's lease
        await a.stop()  # a clean stop releases the lease: b takes it at its next step
        assert runs['first'][-1] == 'ended'
        for _ in range(100):  # b's next step: a third of the TTL at most
            if second.driving:
                break
            await asyncio.sleep(0.05)
        assert second.driving and b.token == 2
        stopped_at = len(runs['first'])
        await asyncio.sleep(0.2)
        assert len(runs['first']) == stopped_at  # its task was cancelled
        assert runs['second'] and 'ended' not in runs['second']
    finally:
        await other.stop()
        await b.stop()
        await a.stop()
