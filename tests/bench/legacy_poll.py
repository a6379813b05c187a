"""Legacy poll benchmark: poll N robots over SSH in parallel against the old, serial way.

Starts Debian's sshd (the test command installs openssh-server) on N loopback addresses
(127.0.0.2, 127.0.0.3, ...), each a "robot" with its own port, plus `--hanging` robots that
accept TCP and never answer (a host that hangs, the case that made the old tooling slow).
Both ways run the real poller (`LegacyPoller`: asyncssh, one SSH command per poll, the same
status script and per-host timeout): parallel with the default concurrency, serial with one
session at a time, as the old tooling polled.

    python tests/bench/legacy_poll.py                     # 100 robots, 5 of them hanging
    python tests/bench/legacy_poll.py --hosts 100 --hanging 0 --timeout 5

Needs root, to run sshd. The robots are polled as a system user `lekiwi-legacy` with /bin/sh
as its shell, which the script creates when missing (`--user root` polls as root instead: here
root's ~/.bashrc runs `pyenv init`, which bash sources for every SSH command and which cost
about 100 ms of CPU a poll; a robot's own login shell is what it is). Every robot's sshd runs
on this machine's cores, so the parallel figure is bounded by their CPU, which the script
prints; on a fleet each robot's sshd runs on its own computer.
The last line sums up as key=value pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'src' / 'lekiwi_fleet_server'))  # the source tree, not install/
sys.path.insert(0, str(ROOT / 'src' / 'lekiwi_fleet_server' / 'test' / 'legacy'))

from ssh_lab import make_lab  # noqa: E402  (the tests' sshd lab)

from lekiwi_fleet_server.legacy.inventory import LegacyHost  # noqa: E402
from lekiwi_fleet_server.legacy.poller import LegacyPoller, PollResult, SshCredentials  # noqa: E402
from lekiwi_fleet_server.legacy.status import StatusCommands  # noqa: E402


def sshd_cpu_s(pids: list[int]) -> float:
    """CPU seconds of the daemons and their reaped children (one sshd per connection)."""
    ticks = os.sysconf('SC_CLK_TCK')
    total = 0
    for pid in pids:
        fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def timed(poller: LegacyPoller, hosts: list[LegacyHost], pids: list[int]
          ) -> tuple[float, float, float, list[PollResult]]:
    """Poll once; return wall time, this process's CPU, sshd's CPU and the results."""
    cpu, sshd = time.process_time(), sshd_cpu_s(pids)
    started = time.monotonic()
    results = asyncio.run(poller.poll_all(hosts))
    return (time.monotonic() - started, time.process_time() - cpu,
            sshd_cpu_s(pids) - sshd, results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--hosts', type=int, default=100, help='robots in all')
    parser.add_argument('--hanging', type=int, default=5, help='of them, how many hang')
    parser.add_argument('--timeout', type=float, default=5.0, help='per-host poll timeout, s')
    parser.add_argument('--concurrency', type=int, default=64, help='sessions at once')
    parser.add_argument('--user', default='lekiwi-legacy', help='user the robots are polled as')
    args = parser.parse_args()
    if args.user != 'root':
        if subprocess.run(['id', args.user], capture_output=True).returncode != 0:
            subprocess.run(['useradd', '--system', '--no-create-home', '--home-dir',
                            '/nonexistent', '--shell', '/bin/sh', args.user], check=True)
        # Not locked ('!'), or sshd (without PAM) refuses it; '*' still allows no password.
        subprocess.run(['usermod', '--password', '*', args.user], check=True)
    answering = args.hosts - args.hanging
    with tempfile.TemporaryDirectory(prefix='legacy-bench-') as tmp:
        lab, stop = make_lab(Path(tmp), answering, args.user)
        try:
            hosts = list(lab.hosts) + [
                LegacyHost(f'hang-{i:03d}', lab.hanging.host, 'root', lab.hanging.port)
                for i in range(args.hanging)]
            commands = StatusCommands(version_command='echo bench')
            credentials = SshCredentials(lab.key_file, lab.known_hosts)
            parallel = LegacyPoller(credentials, commands, concurrency=args.concurrency,
                                    timeout_s=args.timeout)
            serial = LegacyPoller(credentials, commands, concurrency=1, timeout_s=args.timeout)
            pids = lab.sshd_pids
            timed(parallel, lab.hosts[:2], pids)  # warm-up: imports, first key exchange
            parallel_s, cpu_s, sshd_s, results = timed(parallel, hosts, pids)
            ok = sum(r.ok for r in results)
            errors = sorted({r.error for r in results if r.error})
            if errors:
                print('errors:', '; '.join(errors))
            slowest = max((r.seconds for r in results if r.ok), default=0.0)
            print(f'parallel: {len(hosts)} robots in {parallel_s:.2f} s, {ok} answered '
                  f'(slowest answer {slowest:.2f} s), {len(hosts) - ok} did not (timeout '
                  f'{args.timeout:g} s); concurrency {args.concurrency}; CPU: poller '
                  f'{cpu_s:.2f} s, the robots\' sshd {sshd_s:.2f} s '
                  f'({sshd_s / max(ok, 1) * 1000:.0f} ms a poll, all on this machine)')
            serial_s, cpu_s, sshd_s, serial_results = timed(serial, hosts, pids)
            serial_ok = sum(r.ok for r in serial_results)
            per_host = [r.seconds for r in serial_results if r.ok]
            mean = sum(per_host) / len(per_host) if per_host else 0.0
            print(f'serial:   {len(hosts)} robots in {serial_s:.2f} s, {serial_ok} answered '
                  f'({mean * 1000:.0f} ms per answering robot, {args.timeout:g} s per hang); '
                  f'CPU: poller {cpu_s:.2f} s, sshd {sshd_s:.2f} s')
        finally:
            stop()
    print(f'hosts={len(hosts)} hanging={args.hanging} answered={ok} '
          f'parallel_s={parallel_s:.2f} serial_s={serial_s:.2f} '
          f'speedup={serial_s / parallel_s:.1f}')
    return 0 if ok == answering else 1


if __name__ == '__main__':
    sys.exit(main())
