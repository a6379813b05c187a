"""The dashboard update bus over NATS: every writer's updates reach every API process.

Writers publish each committed batch's encoded update on `lekiwi.updates.<shard>` with their
partition's epoch and sequence number (broker/writer_side.py). `NatsBus` hands them to this
process's subscribers (the `/api/v1/stream` sockets) like `InProcessBus` does, and watches the
numbers: core NATS drops messages for a slow consumer or across a reconnect, so when a
partition's next update is not the one after the last (`GapDetector`), every subscriber is
closed as dropped and its page reconnects, which reads a fresh snapshot. A writer that
restarted (a new epoch) is a gap too: its row deltas start from an empty memory.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from nats.aio.msg import Msg

from lekiwi_fleet_server.broker import subjects
from lekiwi_fleet_server.broker.link import NatsLink
from lekiwi_fleet_server.gateway.bus import InProcessBus, Subscription

log = logging.getLogger(__name__)


class GapDetector:
    """Per partition, the epoch and sequence number of the last update seen."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, int]] = {}

    def gap(self, partition: str, epoch: str, seq: int) -> bool:
        """Take the next update's numbers; tell whether updates were missed before it."""
        last = self._last.get(partition)
        self._last[partition] = (epoch, seq)
        if last is None:
            return False  # the first one heard: the subscribers' snapshot came after it
        return last[0] != epoch or seq != last[1] + 1

    def reset(self) -> None:
        """Forget every partition (after the subscribers resynchronised)."""
        self._last.clear()


class NatsBus:
    """The UpdateBus of an API process when the writers run behind NATS."""

    def __init__(self, link: NatsLink, max_queued_updates: int) -> None:
        self._link = link
        self._local = InProcessBus(max_queued_updates)
        self._gaps = GapDetector()
        self._sub: Any = None
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self.gaps_seen = 0

    async def start(self) -> None:
        """Subscribe to every partition's updates."""
        self._sub = await self._link.nc.subscribe(f'{subjects.UPDATES_PREFIX}.>',
                                                  cb=self._on_update)
        # The server has the subscription once start returns: no update published after it
        # is missed (without the flush a loaded host lost the first ones, seen as no gap).
        await self._link.nc.flush()

    async def _on_update(self, msg: Msg) -> None:
        headers = msg.headers or {}
        partition = headers.get(subjects.PARTITION)
        if partition is not None:
            try:
                seq = int(headers.get(subjects.SEQ, '0'))
            except ValueError:
                seq = 0
            if self._gaps.gap(partition, headers.get(subjects.EPOCH, ''), seq):
                self.resync(f'partition {partition}: update {seq} after a gap')
                return
        self._local.publish(msg.data.decode())

    def resync(self, reason: str) -> None:
        """Close every subscriber as dropped: each reconnects and reads a fresh snapshot."""
        self.gaps_seen += 1
        count = self._local.subscriber_count()
        if count:
            log.warning('dashboard stream resync (%s): %d subscribers', reason, count)
        for sub in list(self._subscriptions):
            sub.dropped = True  # the stream closes with 4008 and the page reconnects
            sub.close()

    # -- UpdateBus ----------------------------------------------------------------------------
    def wants_updates(self) -> bool:
        """Tell whether anybody listens here."""
        return self._local.wants_updates()

    def begin_batch(self) -> bool:
        """Return whether a gateway batch should build deltas (the writers always do)."""
        return True

    def end_batch(self, wanted: bool) -> None:
        """Nothing to note: the writers build every update."""

    async def settled(self) -> None:
        """Return at once: every update carries its rows (the writers always build them)."""

    def publish(self, update: str) -> None:
        """Publish an update made in this process (a deployment's progress) to every API."""
        self._local.publish(update)

    def subscribe(self) -> Subscription:
        """Open a subscription to future updates."""
        sub = self._local.subscribe()
        self._subscriptions.add(sub)
        return sub

    def subscriber_count(self) -> int:
        """Return how many subscribers are attached here."""
        return self._local.subscriber_count()

    def close(self) -> None:
        """Close every subscription (the connection closes with the link)."""
        self._local.close()
