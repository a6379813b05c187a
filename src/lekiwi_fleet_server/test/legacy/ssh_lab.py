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
import tempfile
import time
from collections.abc import Callable
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
    sshd_pids: list[int]  # the listening daemons (each connection's sshd is their child)


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def make_lab(directory: Path, count: int, user: str = 'root'
             ) -> tuple[SshLab, Callable[[], None]]:
    """Start sshd for `count` hosts polled as `user`; return the lab and what stops it."""
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
    # sshd reads authorized_keys as the user logging in, who may not be root.
    directory.chmod(0o755)
    for parent in directory.parents:
        if parent == Path(tempfile.gettempdir()) or parent == Path('/'):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    (directory / 'authorized_keys').chmod(0o644)
    host_pub = ' '.join((directory / 'host_key.pub').read_text().split()[:2])
    hosts, known = [], []
    for i in range(count):
        address = f'127.0.{(i + 2) // 250}.{(i + 2) % 250 or 250}'
        port = free_port(address)
        known.append(f'[{address}]:{port} {host_pub}')
        hosts.append(LegacyHost(f'legacy-{i:03d}', address, user, port, ('legacy',)))
    (directory / 'known_hosts').write_text('\n'.join(known) + '\n')
    Path('/run/sshd').mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    processes: list[subprocess.Popen[bytes]] = []
    hang: socket.socket | None = None

    def stop() -> None:
        if hang is not None:
            hang.close()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()

    try:
        # sshd listens on at most 16 sockets (MAX_LISTEN_SOCKS): one daemon per 16 hosts.
        for first in range(0, count, 16):
            processes.append(_start_sshd(directory, first // 16, hosts[first:first + 16]))
        _wait_listening(directory, hosts, processes)
        # Accepted by the kernel, never read: the TCP connect works, no SSH banner ever comes.
        hang = socket.create_server(('127.0.0.1', 0), backlog=1024)
    except BaseException:
        stop()
        raise
    hanging = LegacyHost('legacy-hang', '127.0.0.1', 'root', hang.getsockname()[1])
    refusing = LegacyHost('legacy-refuse', '127.0.0.1', 'root', free_port('127.0.0.1'))
    lab = SshLab(hosts, hanging, refusing, directory / 'client_key', directory / 'other_key',
                 directory / 'known_hosts', directory, [p.pid for p in processes])
    return lab, stop


def _start_sshd(directory: Path, index: int, hosts: list[LegacyHost]
                ) -> subprocess.Popen[bytes]:
    config = directory / f'sshd_config.{index}'
    config.write_text('\n'.join([
        *(f'ListenAddress {h.host}:{h.port}' for h in hosts),
        f'HostKey {directory / "host_key"}',
        f'AuthorizedKeysFile {directory / "authorized_keys"}',
        f'PidFile {directory / f"sshd.{index}.pid"}',
        'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no',
        'StrictModes no', 'PermitRootLogin prohibit-password', 'MaxStartups 1000:30:1000',
        'MaxSessions 100', 'LogLevel ERROR', 'UseDNS no', '',
    ]))
    with open(directory / f'sshd.{index}.log', 'wb') as log:
        return subprocess.Popen([SSHD, '-D', '-e', '-f', str(config)], stderr=log)


def _wait_listening(directory: Path, hosts: list[LegacyHost],
                    processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 15
    pending = list(hosts)
    while pending and time.monotonic() < deadline:
        try:
            with socket.create_connection((pending[0].host, pending[0].port), timeout=0.5):
                pending.pop(0)
        except OSError:
            for index, process in enumerate(processes):
                if process.poll() is not None:
                    log = (directory / f'sshd.{index}.log').read_text()
                    raise RuntimeError(f'sshd exited: {log}') from None
            time.sleep(0.05)
    if pending:
        raise RuntimeError('sshd did not listen in time')
