"""Durable state of the fleet: event store, projections, snapshots, telemetry history."""
