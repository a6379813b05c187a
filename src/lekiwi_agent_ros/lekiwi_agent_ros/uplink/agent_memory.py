"""AgentMemory: RSS and USS of the agent's own processes, for its heartbeat (issue 20).

The agent runs as one process by default, or as several under `ros2 launch`. Its processes are
the uplink's own and every process of the same session (`ps -o sid`) whose command line names
the agent's package: the nodes a launch file started beside it, not the robot's other ROS
processes. RSS counts the shared library pages every ROS process maps (about 35 MB here), USS
only what the agent's processes alone hold, so both go (ENVIRONMENT.md: "report RSS, PSS and
USS"); the fleet's memory guards read either (`agent_memory_mb` RSS, what `ps` and `top`
show an operator; `agent_uss_mb` USS, what grows when the agent leaks).

Read from `/proc/<pid>/smaps_rollup` (`Rss`, `Private_Clean` + `Private_Dirty`), at most once
per `period_s`: a sample costs a few hundred microseconds per process. `proc` and `now` come
in as arguments, so the tests give it a fake /proc.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

MARKER = 'lekiwi_agent_ros'
MB = 1e6  # MB of 10^6 bytes, as the fleet server reads them


def _session_id(proc: Path, pid: str) -> int | None:
    try:
        stat = (proc / pid / 'stat').read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(')') + 2:].split()
    try:
        return int(fields[3])  # field 6, the session id
    except (IndexError, ValueError):
        return None


def _rollup(proc: Path, pid: str) -> tuple[int, int] | None:
    """Return (rss, uss) in bytes of one process, or None when it is gone or unreadable."""
    try:
        text = (proc / pid / 'smaps_rollup').read_text()
    except OSError:
        return None
    rss = uss = 0
    for line in text.splitlines():
        name, _, rest = line.partition(':')
        if name in ('Rss', 'Private_Clean', 'Private_Dirty'):
            kib = int(rest.split()[0]) * 1024
            if name == 'Rss':
                rss = kib
            else:
                uss += kib
    return rss, uss


class AgentMemory:
    """Sum RSS and USS over the agent's processes; sample at most once per `period_s`."""

    def __init__(self, now: Callable[[], float], *, proc: str = '/proc',
                 pid: int | None = None, period_s: float = 5.0) -> None:
        self._now = now
        self._proc = Path(proc)
        self._pid = str(os.getpid() if pid is None else pid)
        self._period_s = period_s
        self._at: float | None = None
        self._last: tuple[float | None, float | None] = (None, None)

    def pids(self) -> list[str]:
        """Return the agent's process ids: this one and its session's agent processes."""
        own_sid = _session_id(self._proc, self._pid)
        found = [self._pid]
        if own_sid is None:
            return found
        try:
            entries = [e for e in os.listdir(self._proc) if e.isdigit() and e != self._pid]
        except OSError:
            return found
        marker = MARKER.encode()
        for pid in entries:
            if _session_id(self._proc, pid) != own_sid:
                continue
            try:
                cmdline = (self._proc / pid / 'cmdline').read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                found.append(pid)
        return found

    def sample(self) -> tuple[float | None, float | None]:
        """Return (rss_mb, uss_mb) of the agent's processes (None where /proc tells nothing)."""
        now = self._now()
        if self._at is not None and now - self._at < self._period_s:
            return self._last
        rss = uss = 0
        seen = False
        for pid in self.pids():
            got = _rollup(self._proc, pid)
            if got is not None:
                seen = True
                rss, uss = rss + got[0], uss + got[1]
        self._at = now
        self._last = (round(rss / MB, 1), round(uss / MB, 1)) if seen else (None, None)
        return self._last
