"""Build the flag engine in the lifespan (beside the release store, on its engine)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from lekiwi_fleet_server.flags.engine import FlagEngine
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.flags import FlagStore


def build_flag_engine(settings: Settings, store: Any, releases: Any, gateway: Any, bus: Any,
                      now: Callable[[], float], metrics: Any = None) -> FlagEngine | None:
    """Return the flag engine (None on an in-memory database, which has no release store)."""
    if releases is None:
        return None

    def publish(update: dict[str, Any]) -> None:  # dashboards see every flag change
        if bus.wants_updates():
            bus.publish(orjson.dumps(update).decode())

    def tripped(event: Any) -> None:
        if metrics is not None:
            metrics.flag_guard_trips.labels(event.flag, event.metric, event.action).inc()

    return FlagEngine(FlagStore(releases.engine), store, gateway, now=now,
                      tick_s=settings.flag_tick_s,
                      guard_cooldown_s=settings.flag_guard_cooldown_s,
                      command_timeout_s=settings.command_timeout_s, publish=publish,
                      on_trip=tripped, held_here=gateway.held_here)
