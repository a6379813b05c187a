"""Heartbeat and telemetry: resource sampling, delta compression and their nodes."""
