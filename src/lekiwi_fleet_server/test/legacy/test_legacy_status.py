"""A poll's script and the parsing of its output (pure)."""

from __future__ import annotations

import math
import subprocess

import pytest

from lekiwi_fleet_server.domain import protocol
from lekiwi_fleet_server.legacy.status import (
    LEGACY_AGENT_VERSION,
    StatusCommands,
    heartbeat_msg,
    parse_status,
)

OUTPUT = """@@lekiwi:loadavg
0.42 0.30 0.25 1/123 4567
@@lekiwi:meminfo
MemTotal:        8000000 kB
MemAvailable:    6000000 kB
@@lekiwi:disk
/dev/mmcblk0p2  30000000 12000000 16000000  43% /
@@lekiwi:uptime
12345.67 20000.00
@@lekiwi:services
lekiwi-host.service active
teleop.service failed
@@lekiwi:battery
12.31
@@lekiwi:version
2.3.1
"""


def test_output_sections_become_a_reading() -> None:
    reading = parse_status(OUTPUT)
    assert reading.load_average_1min == 0.42
    assert reading.memory_total_bytes == 8_000_000 * 1024
    assert reading.memory_used_bytes == 2_000_000 * 1024
    assert (reading.disk_total_bytes, reading.disk_used_bytes) == (30_000_000 * 1024,
                                                                   12_000_000 * 1024)
    assert reading.uptime_s == 12345.67 and reading.battery_voltage_v == 12.31
    assert reading.software_version == '2.3.1'
    assert reading.services == {'lekiwi-host.service': 'active', 'teleop.service': 'failed'}
    assert reading.failed_services == ['teleop.service']


@pytest.mark.parametrize('output', ['', 'garbage\n\x00\n', '@@lekiwi:loadavg\nnan x\n'
                                    '@@lekiwi:disk\n/ a b\n@@lekiwi:battery\ninf\n'])
def test_unreadable_output_leaves_readings_unknown(output: str) -> None:
    reading = parse_status(output)
    assert math.isnan(reading.load_average_1min) and math.isnan(reading.battery_voltage_v)
    assert reading.memory_total_bytes == 0 and reading.disk_total_bytes == 0
    assert reading.services == {}


def test_heartbeat_of_a_reading_passes_the_gateway_validator() -> None:
    msg = heartbeat_msg(parse_status(OUTPUT), robot_id='kiwi-1', boot_id='legacy-0011aabb',
                        sequence=3, now=1_764_190_000.25)
    publish = protocol.parse_publish({'op': 'publish', 'topic': 'fleet/heartbeat',
                                      'boot_id': 'legacy-0011aabb', 'seq': 3, 'msg': msg})
    assert publish.msg['agent_version'] == LEGACY_AGENT_VERSION
    assert publish.msg['state'] == 6  # a failed service is an error
    assert publish.msg['resources']['cpu_percent'] is None  # polling cannot see it
    assert msg['header']['stamp'] == {'sec': 1_764_190_000, 'nanosec': 250_000_000}
    empty = heartbeat_msg(parse_status(''), robot_id='k', boot_id='legacy-0011aabb',
                          sequence=1, now=0.0)
    assert empty['state'] == 2 and empty['resources']['uptime_s'] is None
    protocol.parse_publish({'op': 'publish', 'topic': 'fleet/heartbeat',
                            'boot_id': 'legacy-0011aabb', 'seq': 1, 'msg': empty})


def test_the_script_runs_in_a_posix_shell_and_reads_this_machine() -> None:
    commands = StatusCommands(services=('surely-not-a-unit.service',),
                              battery_command='echo 11.9', version_command='echo 1.0.0')
    out = subprocess.run(['sh', '-c', commands.script()], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    reading = parse_status(out)
    assert reading.load_average_1min >= 0 and reading.memory_total_bytes > 0
    assert reading.disk_total_bytes > 0 and reading.uptime_s > 0
    assert reading.battery_voltage_v == 11.9 and reading.software_version == '1.0.0'
    assert reading.services['surely-not-a-unit.service'] != 'active'


def test_service_names_are_checked_so_the_script_cannot_be_injected() -> None:
    with pytest.raises(ValueError, match='systemd unit name'):
        StatusCommands(services=('x; rm -rf /',))
