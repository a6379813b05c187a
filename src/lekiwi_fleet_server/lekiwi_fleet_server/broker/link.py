"""One process's connection to NATS: connect, keep the durable stream, tell whether it is up.

`NatsLink.status()` / `healthy()` are what `/readyz` reads (degraded while the broker is
unreachable: gateways then hold their robots' messages unacknowledged and robots keep their
outboxes; writers wait). nats-py reconnects by itself, without limit; the link only records
what it hears.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from lekiwi_fleet_server.broker.subjects import DURABLE_PREFIX, STREAM, durable_subject
from lekiwi_fleet_server.store.interface import StoreUnavailable

log = logging.getLogger(__name__)

# JetStream drops a second message with the same Nats-Msg-Id within this window: a gateway's
# retried publish, or a robot's resend through another gateway, is stored once. Beyond it the
# store's idempotent message keys still refuse the duplicate.
DUPLICATE_WINDOW_S = 120.0


def partition_consumer(shard: int) -> str:
    """Return the durable consumer of a shard's partition (one per shard, whoever runs it)."""
    return f'writer-{shard}'


class NatsLink:
    """A NATS connection with JetStream, opened by `connect` and closed by `close`."""

    def __init__(self, url: str, name: str, *, now: Callable[[], float] = time.time) -> None:
        self._url = url
        self._name = name
        self._now = now
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._connected = False
        self._since = now()
        self._last_error: str | None = None

    async def connect(self, timeout_s: float = 30.0) -> None:
        """Connect (retrying until `timeout_s`) and make sure the durable stream exists."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                # With max_reconnect_attempts=-1 nats-py retries an unreachable server itself,
                # first connection included, and never returns: bound it by the time left.
                self._nc = await asyncio.wait_for(nats.connect(
                    self._url, name=self._name, max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5, connect_timeout=2,
                    disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
                    error_cb=self._error, closed_cb=self._disconnected),
                    max(0.0, deadline - loop.time()))
                break
            except Exception as exc:  # nats-py raises several kinds; all mean "not yet"
                if loop.time() >= deadline:
                    why = self._last_error or f'{type(exc).__name__}: {exc}'  # its last attempt's
                    raise StoreUnavailable(f'NATS at {self._url} unreachable: {why}') from exc
                await asyncio.sleep(0.5)
        # Up to a whole batch in flight at once (max_batch_messages is 20,000 by default).
        self._js = self._nc.jetstream(timeout=5.0, publish_async_max_pending=50_000)
        self._mark(True)
        await self.ensure_stream()

    async def ensure_stream(self) -> None:
        """Create the durable stream of every partition, or keep the one there is."""
        config = StreamConfig(
            name=STREAM, subjects=[f'{DURABLE_PREFIX}.>'],
            # Interest: a message is gone once its shard's consumer acked it (after its commit).
            # Not a work queue, because a work queue refuses cumulative acks (AckPolicy.ALL);
            # so every partition's consumer must exist before anything is published to it
            # (`ensure_partitions`), or JetStream would keep no copy for nobody.
            retention=RetentionPolicy.INTEREST, storage=StorageType.FILE,
            # Full (the writers far behind): refuse new messages, never drop stored ones; the
            # gateway then holds its robots' frames unacknowledged.
            discard=DiscardPolicy.NEW, duplicate_window=DUPLICATE_WINDOW_S)
        try:
            await self.js.add_stream(config)
        except nats.js.errors.BadRequestError:
            try:
                await self.js.update_stream(config)  # exists with other settings
            except nats.js.errors.APIError as exc:
                # A stream of an older release (a work queue) cannot become an interest one
                # in place: let its writers drain it, then delete it (`nats stream rm`).
                raise StoreUnavailable(
                    f'JetStream stream {STREAM} exists with settings this release cannot use '
                    f'({exc}); drain it with the old writers, then delete it') from exc

    async def ensure_partitions(self, shards: Iterable[int], ack_wait_s: float) -> None:
        """Make sure each shard's durable consumer exists (before anything is published).

        Whoever connects first creates them (a gateway or a writer); an existing one is kept
        as it is. One consumer per partition, acked cumulatively by its single writer.
        """
        for shard in shards:
            name = partition_consumer(shard)
            try:
                await self.js.consumer_info(STREAM, name)
                continue
            except nats.js.errors.NotFoundError:
                pass
            try:
                await self.js.add_consumer(STREAM, ConsumerConfig(
                    durable_name=name, ack_policy=AckPolicy.ALL,
                    deliver_policy=DeliverPolicy.ALL, ack_wait=ack_wait_s, max_deliver=-1,
                    max_ack_pending=-1, filter_subject=durable_subject(shard)))
            except nats.js.errors.APIError as exc:  # made meanwhile by another process
                log.debug('consumer %s: %s', name, exc)

    @property
    def nc(self) -> Client:
        """The connection (after `connect`)."""
        assert self._nc is not None, 'NATS link not connected'
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (after `connect`)."""
        assert self._js is not None, 'NATS link not connected'
        return self._js

    def healthy(self) -> bool:
        """Tell whether the broker is reachable now."""
        return self._connected and self._nc is not None and self._nc.is_connected

    def status(self) -> dict[str, Any]:
        """Return what a readiness check shows of the broker."""
        return {'nats': 'ok' if self.healthy() else 'down', 'url': self._url,
                'since': self._since, 'last_error': self._last_error}

    async def close(self) -> None:
        """Flush and close the connection."""
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), 5.0)
            except Exception:  # a broker that is gone: close without draining
                await self._nc.close()
        self._mark(False)

    def _mark(self, connected: bool) -> None:
        if connected != self._connected:
            self._connected = connected
            self._since = self._now()

    async def _disconnected(self) -> None:
        if self._connected:
            log.warning('NATS %s: disconnected', self._url)
        self._mark(False)

    async def _reconnected(self) -> None:
        log.info('NATS %s: reconnected', self._url)
        self._mark(True)

    async def _error(self, exc: Exception) -> None:
        self._last_error = f'{type(exc).__name__}: {exc}'
