"""What a legacy poll runs on a robot and what its output means (pure: no SSH here).

One poll is one SSH command: a POSIX shell script printing delimited sections (load, memory,
disk, uptime, the configured services' states, and the battery and software version where a
configured command prints them). One command per poll, not one per reading, because an SSH
channel costs a round trip; the old tooling opened a session per reading.

The output becomes a `RobotHeartbeat` message in rosbridge JSON, so a polled robot enters the
same ingest as an agent's heartbeat. Its `agent_version` is `LEGACY_AGENT_VERSION`: the mark
that tells readers (and the poller itself) that this robot was seen over SSH, not by an agent.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

LEGACY_AGENT_VERSION = 'legacy-ssh'
STATE_IDLE, STATE_ERROR = 2, 6  # RobotHeartbeat.STATE_*
_SECTION = '@@lekiwi:'
_SERVICE = re.compile(r'^[A-Za-z0-9@._:-]{1,128}$')
MAX_OUTPUT_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class StatusCommands:
    """The status commands a poll runs; the defaults read only /proc and `df`."""

    services: tuple[str, ...] = ()  # systemd units whose `is-active` state is reported
    battery_command: str = ''  # prints a voltage in volts (e.g. from the robot's BMS tool)
    version_command: str = ''  # prints the deployed software version

    def __post_init__(self) -> None:
        for name in self.services:
            if not _SERVICE.match(name):
                raise ValueError(f'service name {name!r} is not a systemd unit name')

    def script(self) -> str:
        """Return the shell script of one poll."""
        parts = [
            f"echo '{_SECTION}loadavg'; cat /proc/loadavg",
            f"echo '{_SECTION}meminfo'; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo",
            f"echo '{_SECTION}disk'; df -Pk / | tail -n 1",
            f"echo '{_SECTION}uptime'; cat /proc/uptime",
        ]
        if self.services:
            units = ' '.join(shlex.quote(s) for s in self.services)
            parts.append(f"echo '{_SECTION}services'; for u in {units}; do "
                         'printf "%s %s\\n" "$u" "$(systemctl is-active "$u" 2>/dev/null '
                         '|| echo unknown)"; done')
        if self.battery_command:
            parts.append(f"echo '{_SECTION}battery'; ( {self.battery_command} ) 2>/dev/null")
        if self.version_command:
            parts.append(f"echo '{_SECTION}version'; ( {self.version_command} ) 2>/dev/null")
        return '; '.join(parts) + '; true'


@dataclass(frozen=True, slots=True)
class LegacyReading:
    """What one poll found; NaN / None where the robot did not say."""

    load_average_1min: float = math.nan
    memory_used_bytes: int = 0
    memory_total_bytes: int = 0
    disk_used_bytes: int = 0
    disk_total_bytes: int = 0
    uptime_s: float = math.nan
    battery_voltage_v: float = math.nan
    software_version: str = ''
    services: dict[str, str] = field(default_factory=dict)

    @property
    def failed_services(self) -> list[str]:
        """Return the configured services that are not active."""
        return sorted(name for name, state in self.services.items() if state != 'active')


def parse_status(output: str) -> LegacyReading:
    """Parse a poll's output; unreadable sections stay unknown rather than failing the poll."""
    sections = _sections(output[:MAX_OUTPUT_BYTES])
    values: dict[str, Any] = {}
    load = sections.get('loadavg', [])
    if load:
        values['load_average_1min'] = _float(load[0].split()[:1])
    mem: dict[str, int] = {}
    for line in sections.get('meminfo', []):
        name, _, rest = line.partition(':')
        number = rest.split()[:1]
        if number and number[0].isdigit():
            mem[name.strip()] = int(number[0]) * 1024  # kB
    if 'MemTotal' in mem:
        values['memory_total_bytes'] = mem['MemTotal']
        values['memory_used_bytes'] = max(0, mem['MemTotal'] - mem.get('MemAvailable',
                                                                         mem['MemTotal']))
    disk = sections.get('disk', [])
    if disk:
        cols = disk[-1].split()
        if len(cols) >= 4 and cols[1].isdigit() and cols[2].isdigit():
            values['disk_total_bytes'] = int(cols[1]) * 1024
            values['disk_used_bytes'] = int(cols[2]) * 1024
    uptime = sections.get('uptime', [])
    if uptime:
        values['uptime_s'] = _float(uptime[0].split()[:1])
    battery = sections.get('battery', [])
    if battery:
        values['battery_voltage_v'] = _float(battery[0].split()[:1])
    version = sections.get('version', [])
    if version:
        values['software_version'] = version[0].strip()[:128]
    services: dict[str, str] = {}
    for line in sections.get('services', []):
        name, _, state = line.partition(' ')
        if _SERVICE.match(name):
            services[name] = state.strip()[:32] or 'unknown'
    values['services'] = services
    return LegacyReading(**values)


def heartbeat_msg(reading: LegacyReading, *, robot_id: str, boot_id: str, sequence: int,
                  now: float) -> dict[str, Any]:
    """Return the RobotHeartbeat (rosbridge JSON, NaN as None) a poll stands for."""
    sec = int(now)
    return {
        'header': {'stamp': {'sec': sec, 'nanosec': int((now - sec) * 1e9)}, 'frame_id': ''},
        'robot_id': robot_id,
        'agent_version': LEGACY_AGENT_VERSION,
        'software_version': reading.software_version,
        'boot_id': boot_id,
        'sequence': sequence,
        'state': STATE_ERROR if reading.failed_services else STATE_IDLE,
        'teleop_active': False,  # polling cannot see a driver: only the agent can
        'teleop_score': 0.0,
        'resources': {
            'cpu_percent': None,
            'load_average_1min': _json_float(reading.load_average_1min),
            'memory_used_bytes': reading.memory_used_bytes,
            'memory_total_bytes': reading.memory_total_bytes,
            'disk_used_bytes': reading.disk_used_bytes,
            'disk_total_bytes': reading.disk_total_bytes,
            'temperature_c': None,
            'battery_voltage_v': _json_float(reading.battery_voltage_v),
            'battery_percent': None,
            'network_tx_bytes_per_s': None,
            'network_rx_bytes_per_s': None,
            'uptime_s': _json_float(reading.uptime_s),
        },
    }


def _sections(output: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(_SECTION):
            current = sections.setdefault(line[len(_SECTION):].strip(), [])
        elif current is not None and line.strip():
            current.append(line)
    return sections


def _float(parts: Sequence[str]) -> float:
    try:
        value = float(parts[0]) if parts else math.nan
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value
