"""SharedSnapshots: one read for the dashboards that subscribed before it, never an older one."""

from __future__ import annotations

import asyncio

import pytest

from lekiwi_fleet_server.api.snapshot import SharedSnapshots


class Source:
    """A snapshot source whose reads finish when the test says so."""

    def __init__(self) -> None:
        self.reads = 0
        self.release = asyncio.Event()
        self.fail = False

    async def build(self) -> str:
        self.reads += 1
        number = self.reads
        await self.release.wait()
        if self.fail:
            raise RuntimeError('registry down')
        return f'snapshot {number}'


def test_subscribers_before_a_read_share_it_and_a_later_one_waits_for_a_new_read() -> None:
    async def main() -> None:
        source = Source()
        snapshots = SharedSnapshots(source.build)
        early = [snapshots.ticket() for _ in range(3)]  # a wave of reconnects after a resync
        first = asyncio.ensure_future(snapshots.get(early[0]))
        await asyncio.sleep(0)  # its read has started
        late_ticket = snapshots.ticket()  # subscribed while that read runs: it may miss rows
        others = [asyncio.ensure_future(snapshots.get(t)) for t in early[1:]]
        late = asyncio.ensure_future(snapshots.get(late_ticket))
        await asyncio.sleep(0)
        source.release.set()
        assert [await first] + [await o for o in others] == ['snapshot 1'] * 3
        assert await late == 'snapshot 2'
        assert source.reads == 2 == snapshots.builds
        # Nothing is kept between waves: the next subscriber reads anew.
        assert await snapshots.get(snapshots.ticket()) == 'snapshot 3'

    asyncio.run(main())


def test_a_failed_read_fails_its_waiters_and_the_next_subscriber_reads_again() -> None:
    async def main() -> None:
        source = Source()
        source.fail = True
        snapshots = SharedSnapshots(source.build)
        tickets = [snapshots.ticket(), snapshots.ticket()]
        waiting = [asyncio.ensure_future(snapshots.get(t)) for t in tickets]
        await asyncio.sleep(0)
        source.release.set()
        for task in waiting:
            with pytest.raises(RuntimeError, match='registry down'):
                await task
        assert source.reads == 1
        source.fail = False
        assert await snapshots.get(snapshots.ticket()) == 'snapshot 2'

    asyncio.run(main())
