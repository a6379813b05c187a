"""HeartbeatReducer: a heartbeat's `resources` on the wire only when they changed.

A heartbeat goes every second, and most of it is the twelve `ResourceUsage` fields at double
precision, which barely move on an idle robot. On the wire (the ROS topic and the outbox keep
the message whole) the reducer rounds them to the precision a fleet view needs (4 significant
digits, never coarser than 0.1) and, when the server announced the feature
`heartbeat-resources-optional` in its auth answer, leaves them out of a heartbeat while none
moved beyond its threshold since the last resources the server acknowledged; the server then
keeps the resources it has. Against a server that does not announce it, every heartbeat
carries them (protocol v1 as it was).

The baseline is what the server acknowledged on this connection, not what was sent: a
heartbeat with resources that is lost, refused or superseded in the outbox never becomes the
baseline, so the next heartbeat carries resources again. A new connection starts without a
baseline, and resources go at least every `refresh_s` (uptime, which always moves, is
refreshed then). Pure: time comes in as `now`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FEATURE = 'heartbeat-resources-optional'
HEARTBEAT_TOPIC = 'fleet/heartbeat'
MAX_PENDING = 16  # heartbeats with resources sent and not yet acknowledged, kept for the ack


@dataclass(frozen=True)
class Tolerance:
    """A field counts as changed when it moved more than `absolute` + `relative` * |base|.

    The base is the field's own previous value, or the previous value of the field named by
    `of` (memory in use is judged against the total: 1 % of a Pi's 8 GB, not of what is used).
    """

    absolute: float = 0.0
    relative: float = 0.0
    of: str | None = None


def _default_tolerances() -> dict[str, Tolerance]:
    return {
        'cpu_percent': Tolerance(absolute=5.0),
        'load_average_1min': Tolerance(absolute=0.25),
        'memory_used_bytes': Tolerance(relative=0.01, of='memory_total_bytes'),
        'memory_total_bytes': Tolerance(),
        'disk_used_bytes': Tolerance(relative=0.005, of='disk_total_bytes'),
        'disk_total_bytes': Tolerance(),
        'temperature_c': Tolerance(absolute=1.0),
        'battery_voltage_v': Tolerance(absolute=0.1),
        'battery_percent': Tolerance(absolute=1.0),
        'network_tx_bytes_per_s': Tolerance(absolute=4096.0, relative=0.5),
        'network_rx_bytes_per_s': Tolerance(absolute=4096.0, relative=0.5),
        'uptime_s': Tolerance(absolute=math.inf),  # always moves: sent with each refresh
        # The agent's own figures (issue 20), merged in by the uplink (`reduce(figures=...)`).
        'agent_rss_mb': Tolerance(absolute=1.0),
        'agent_uss_mb': Tolerance(absolute=1.0),
        'uplink_ack_p99_ms': Tolerance(absolute=25.0, relative=0.25),
    }


@dataclass(frozen=True)
class ReducerConfig:
    """How much a resource may move before it goes again, and how often they go anyway."""

    refresh_s: float = 60.0
    significant_digits: int = 4
    # A heartbeat with resources unacknowledged this long is taken as lost (the session drops
    # a connection whose frame waits 10 s for its ack); until then none is left out.
    settle_s: float = 10.0
    tolerances: Mapping[str, Tolerance] = field(default_factory=_default_tolerances)

    def __post_init__(self) -> None:
        if not self.refresh_s > 0.0:
            raise ValueError(f'refresh_s must be > 0, got {self.refresh_s}')
        if not self.settle_s > 0.0:
            raise ValueError(f'settle_s must be > 0, got {self.settle_s}')
        if not 1 <= self.significant_digits <= 17:
            raise ValueError(f'significant_digits must be 1..17, got {self.significant_digits}')


def round_value(value: Any, digits: int) -> Any:
    """Round a float to `digits` significant digits, never coarser than 0.1 (ints stay)."""
    if value.__class__ is not float or not math.isfinite(value) or value == 0.0:
        return value
    decimals = max(1, digits - 1 - math.floor(math.log10(abs(value))))
    return round(value, decimals)


def changed(old: Mapping[str, Any], new: Mapping[str, Any],
            tolerances: Mapping[str, Tolerance]) -> bool:
    """Tell whether any field of `new` moved beyond its tolerance from `old`."""
    if old.keys() != new.keys():
        return True
    for name, value in new.items():
        before = old[name]
        if value == before:
            continue
        if not (isinstance(value, int | float) and isinstance(before, int | float)):
            return True  # null <-> number, or a field of a kind we do not know
        tolerance = tolerances.get(name, Tolerance())
        base = before if tolerance.of is None else old.get(tolerance.of)
        scale = abs(base) if isinstance(base, int | float) else 0.0
        if abs(value - before) > tolerance.absolute + tolerance.relative * scale:
            return True
    return False


class HeartbeatReducer:
    """Decide per heartbeat frame whether its resources go, and round them."""

    def __init__(self, config: ReducerConfig, now: Callable[[], float]) -> None:
        self._config = config
        self._now = now
        self._elide = False
        self._baseline: dict[str, Any] | None = None  # acknowledged on this connection
        self._baseline_sent_at = 0.0
        self._baseline_key: tuple[str, int] | None = None
        self._pending: dict[tuple[str, int], tuple[dict[str, Any], float]] = {}
        self.elided_total = 0

    def connection_ready(self, features: Iterable[Any]) -> None:
        """Start a connection whose server announced `features` (no baseline yet)."""
        self._elide = FEATURE in features
        self._baseline = None
        self._baseline_key = None
        self._pending.clear()

    def reduce(self, key: tuple[str, int], msg_json: str,
               figures: Mapping[str, Any] | None = None) -> str:
        """Return the heartbeat's JSON as it goes on the wire.

        `figures`: the agent's own (docs/robot-protocol.md, "The agent's own figures"):
        `uplink_transport` goes at the heartbeat's top level, the numbers join its resources
        (so they are left out with them while they do not move).
        """
        msg = json.loads(msg_json)
        resources = msg.get('resources')
        if figures:
            figures = dict(figures)
            transport = figures.pop('uplink_transport', None)
            if transport is not None:
                msg['uplink_transport'] = transport
            if isinstance(resources, dict):
                resources.update(figures)
        if not isinstance(resources, dict):
            return msg_json if not figures else json.dumps(
                msg, separators=(',', ':'), allow_nan=False)
        digits = self._config.significant_digits
        rounded = {name: round_value(value, digits) for name, value in resources.items()}
        now = self._now()
        # While resources sent later than the baseline may still arrive, the server may hold
        # those rather than the baseline: send these too, so it ends with the newest.
        unsettled = any(now - sent_at < self._config.settle_s
                        for _, sent_at in self._pending.values())
        if (
            self._elide
            and self._baseline is not None
            and not unsettled
            and now - self._baseline_sent_at < self._config.refresh_s
            and not changed(self._baseline, rounded, self._config.tolerances)
        ):
            del msg['resources']
            self.elided_total += 1
        else:
            msg['resources'] = rounded
            self._pending[key] = (rounded, now)
            while len(self._pending) > MAX_PENDING:
                del self._pending[next(iter(self._pending))]
        return json.dumps(msg, separators=(',', ':'), allow_nan=False)

    def acknowledged(self, keys: Iterable[tuple[str, int]]) -> None:
        """Take the newest acknowledged heartbeat that carried resources as the baseline."""
        for key in sorted(k for k in keys if k in self._pending):
            resources, sent_at = self._pending.pop(key)
            last = self._baseline_key
            if last is None or key[0] != last[0] or key[1] > last[1]:
                self._baseline, self._baseline_sent_at = resources, sent_at
                self._baseline_key = key
        base = self._baseline_key
        if base is not None:
            # An older heartbeat of the same boot arriving now would not replace the newer
            # one on the server (it keeps the newest): it no longer matters.
            for key in [k for k in self._pending if k[0] == base[0] and k[1] < base[1]]:
                del self._pending[key]
