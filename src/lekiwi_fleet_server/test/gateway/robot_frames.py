"""Valid protocol frames for tests, one builder per message type (docs/robot-protocol.md)."""

from __future__ import annotations

from typing import Any

BOOT = '9f2c4e1a7b3d5f60'


def header(sec: int = 1764190000) -> dict[str, Any]:
    return {'stamp': {'sec': sec, 'nanosec': 0}, 'frame_id': ''}


def resources() -> dict[str, Any]:
    return {'cpu_percent': 12.5, 'load_average_1min': 0.3, 'memory_used_bytes': 1 << 28,
            'memory_total_bytes': 1 << 33, 'disk_used_bytes': 1 << 30,
            'disk_total_bytes': 1 << 35, 'temperature_c': 51.0, 'battery_voltage_v': 12.1,
            'battery_percent': None, 'network_tx_bytes_per_s': 100.0,
            'network_rx_bytes_per_s': 50.0, 'uptime_s': 3600.0}


def heartbeat(robot_id: str = 'kiwi-001', sequence: int = 1, boot_id: str = BOOT,
              software_version: str = '1.0.0') -> dict[str, Any]:
    return {'header': header(), 'robot_id': robot_id, 'agent_version': '0.1.0',
            'software_version': software_version, 'boot_id': boot_id, 'sequence': sequence,
            'state': 1, 'teleop_active': False, 'teleop_score': 0.0, 'resources': resources()}


def teleop_status(active: bool = True) -> dict[str, Any]:
    return {'header': header(), 'active': active, 'score': 0.9, 'joystick_signal': 1.0,
            'video_signal': 1.0, 'webrtc_signal': 1.0, 'latency_signal': None,
            'joystick_rate_hz': 30.0, 'active_video_streams': 1, 'webrtc_peers': 1,
            'control_latency_ms': 40.0, 'active_since': {'sec': 1764190000, 'nanosec': 5}}


def telemetry(robot_id: str = 'kiwi-001', sequence: int = 1, boot_id: str = BOOT,
              full: bool = True) -> dict[str, Any]:
    return {'header': header(), 'robot_id': robot_id, 'boot_id': boot_id, 'sequence': sequence,
            'base_sequence': 0, 'full_snapshot': full,
            'field_names': ['cpu_percent', 'battery_voltage_v'], 'field_values': [10.0, None]}


def event(robot_id: str = 'kiwi-001', sequence: int = 1, boot_id: str = BOOT,
          event_type: str = 'robot.note') -> dict[str, Any]:
    return {'header': header(), 'robot_id': robot_id, 'boot_id': boot_id, 'sequence': sequence,
            'severity': 1, 'event_type': event_type, 'payload_json': '{"k": 1}'}


def deployment_status(robot_id: str = 'kiwi-001') -> dict[str, Any]:
    return {'header': header(), 'robot_id': robot_id, 'deployment_id': 'd-1',
            'release_version': '1.1.0', 'previous_version': '1.0.0', 'phase': 2,
            'progress': 0.5, 'message': 'downloading'}


MESSAGES = {
    'fleet/heartbeat': heartbeat,
    'teleop/status': teleop_status,
    'fleet/telemetry': telemetry,
    'fleet/events': event,
    'fleet/deployment_status': deployment_status,
}


def publish(topic: str, seq: int, msg: dict[str, Any] | None = None,
            boot_id: str = BOOT, robot_id: str = 'kiwi-001') -> dict[str, Any]:
    if msg is None:
        # A message names the frame's robot and boot (the gateway refuses others).
        if topic in _NAMES_BOOT:
            msg = MESSAGES[topic](robot_id=robot_id, boot_id=boot_id)
        elif topic == 'fleet/deployment_status':
            msg = deployment_status(robot_id)
        else:
            msg = MESSAGES[topic]()
    return {'op': 'publish', 'topic': topic, 'boot_id': boot_id, 'seq': seq, 'msg': msg}


_NAMES_BOOT = frozenset({'fleet/heartbeat', 'fleet/telemetry', 'fleet/events'})


def auth(robot_id: str, token: str, protocols: list[str] | None = None) -> dict[str, Any]:
    return {'op': 'auth', 'robot_id': robot_id, 'token': token,
            'protocol': protocols or ['lekiwi-fleet/1'], 'agent_version': '0.1.0'}
