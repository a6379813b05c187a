"""The robot application as a supervised child process, with its pid on disk.

The child runs in a session of its own (so stopping it stops everything it started). Its pid
and release are written to a pid file before `start` returns: an executor killed while the
application runs finds it on restart and stops it before starting the release it commits to,
so two releases never run side by side and a half-switched one is never left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf('SC_CLK_TCK')
_PAGE = os.sysconf('SC_PAGE_SIZE')


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """Resource use of the application at one moment."""

    alive: bool
    rss_bytes: int
    cpu_seconds: float
    at: float


class AppSupervisor:
    """Start, watch and stop the application of one release at a time."""

    def __init__(self, command: Sequence[str], pid_file: Path,
                 env: Mapping[str, str] | None = None, stop_timeout_s: float = 10.0) -> None:
        self._command = list(command)
        self._pid_file = pid_file
        self._env = dict(env) if env is not None else None
        self._stop_timeout = stop_timeout_s
        self._child: subprocess.Popen[bytes] | None = None
        self.release: str = ''

    def command_for(self, release_dir: Path) -> list[str]:
        """Return the command line with `{release}` replaced by the release directory."""
        return [part.replace('{release}', str(release_dir)) for part in self._command]

    def start(self, version: str, release_dir: Path) -> int:
        """Stop whatever runs, start the application of `release_dir`; return its pid."""
        self.stop()
        self._child = subprocess.Popen(  # noqa: S603 - the command is the robot's own parameter
            self.command_for(release_dir), cwd=release_dir, env=self._env,
            start_new_session=True, stdin=subprocess.DEVNULL)
        self.release = version
        tmp = self._pid_file.with_name(self._pid_file.name + '.tmp')
        tmp.write_text(json.dumps({'pid': self._child.pid, 'release': version}))
        os.replace(tmp, self._pid_file)
        return self._child.pid

    def adopt(self, version: str) -> bool:
        """Take over a running application of `version` a previous executor started."""
        try:
            recorded = json.loads(self._pid_file.read_text())
        except (OSError, ValueError):
            return False
        pid = int(recorded.get('pid', 0))
        if recorded.get('release') != version or pid <= 0 or not _pid_alive(pid):
            return False
        self.release = version
        return True

    def pid(self) -> int | None:
        """Return the pid of the application this supervisor (or a previous one) started."""
        if self._child is not None:
            return self._child.pid
        try:
            return int(json.loads(self._pid_file.read_text())['pid'])
        except (OSError, ValueError, KeyError):
            return None

    def alive(self) -> bool:
        """Tell whether the application process still runs."""
        if self._child is not None:
            return self._child.poll() is None
        pid = self.pid()
        return pid is not None and _pid_alive(pid)

    def stop(self) -> None:
        """Stop the application (its whole session): SIGTERM, then SIGKILL after the timeout."""
        pid = self.pid()
        if pid is not None and _pid_alive(pid):
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + self._stop_timeout
            while time.monotonic() < deadline and _pid_alive(pid, self._child):
                time.sleep(0.05)
            if _pid_alive(pid, self._child):
                _signal_group(pid, signal.SIGKILL)
        if self._child is not None:
            try:
                self._child.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                pass
        self._child = None
        self.release = ''
        self._pid_file.unlink(missing_ok=True)

    def sample(self) -> ProcessSample:
        """Return the application's liveness, RSS and CPU time from /proc."""
        now = time.monotonic()
        pid = self.pid()
        if pid is None or not self.alive():
            return ProcessSample(False, 0, 0.0, now)
        try:
            stat = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
            statm = Path(f'/proc/{pid}/statm').read_text().split()
        except OSError:
            return ProcessSample(False, 0, 0.0, now)
        cpu = (int(stat[11]) + int(stat[12])) / _CLK_TCK  # utime + stime
        return ProcessSample(True, int(statm[1]) * _PAGE, cpu, now)


def _pid_alive(pid: int, child: subprocess.Popen[bytes] | None = None) -> bool:
    if child is not None and child.pid == pid:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
