"""The writer role: the writer shards of this process, each consuming its JetStream partition.

`WriterShards` opens one store per shard it runs (the only writer of that shard's robots;
shard 0 migrates the database first) and a `PartitionWriter` over a `CommitWorker` on it.
It runs in `serve --role writer` (a process, or host, of its own) and, with a broker
configured, inside `serve --role all`. Admin changes made elsewhere (the API, the CLI) reach
it through the database's change notifications: the shard that owns the robot forgets it and
reads it back with its next batch, and a write that raced it conflicts and is planned again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence

from lekiwi_fleet_server.broker.link import NatsLink
from lekiwi_fleet_server.broker.metrics import WriterBrokerCollector
from lekiwi_fleet_server.broker.writer_side import PartitionWriter
from lekiwi_fleet_server.domain.shards import shard_of
from lekiwi_fleet_server.gateway.commit_worker import CommitWorker
from lekiwi_fleet_server.gateway.writer_metrics import serve_writer_metrics
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import FleetStore

log = logging.getLogger(__name__)


def process_name(role: str) -> str:
    """Return the name this process gives its NATS connection (host, role, pid)."""
    return f'lekiwi-{role}-{socket.gethostname()}-{os.getpid()}'


class WriterShards:
    """Some writer shards of the fleet, in this process (see the module docstring)."""

    def __init__(self, settings: Settings, link: NatsLink, shards: Sequence[int] | None = None
                 ) -> None:
        self._settings = settings
        self._link = link
        self.count = settings.resolved_writer_shards
        self.shards = list(range(self.count) if shards is None else shards)
        for shard in self.shards:
            if not 0 <= shard < self.count:
                raise ValueError(f'writer shard {shard} is not one of 0..{self.count - 1}')
        self.writers: list[PartitionWriter] = []
        self._stores: list[FleetStore] = []
        self._watcher: object | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Open the shards' stores (shard 0 first: it migrates) and start consuming."""
        from lekiwi_fleet_server.store.factory import open_store  # the SQL stack loads here

        self._loop = asyncio.get_running_loop()
        settings = self._settings
        flush_s = settings.state_flush_interval_s
        for shard in sorted(self.shards):
            store = await asyncio.to_thread(open_store, settings, shard_index=shard,
                                            shard_count=self.count)
            self._stores.append(store)
            metrics, _port = serve_writer_metrics(settings.api_host,
                                                  settings.writer_metrics_port, shard)
            writer = PartitionWriter(
                self._link, CommitWorker(store, metrics), shard,
                max_batch=settings.max_batch_messages, retry_s=settings.store_retry_s,
                ack_wait_s=settings.broker_ack_wait_s, state_flush_interval_s=flush_s)
            metrics.registry.register(WriterBrokerCollector(writer))
            await writer.start()
            self.writers.append(writer)
        from lekiwi_fleet_server.store.changes import watcher_for

        self._watcher = watcher_for(settings.resolved_database_url, self._changed)
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.start)  # type: ignore[attr-defined]

    def _changed(self, kind: str, key: str) -> None:
        # From the watcher's thread: hand the change to the loop, then to the owning writer.
        loop = self._loop
        if kind != 'robot' or loop is None or loop.is_closed():
            return
        shard = shard_of(key, self.count)
        for writer in self.writers:
            if writer.shard == shard:
                asyncio.run_coroutine_threadsafe(writer.forget([key]), loop)

    async def stop(self) -> None:
        """Stop consuming and close the stores (what was not acked is redelivered)."""
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)  # type: ignore[attr-defined]
        for writer in self.writers:
            await writer.stop()
        for store in self._stores:
            await asyncio.to_thread(store.close)


async def run_writer_role(settings: Settings, shards: Sequence[int] | None,
                          stop: asyncio.Event) -> None:
    """Run writer shards until `stop` is set (`serve --role writer`)."""
    link = NatsLink(settings.nats_url or '', process_name('writer'))
    # The shards first: a shard the fleet has not is refused at once, not after waiting on
    # NATS (up to broker_connect_timeout_s), and leaves no connection open behind it.
    writers = WriterShards(settings, link, shards)
    await link.connect(settings.broker_connect_timeout_s)
    try:
        await writers.start()
        log.info('writer role: shards %s of %d on %s', writers.shards, writers.count,
                 settings.nats_url)
        print(f'lekiwi-fleet-server ready role=writer shards={",".join(map(str, writers.shards))}',
              flush=True)
        await stop.wait()
    finally:
        await writers.stop()
        await link.close()
