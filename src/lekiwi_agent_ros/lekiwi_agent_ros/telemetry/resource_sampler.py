"""Resource usage of the robot's computer from /proc and /sys, cheaply (well under 1 ms a sample).

Pure apart from reading the files it is pointed at: the roots, statvfs and the clock are
arguments, so tests give it a fake /proc. Field names are those of `ResourceUsage`; every value
is a float, NaN when it cannot be read on this machine (or not yet: rates need two samples).
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

FIELDS: tuple[str, ...] = (
    'cpu_percent',
    'load_average_1min',
    'memory_used_bytes',
    'memory_total_bytes',
    'disk_used_bytes',
    'disk_total_bytes',
    'temperature_c',
    'battery_voltage_v',
    'battery_percent',
    'network_tx_bytes_per_s',
    'network_rx_bytes_per_s',
    'uptime_s',
)
NAN = math.nan


@dataclass(frozen=True)
class SamplerConfig:
    """Where the sampler reads from and how long a battery reading stays valid."""

    proc_root: str = '/proc'
    thermal_root: str = '/sys/class/thermal'
    disk_path: str = '/'
    battery_timeout_s: float = 10.0
    # Two nodes of one process may share a sampler; a second call this soon reuses the sample.
    reuse_within_s: float = 0.25


def _read(path: str) -> str | None:
    try:
        with open(path, encoding='ascii', errors='replace') as handle:
            return handle.read()
    except OSError:
        return None


class ResourceSampler:
    """Samples CPU, load, memory, disk, temperature, battery, network rates and uptime."""

    def __init__(
        self,
        now: Callable[[], float],
        config: SamplerConfig | None = None,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
    ) -> None:
        self._now = now
        self._config = config or SamplerConfig()
        self._statvfs = statvfs
        proc = self._config.proc_root
        self._stat_path = os.path.join(proc, 'stat')
        self._loadavg_path = os.path.join(proc, 'loadavg')
        self._meminfo_path = os.path.join(proc, 'meminfo')
        self._netdev_path = os.path.join(proc, 'net', 'dev')
        self._uptime_path = os.path.join(proc, 'uptime')
        # Thermal zones are fixed at boot: find them once.
        self._thermal_paths = sorted(
            glob.glob(os.path.join(self._config.thermal_root, 'thermal_zone*', 'temp'))
        )
        self._battery: tuple[float, float, float] | None = None  # voltage, percent, at
        self._last_sample: dict[str, float] | None = None
        self._last_sample_at = -math.inf
        # Prime the counters so the first real sample already has rates.
        self._cpu = self._read_cpu()
        self._net = self._read_net()
        self._net_at = self._now()

    def set_battery(self, voltage_v: float, fraction: float, present: bool = True) -> None:
        """Record a `sensor_msgs/BatteryState` reading (percentage as a 0..1 fraction)."""
        if not present:
            self._battery = (NAN, NAN, self._now())
            return
        percent = fraction * 100.0 if math.isfinite(fraction) else NAN
        if not 0.0 <= percent <= 100.0:
            percent = NAN
        voltage = voltage_v if math.isfinite(voltage_v) and voltage_v >= 0.0 else NAN
        self._battery = (voltage, percent, self._now())

    def sample(self) -> dict[str, float]:
        """Return every field of FIELDS, NaN where unknown."""
        now = self._now()
        if self._last_sample is not None and now - self._last_sample_at < (
            self._config.reuse_within_s
        ):
            return dict(self._last_sample)
        values = dict.fromkeys(FIELDS, NAN)
        values['cpu_percent'] = self._cpu_percent()
        values['load_average_1min'] = self._load_average()
        values['memory_used_bytes'], values['memory_total_bytes'] = self._memory()
        values['disk_used_bytes'], values['disk_total_bytes'] = self._disk()
        values['temperature_c'] = self._temperature()
        values['battery_voltage_v'], values['battery_percent'] = self._battery_values(now)
        values['network_tx_bytes_per_s'], values['network_rx_bytes_per_s'] = self._net_rates(now)
        values['uptime_s'] = self._uptime()
        self._last_sample = values
        self._last_sample_at = now
        return dict(values)

    def _read_cpu(self) -> tuple[int, int] | None:
        text = _read(self._stat_path)
        if not text or not text.startswith('cpu '):
            return None
        try:
            numbers = [int(part) for part in text.split('\n', 1)[0].split()[1:9]]
        except ValueError:
            return None
        if len(numbers) < 4:
            return None
        idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0)  # idle + iowait
        return sum(numbers), idle

    def _cpu_percent(self) -> float:
        current = self._read_cpu()
        previous, self._cpu = self._cpu, current
        if current is None or previous is None:
            return NAN
        total = current[0] - previous[0]
        idle = current[1] - previous[1]
        if total <= 0 or idle < 0:
            return NAN
        return min(100.0, max(0.0, 100.0 * (total - idle) / total))

    def _load_average(self) -> float:
        text = _read(self._loadavg_path)
        try:
            return float(text.split()[0]) if text else NAN
        except ValueError:
            return NAN

    def _memory(self) -> tuple[float, float]:
        text = _read(self._meminfo_path)
        if not text:
            return NAN, NAN
        found: dict[str, float] = {}
        for line in text.splitlines():
            key, _, rest = line.partition(':')
            if key in ('MemTotal', 'MemAvailable'):
                try:
                    found[key] = float(rest.split()[0]) * 1024.0
                except (ValueError, IndexError):
                    return NAN, NAN
                if len(found) == 2:
                    break
        total = found.get('MemTotal', NAN)
        available = found.get('MemAvailable', NAN)
        return max(0.0, total - available) if len(found) == 2 else NAN, total

    def _disk(self) -> tuple[float, float]:
        try:
            stat = self._statvfs(self._config.disk_path)
        except OSError:
            return NAN, NAN
        total = float(stat.f_blocks * stat.f_frsize)
        used = float((stat.f_blocks - stat.f_bfree) * stat.f_frsize)
        return used, total

    def _temperature(self) -> float:
        hottest = NAN
        for path in self._thermal_paths:
            text = _read(path)
            try:
                value = int(text) / 1000.0 if text else NAN
            except ValueError:
                continue
            if math.isfinite(value) and (math.isnan(hottest) or value > hottest):
                hottest = value
        return hottest

    def _battery_values(self, now: float) -> tuple[float, float]:
        if self._battery is None:
            return NAN, NAN
        voltage, percent, at = self._battery
        if now - at > self._config.battery_timeout_s:
            return NAN, NAN  # the battery topic went quiet: do not report an old reading
        return voltage, percent

    def _read_net(self) -> tuple[int, int] | None:
        text = _read(self._netdev_path)
        if not text:
            return None
        rx = tx = 0
        for line in text.splitlines()[2:]:
            name, colon, rest = line.partition(':')
            if not colon or name.strip() == 'lo':
                continue
            parts = rest.split()
            try:
                rx += int(parts[0])
                tx += int(parts[8])
            except (ValueError, IndexError):
                return None
        return rx, tx

    def _net_rates(self, now: float) -> tuple[float, float]:
        current = self._read_net()
        previous, previous_at = self._net, self._net_at
        self._net, self._net_at = current, now
        elapsed = now - previous_at
        if current is None or previous is None or elapsed <= 0:
            return NAN, NAN
        rx = current[0] - previous[0]
        tx = current[1] - previous[1]
        if rx < 0 or tx < 0:
            return NAN, NAN  # an interface went away or its counters were reset
        return tx / elapsed, rx / elapsed

    def _uptime(self) -> float:
        text = _read(self._uptime_path)
        try:
            return float(text.split()[0]) if text else NAN
        except ValueError:
            return NAN
