"""What the server's processes share when it scales out (issue 17).

NATS JetStream between the roles: gateways publish robots' durable messages to the JetStream
partition of the robot's writer shard (`subjects.py`); each writer shard consumes its partition
alone, commits through `CommitWorker`, then acks the JetStream messages and publishes the
robots' acks to the gateway that received them and the dashboard updates with per-partition
sequence numbers; it releases each batch with one cumulative JetStream ack. lekiwi-fleet/2
state readings go on core NATS instead, packed one message per shard and batch
(`packing.py`), and are acked by the writer in one message once its memory has them.
Presence and session ownership live in a registry (`presence.py`: in-process,
or Redis with TTLs and fencing tokens); commands reach the gateway holding a robot through
`routing.py`. Without a `nats_url` and a `redis_url` none of this runs: the embedded default
commits in a thread of the one process.
"""
