"""A real OpenSSH server on loopback for the legacy adapter's tests and benchmark.

`ssh_lab` starts Debian's sshd (the test command installs openssh-server) on several loopback
addresses, each with a port of its own, with a host key, a client key and an authorized_keys
file made for the test, plus a host that accepts TCP but never speaks (a hang) and a port
nobody listens on (a refusal). The robots are this machine, polled as root with the key.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lekiwi_fleet_server.legacy.inventory import LegacyHost

SSHD = '/usr/sbin/sshd'


class LabUnavailable(RuntimeError):
    """This machine cannot run the lab (no sshd, not root)."""


@dataclass
class SshLab:
    hosts: list[LegacyHost]  # answer over SSH
    hanging: LegacyHost  # TCP accepted, no SSH banner ever
    refusing: LegacyHost  # connection refused
    key_file: Path
    other_key_file: Path  # a key sshd does not accept
    known_hosts: Path
    directory: Path


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def make_lab(directory: Path, count: int) -> tuple[SshLab, subprocess.Popen[bytes],
                                                  socket.socket]:
    """Start sshd for `count` hosts; return the lab, the process and the hanging listener."""
    if not os.access(SSHD, os.X_OK) or shutil.which('ssh-keygen') is None:
        raise LabUnavailable('OpenSSH server not installed (the test command installs '
                             'openssh-server)')
    if os.geteuid() != 0:
        raise LabUnavailable('sshd must run as root to log a user in')
    directory.mkdir(parents=True, exist_ok=True)
    for name in ('host_key', 'client_key', 'other_key'):
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f',
                        str(directory / name)], check=True)
    (directory / 'authorized_keys').write_text((directory / 'client_key.pub').read_text())
    host_pub = ' '.join((directory / 'host_key.pub').read_text().split()[:2])
    hosts, listen, known = [], [], []
    for i in range(count):
        address = f'127.0.{(i + 2) // 250}.{(i + 2) % 250 or 250}'
        port = free_port(address)
        listen.append(f'ListenAddress {address}:{port}')
        known.append(f'[{address}]:{port} {host_pub}')
        hosts.append(LegacyHost(f'legacy-{i:03d}', address, 'root', port, ('legacy',)))
    (directory / 'known_hosts').write_text('\n'.join(known) + '\n')
    config = directory / 'sshd_config'
    config.write_text('\n'.join([
        *listen,
        f'HostKey {directory / "host_key"}',
        f'AuthorizedKeysFile {directory / "authorized_keys"}',
        f'PidFile {directory / "sshd.pid"}',
        'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no',
        'StrictModes no', 'PermitRootLogin prohibit-password', 'MaxStartups 1000:30:1000',
        'MaxSessions 100', 'LogLevel ERROR', 'UseDNS no', '',
    ]))
    Path('/run/sshd').mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    process = subprocess.Popen([SSHD, '-D', '-e', '-f', str(config)],
                               stderr=open(directory / 'sshd.log', 'wb'))  # noqa: SIM115
    deadline = time.monotonic() + 10
    pending = list(hosts)
    while pending and time.monotonic() < deadline:
        try:
            with socket.create_connection((pending[0].host, pending[0].port), timeout=0.5):
                pending.pop(0)
        except OSError:
            if process.poll() is not None:
                raise RuntimeError('sshd exited: '
                                   + (directory / 'sshd.log').read_text()) from None
            time.sleep(0.05)
    if pending:
        process.kill()
        raise RuntimeError('sshd did not listen in time')
    # Accepted by the kernel, never read: the TCP connect works, the SSH banner never comes.
    hang = socket.create_server(('127.0.0.1', 0), backlog=1024)
    hanging = LegacyHost('legacy-hang', '127.0.0.1', 'root', hang.getsockname()[1])
    refusing = LegacyHost('legacy-refuse', '127.0.0.1', 'root', free_port('127.0.0.1'))
    lab = SshLab(hosts, hanging, refusing, directory / 'client_key', directory / 'other_key',
                 directory / 'known_hosts', directory)
    return lab, process, hang
