"""Builders of robot messages (rosbridge JSON, as the gateway hands them over) for store tests."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lekiwi_fleet_server.domain import topics
from lekiwi_fleet_server.store.interface import PresenceChange, RobotMessage

T0 = 1_764_190_000.0  # a fixed Unix time the tests start from


def token_hash(name: str) -> str:
    """Return a SHA-256 hex digest standing for a token."""
    return hashlib.sha256(name.encode()).hexdigest()


def stamp(t: float) -> dict[str, Any]:
    sec = int(t)
    return {'stamp': {'sec': sec, 'nanosec': int(round((t - sec) * 1e9))}, 'frame_id': ''}


def resources(**overrides: Any) -> dict[str, Any]:
    base = {'cpu_percent': 12.5, 'load_average_1min': 0.4, 'memory_used_bytes': 512 << 20,
            'memory_total_bytes': 4096 << 20, 'disk_used_bytes': 10 << 30,
            'disk_total_bytes': 64 << 30, 'temperature_c': 48.0, 'battery_voltage_v': 12.1,
            'battery_percent': 80.0, 'network_tx_bytes_per_s': 900.0,
            'network_rx_bytes_per_s': 300.0, 'uptime_s': 1234.0}
    base.update(overrides)
    return base


def heartbeat(robot_id: str, boot_id: str, seq: int, t: float, *, sequence: int | None = None,
              agent: str = '0.1.0', software: str = '1.0.0', state: int = 2,
              teleop: bool = False, score: float = 0.0, res: dict[str, Any] | None = None,
              received_at: float | None = None) -> RobotMessage:
    msg = {'header': stamp(t), 'robot_id': robot_id, 'agent_version': agent,
           'software_version': software, 'boot_id': boot_id,
           'sequence': seq if sequence is None else sequence, 'state': state,
           'teleop_active': teleop, 'teleop_score': score,
           'resources': resources() if res is None else res}
    return RobotMessage(robot_id, boot_id, seq, topics.HEARTBEAT, msg,
                        t if received_at is None else received_at)


def teleop_status(robot_id: str, boot_id: str, seq: int, t: float, *, active: bool,
                  score: float) -> RobotMessage:
    msg = {'header': stamp(t), 'active': active, 'score': score, 'joystick_signal': score,
           'video_signal': 0.0, 'webrtc_signal': 0.0, 'latency_signal': 0.0,
           'joystick_rate_hz': 30.0 if active else 0.0, 'active_video_streams': 0,
           'webrtc_peers': 0, 'control_latency_ms': None,
           'active_since': {'sec': int(t) if active else 0, 'nanosec': 0}}
    return RobotMessage(robot_id, boot_id, seq, topics.TELEOP_STATUS, msg, t)


def fleet_event(robot_id: str, boot_id: str, seq: int, t: float, event_type: str,
                payload: dict[str, Any] | str, *, severity: int = 1,
                sequence: int = 1) -> RobotMessage:
    msg = {'header': stamp(t), 'robot_id': robot_id, 'boot_id': boot_id, 'sequence': sequence,
           'severity': severity, 'event_type': event_type,
           'payload_json': payload if isinstance(payload, str) else json.dumps(payload)}
    return RobotMessage(robot_id, boot_id, seq, topics.EVENTS, msg, t)


def session_started(robot_id: str, boot_id: str, seq: int, t: float,
                    session_id: str) -> RobotMessage:
    return fleet_event(robot_id, boot_id, seq, t, 'teleop.session_started',
                       {'session_id': session_id, 'started_at': t, 'score': 0.8})


def session_ended(robot_id: str, boot_id: str, seq: int, t: float, session_id: str,
                  started_at: float) -> RobotMessage:
    return fleet_event(robot_id, boot_id, seq, t, 'teleop.session_ended',
                       {'session_id': session_id, 'started_at': started_at, 'ended_at': t,
                        'duration_s': t - started_at, 'reason': 'inactive'})


def telemetry(robot_id: str, boot_id: str, seq: int, t: float, sequence: int, base: int,
              values: dict[str, float | None], *, full: bool = False,
              received_at: float | None = None) -> RobotMessage:
    msg = {'header': stamp(t), 'robot_id': robot_id, 'boot_id': boot_id, 'sequence': sequence,
           'base_sequence': sequence if full else base, 'full_snapshot': full,
           'field_names': list(values), 'field_values': list(values.values())}
    return RobotMessage(robot_id, boot_id, seq, topics.TELEMETRY, msg,
                        t if received_at is None else received_at)


def deployment(robot_id: str, boot_id: str, seq: int, t: float, *, phase: int,
               deployment_id: str = 'dep-1', release: str = '1.1.0') -> RobotMessage:
    msg = {'header': stamp(t), 'robot_id': robot_id, 'deployment_id': deployment_id,
           'release_version': release, 'previous_version': '1.0.0', 'phase': phase,
           'progress': phase / 9, 'message': f'phase {phase}'}
    return RobotMessage(robot_id, boot_id, seq, topics.DEPLOYMENT_STATUS, msg, t)


def online(robot_id: str, t: float) -> PresenceChange:
    return PresenceChange(robot_id, True, t, 'connected')


def offline(robot_id: str, t: float, reason: str = 'disconnected') -> PresenceChange:
    return PresenceChange(robot_id, False, t, reason)
