"""What a server process with a broker runs: its NATS link, the gateway's committers and ack
inbox, the dashboard bus over NATS, and (role `all`) the writer shards in this process.

Built by the app's lifespan when `settings.nats_url` is set (app.py); without it none of this
is imported and the embedded default runs as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from lekiwi_fleet_server.broker.gateway_side import AckInbox, JetStreamCommitter
from lekiwi_fleet_server.broker.link import NatsLink
from lekiwi_fleet_server.broker.metrics import GatewayBrokerCollector
from lekiwi_fleet_server.broker.nats_bus import NatsBus
from lekiwi_fleet_server.broker.writers import WriterShards, process_name
from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, Committer
from lekiwi_fleet_server.metrics import FleetMetrics
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import FleetStore, StoreError

log = logging.getLogger(__name__)

ROLES = ('all', 'gateway', 'api', 'writer')


class BrokerWiring:
    """The broker side of one `serve --role all|gateway|api` process."""

    def __init__(self, settings: Settings, role: str) -> None:
        if role not in ROLES or role == 'writer':
            raise ValueError(f'role {role!r} does not run the app')
        self._settings = settings
        self.role = role
        self.gateway_id = settings.resolved_gateway_id
        self.link = NatsLink(settings.nats_url or '', process_name(role))
        self.bus = NatsBus(self.link, settings.bus_queue_updates)
        self._shards = shards = settings.resolved_writer_shards
        self._jetstream = [
            JetStreamCommitter(self.link, shard, self.gateway_id,
                               publish_timeout_s=settings.broker_publish_timeout_s,
                               ack_wait_s=settings.broker_ack_wait_s)
            for shard in range(shards)]
        self.committers: list[Committer] = list(self._jetstream)
        self.writers: WriterShards | None = None
        self._inbox: AckInbox | None = None

    async def start(self) -> None:
        """Connect, subscribe the dashboard bus, and in role `all` start the writer shards."""
        await self.link.connect(self._settings.broker_connect_timeout_s)
        # Before the first publish: the stream keeps a message only for a consumer.
        await self.link.ensure_partitions(range(self._shards), self._settings.broker_ack_wait_s)
        await self.bus.start()
        if self.role == 'all':
            self.writers = WriterShards(self._settings, self.link)
            await self.writers.start()  # shard 0 migrates the database

    async def deliver_acks_to(self, deliver: Callable[[CommitOutcome], None],
                              metrics: FleetMetrics | None = None) -> None:
        """Hand the acks and refusals the writers send this gateway to `deliver`.

        With `metrics`, the messages the writers committed for this gateway are counted as
        its `messages_committed` (and duplicates), and what it handed them is collected.
        """
        if metrics is not None:
            metrics.add_collector(GatewayBrokerCollector(self._jetstream))

        def counted(outcome: CommitOutcome) -> None:
            if metrics is not None:
                metrics.messages_committed.inc(outcome.acknowledged)
                metrics.duplicates.inc(outcome.duplicates)

        self._inbox = AckInbox(self.link, self.gateway_id, deliver, counted)
        await self._inbox.start()

    def healthy(self) -> bool:
        """Tell whether the broker is reachable (what `/readyz` reads)."""
        return self.link.healthy()

    def status(self) -> dict[str, object]:
        """Return the broker's state for a readiness answer."""
        return self.link.status()

    async def stop(self) -> None:
        """Stop the writer shards (if any), then close the link."""
        if self.writers is not None:
            await self.writers.stop()
        self.bus.close()
        await self.link.close()


def open_side_store(settings: Settings, timeout_s: float = 60.0) -> FleetStore:
    """Open the store of an API/gateway process beside the writers, as the CLI does.

    It loads no robot states and never migrates (the writers do both); its admin writes read
    back the robot they change and are announced to the writers through the database. Until
    the writer of shard 0 has migrated the database, opening is retried.
    """
    import time

    from lekiwi_fleet_server.store.factory import open_store

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return open_store(settings, preload=False)
        except StoreError as exc:
            if time.monotonic() > deadline:
                raise
            log.info('waiting for the writers to migrate the database: %s', exc)
            time.sleep(1.0)
