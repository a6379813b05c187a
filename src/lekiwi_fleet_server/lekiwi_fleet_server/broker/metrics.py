"""What the roles report of the broker path, read from their parts at scrape time.

A gateway reports what it handed to the writers (`lekiwi_broker_published_total`: durable
messages stored in JetStream, state readings sent packed on core NATS, and those packed
messages), and counts the acks the writers send it as `lekiwi_gateway_messages_committed`
(AckInbox). A writer role reports, per shard, what it took and how it released it
(`lekiwi_writer_broker_*`), beside its WriterMetrics (batches, commit time, events).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class GatewayBrokerCollector(Collector):
    """The gateway's JetStreamCommitters' counts."""

    def __init__(self, committers: Sequence[Any]) -> None:
        self._committers = list(committers)

    def collect(self) -> Iterator[CounterMetricFamily]:
        """Yield what the committers handed to the broker."""
        published = CounterMetricFamily(
            'lekiwi_broker_published', 'What this gateway handed to the writers over NATS: '
            'durable (stored in JetStream), state (readings on core NATS), state_messages '
            '(the packed messages holding them)', labels=['kind'])
        c = self._committers
        published.add_metric(['durable'], sum(x.durable_published for x in c))
        published.add_metric(['state'], sum(x.state_sent for x in c))
        published.add_metric(['state_messages'], sum(x.state_messages for x in c))
        yield published


class WriterBrokerCollector(Collector):
    """One PartitionWriter's counts (registered in its shard's registry)."""

    _COUNTS = (
        ('redelivered', 'JetStream messages delivered again (a writer died or was slow)'),
        ('readings_committed', 'State readings taken from core NATS and committed'),
        ('readings_dropped', 'State readings dropped while far behind (never acked)'),
        ('cumulative_acks', 'Cumulative JetStream acks sent (one per released batch)'),
        ('held_acks', 'Batches whose ack waited for the consumer to agree (after a gap)'),
    )

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def collect(self) -> Iterator[CounterMetricFamily]:
        """Yield the writer's counts, labelled by shard."""
        shard = str(self._writer.shard)
        for name, help_text in self._COUNTS:
            family = CounterMetricFamily(f'lekiwi_writer_broker_{name}', help_text,
                                         labels=['shard'])
            family.add_metric([shard], getattr(self._writer, name))
            yield family
