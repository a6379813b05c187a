"""The agent's /diagnostics statuses (pure: plain values in, plain statuses out).

diagnostic_updater is not in the wheels this project builds on, so the nodes publish
`diagnostic_msgs/DiagnosticArray` themselves, the way diagnostic_updater does (and what
`diagnostic_aggregator`, `rqt_robot_monitor` and `ros2 topic echo /diagnostics` expect):
on the absolute topic `/diagnostics`, once a second, one status per task named
`<node name>: <task>`, `hardware_id` the robot id, levels OK / WARN / ERROR, values as strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

OK, WARN, ERROR, STALE = 0, 1, 2, 3


@dataclass(frozen=True)
class Status:
    """One DiagnosticStatus."""

    name: str
    level: int
    message: str
    hardware_id: str
    values: tuple[tuple[str, str], ...] = ()


def _values(items: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    def text(value: object) -> str:
        if isinstance(value, float):
            return 'nan' if math.isnan(value) else f'{value:.3f}'
        return str(value).lower() if isinstance(value, bool) else str(value)

    return tuple((key, text(value)) for key, value in items.items())


def uplink_statuses(node_name: str, robot_id: str, *, connected: bool, server_url: str,
                    outbox_pending: int, acknowledged_total: int, storage_problem: str | None,
                    held: int, max_outbox_messages: int,
                    transport: str = 'websocket') -> list[Status]:
    """Return the uplink's connection and outbox statuses."""
    connection = Status(
        f'{node_name}: connection', OK if connected else WARN,
        (f'connected ({transport})' if connected else
         'not connected: queueing in the outbox, reconnecting'),
        robot_id, _values({'server_url': server_url, 'connected': connected,
                           'acknowledged_total': acknowledged_total, 'transport': transport}))
    if storage_problem is not None:
        level, message = ERROR, f'cannot write: {storage_problem}; {held} messages held'
    elif outbox_pending > max_outbox_messages:
        level, message = WARN, f'{outbox_pending} messages waiting, over {max_outbox_messages}'
    else:
        level, message = OK, f'{outbox_pending} messages waiting'
    outbox = Status(f'{node_name}: outbox', level, message, robot_id,
                    _values({'pending': outbox_pending, 'held_in_memory': held,
                             'storage_problem': storage_problem or ''}))
    return [connection, outbox]


def teleop_statuses(node_name: str, robot_id: str, reading: object,
                    operators: Mapping[str, int],
                    round_trips: Mapping[str, float] | None = None) -> list[Status]:
    """Return the teleop state and the detector's inputs (a TeleopReading or alike).

    `round_trips` maps each operator with a fresh command round trip to it (ms): one
    `command_rtt_ms[<operator>]` value each.
    """
    get = reading.__getattribute__
    active, present = bool(get('active')), bool(get('operator_present'))
    message = ('someone is driving' if active else
               'an operator is connected or watching' if present else 'nobody operating')
    teleop = Status(f'{node_name}: teleop', OK, message, robot_id,
                    _values({'teleop_active': active, 'operator_present': present,
                             'score': float(get('score'))}))
    inputs = Status(f'{node_name}: inputs', OK, 'signals of the teleop score', robot_id,
                    _values({'joystick_signal': float(get('joystick_signal')),
                             'joystick_rate_hz': float(get('joystick_rate_hz')),
                             'video_signal': float(get('video_signal')),
                             'active_video_streams': int(get('active_video_streams')),
                             'webrtc_signal': float(get('webrtc_signal')),
                             'webrtc_peers': int(get('webrtc_peers')),
                             'control_latency_ms': float(get('control_latency_ms')),
                             **{f'{k}_operators': v for k, v in operators.items()},
                             **{f'command_rtt_ms[{k}]': float(v)
                                for k, v in sorted((round_trips or {}).items())}}))
    return [teleop, inputs]
