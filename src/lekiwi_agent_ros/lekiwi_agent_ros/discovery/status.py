"""What the robot tells discovery about itself: the status document and the DNS-SD TXT record.

Pure. The fleet server's scanner recognises an agent by `service == "lekiwi-agent"` and a valid
`robot_id` in the document GET /lekiwi/status returns; the mDNS browser reads the same facts
from the TXT record (each value at most 255 bytes, as DNS-SD requires).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SERVICE = 'lekiwi-agent'
STATUS_PATH = '/lekiwi/status'
SERVICE_TYPE = '_lekiwi._tcp.local.'
STATES = ('unknown', 'booting', 'idle', 'teleoperated', 'deploying', 'error', 'offline')


@dataclass(frozen=True, slots=True)
class AgentStatus:
    robot_id: str
    agent_version: str
    software_version: str
    boot_id: str
    state: int
    status_port: int

    def document(self) -> dict[str, object]:
        """Return the JSON document of GET /lekiwi/status."""
        return {'service': SERVICE, 'robot_id': self.robot_id,
                'agent_version': self.agent_version, 'software_version': self.software_version,
                'boot_id': self.boot_id,
                'state': STATES[self.state] if 0 <= self.state < len(STATES) else 'unknown',
                'status_port': self.status_port}

    def txt(self) -> dict[str, str]:
        """Return the DNS-SD TXT properties (values cut to 255 bytes)."""
        props = {'robot_id': self.robot_id, 'agent_version': self.agent_version,
                 'software_version': self.software_version, 'path': STATUS_PATH}
        return {k: v.encode()[:255].decode(errors='ignore') for k, v in props.items()}

    def instance_name(self) -> str:
        """Return the DNS-SD instance name: `<robot_id>._lekiwi._tcp.local.`."""
        return f'{self.robot_id}.{SERVICE_TYPE}'


def respond(method: str, path: str, status: AgentStatus | None) -> tuple[int, bytes]:
    """Answer one request: (HTTP status, JSON body)."""
    if path.split('?', 1)[0] != STATUS_PATH:
        return 404, b'{"error": "not found"}'
    if method not in ('GET', 'HEAD'):
        return 405, b'{"error": "method not allowed"}'
    if status is None:
        # No heartbeat yet: the robot id and versions are not known.
        return 503, b'{"error": "starting"}'
    return 200, json.dumps(status.document()).encode()
