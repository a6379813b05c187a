"""The message broker between the server's roles: NATS JetStream (issue 17).

Gateways publish robots' durable messages to the JetStream partition of the robot's writer
shard (`subjects.py`); each writer shard consumes its partition alone, commits through
`CommitWorker`, then acks the JetStream messages and publishes the robots' acks to the gateway
that received them and the dashboard updates with per-partition sequence numbers. Without a
`nats_url` none of this runs: the embedded default commits in a thread of the one process.
"""
