"""The SSH poller against a real OpenSSH server: parallel, bounded, each host in its time."""

from __future__ import annotations

import asyncio
import time

from ssh_lab import SshLab

from lekiwi_fleet_server.legacy.inventory import LegacyHost
from lekiwi_fleet_server.legacy.poller import LegacyPoller, SshCredentials
from lekiwi_fleet_server.legacy.status import StatusCommands


def poller(lab: SshLab, *, timeout_s: float = 3.0, concurrency: int = 8,
           key: str = 'client') -> LegacyPoller:
    key_file = lab.key_file if key == 'client' else lab.other_key_file
    return LegacyPoller(SshCredentials(key_file, lab.known_hosts),
                        StatusCommands(version_command='echo 4.5.6'),
                        concurrency=concurrency, timeout_s=timeout_s)


def test_hosts_answer_in_parallel_while_a_hanging_host_only_costs_its_timeout(
        ssh_lab: SshLab) -> None:
    hosts = [*ssh_lab.hosts, ssh_lab.hanging, ssh_lab.refusing]
    started = time.monotonic()
    results = asyncio.run(poller(ssh_lab, timeout_s=2.0).poll_all(hosts))
    elapsed = time.monotonic() - started
    assert [r.host for r in results] == hosts
    for result in results[:3]:
        assert result.ok, result.error
        assert result.reading is not None and result.reading.software_version == '4.5.6'
        assert result.reading.memory_total_bytes > 0 and result.reading.uptime_s > 0
    hang, refused = results[3], results[4]
    assert not hang.ok and hang.error == 'timed out after 2 s' and hang.seconds >= 1.9
    assert not refused.ok and refused.error == 'connection refused'
    assert elapsed < 2.0 + 3.0  # the hang's timeout, not a sum over the hosts


def test_concurrency_bounds_the_sessions_at_once(ssh_lab: SshLab) -> None:
    # One session at a time behind a hang: the hang holds the only slot for its timeout.
    hosts = [ssh_lab.hanging, *ssh_lab.hosts]
    started = time.monotonic()
    results = asyncio.run(poller(ssh_lab, timeout_s=1.0, concurrency=1).poll_all(hosts))
    assert time.monotonic() - started >= 1.0
    assert [r.ok for r in results] == [False, True, True, True]


def test_a_key_the_robot_refuses_and_an_unknown_host_key_are_clear_errors(
        ssh_lab: SshLab) -> None:
    host = ssh_lab.hosts[0]
    (refused,) = asyncio.run(poller(ssh_lab, key='other').poll_all([host]))
    assert refused.error == 'permission denied (key not accepted)'
    stranger = LegacyHost(host.robot_id, host.host, host.user, host.port)
    empty_known = ssh_lab.directory / 'empty_known_hosts'
    empty_known.write_text('')
    strict = LegacyPoller(SshCredentials(ssh_lab.key_file, empty_known), StatusCommands(),
                          timeout_s=3.0)
    (unknown,) = asyncio.run(strict.poll_all([stranger]))
    assert not unknown.ok and 'host key' in (unknown.error or '').lower()
