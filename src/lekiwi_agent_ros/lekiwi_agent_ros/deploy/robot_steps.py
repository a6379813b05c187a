"""The robot's real deploy steps: files under one root, the supervised app, the health rules.

Layout under `root`: `releases/<version>/` (assembled trees), `manifests/<version>.json`,
`cache/` (blobs by digest), `current` (symlink to the running release), `state.json` (the
executor's), `app.pid`. What the steps need from ROS (topic rates, teleop status, battery) comes
in as callables, so this module runs and is tested without rclpy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lekiwi_agent_ros.deploy import manifest as mf
from lekiwi_agent_ros.deploy.executor import Goal, Refused, StepFailed
from lekiwi_agent_ros.deploy.health import HealthReading, HealthRules, problems
from lekiwi_agent_ros.deploy.request_proof import RequestProofError, load_prover
from lekiwi_agent_ros.deploy.supervisor import AppSupervisor
from lekiwi_agent_ros.deploy.transfer import (
    BlobFetcher,
    RateLimiter,
    TransferError,
    assemble,
    installed_blobs,
)


@dataclass(frozen=True, slots=True)
class StepsConfig:
    """Settings of the robot's deploy steps (the node's parameters)."""

    root: Path
    server_url: str  # e.g. http://127.0.0.1:8080 ; blobs at <server_url>/api/v1/blobs/<sha>
    robot_id: str
    token: str
    bandwidth_bytes_per_s: float = 0.0
    min_free_bytes: int = 0
    min_battery_percent: float = 0.0
    teleop_wait_s: float = 60.0
    lock_on_operator_present: bool = True
    check_command: tuple[str, ...] = ()
    poll_s: float = 0.1
    # The admission key its token may be bound to ('' or absent: token only); a key-bound
    # robot proves it at each download (request_proof.py).
    key_file: str = ''


class RobotSteps:
    """DeploySteps of a real robot."""

    def __init__(self, config: StepsConfig, supervisor: AppSupervisor, rules: HealthRules, *,
                 topic_rates: Callable[[float], dict[str, float]] = lambda window: {},
                 teleop: Callable[[], tuple[bool, bool]] = lambda: (False, False),
                 battery_percent: Callable[[], float | None] = lambda: None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.supervisor = supervisor
        self.rules = rules
        self._rates = topic_rates
        self._teleop = teleop
        self._battery = battery_percent
        self._sleep = sleep
        for sub in ('releases', 'manifests', 'cache'):
            (config.root / sub).mkdir(parents=True, exist_ok=True)
        self._manifest: mf.Manifest | None = None
        self.started_at = 0.0
        self._prover = load_prover(config.server_url, config.robot_id, config.token,
                                   os.path.expanduser(config.key_file))

    # -- paths -------------------------------------------------------------------------------
    def release_dir(self, version: str) -> Path:
        return self.config.root / 'releases' / version

    def _manifest_path(self, version: str) -> Path:
        return self.config.root / 'manifests' / f'{version}.json'

    def installed_manifest(self, version: str) -> mf.Manifest | None:
        try:
            return mf.parse_manifest(self._manifest_path(version).read_bytes())
        except (OSError, mf.ManifestError):
            return None

    def current_version(self) -> str:
        try:
            return os.readlink(self.config.root / 'current').rsplit('/', 1)[-1]
        except OSError:
            return ''

    # -- phases ------------------------------------------------------------------------------
    def _get(self, url: str) -> bytes:
        request = urllib.request.Request(url)
        request.add_header('Authorization', f'Bearer {self.config.token}')
        request.add_header('X-Robot-Id', self.config.robot_id)
        try:
            for name, value in self._proof('GET', url).items():
                request.add_header(name, value)
        except RequestProofError as exc:
            raise StepFailed(f'manifest: {exc}') from None
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise StepFailed(f'manifest: HTTP {exc.code} {exc.reason}') from None
        except (urllib.error.URLError, OSError) as exc:
            raise StepFailed(f'manifest: {exc}') from None

    def download(self, goal: Goal, cancelled: Callable[[], bool]) -> tuple[int, int]:
        data = self._get(goal.manifest_url)
        if hashlib.sha256(data).hexdigest() != goal.manifest_sha256:
            raise StepFailed('manifest does not match its sha256')
        try:
            manifest = mf.parse_manifest(data)
        except mf.ManifestError as exc:
            raise StepFailed(f'manifest refused: {exc}') from None
        if manifest.version != goal.release_version:
            raise StepFailed(f'manifest is of {manifest.version}, not {goal.release_version}')
        self._manifest = manifest
        current = self.current_version()
        have = installed_blobs(self.installed_manifest(current),
                               self.release_dir(current) if current else None)
        fetcher = self._fetcher(cancelled)
        plan = mf.diff(manifest, set(have) | {d for d in manifest.digests()
                                              if fetcher.cached(d) is not None})
        moved = 0
        try:
            for digest, size in plan.fetch.items():
                moved += fetcher.fetch(digest, size)
        except TransferError as exc:
            raise StepFailed(str(exc)) from None
        return moved, plan.full_bytes

    def _fetcher(self, cancelled: Callable[[], bool]) -> BlobFetcher:
        return BlobFetcher(f'{self.config.server_url.rstrip("/")}/api/v1/blobs',
                           self.config.token, self.config.root / 'cache',
                           rate=RateLimiter(self.config.bandwidth_bytes_per_s),
                           cancelled=cancelled, robot_id=self.config.robot_id,
                           proof=self._proof)

    def _proof(self, method: str, url: str) -> dict[str, str]:
        if self._prover is None:
            return {}
        return self._prover.headers(method, url)

    def _sources(self) -> dict[str, Path]:
        assert self._manifest is not None
        current = self.current_version()
        sources = installed_blobs(self.installed_manifest(current),
                                  self.release_dir(current) if current else None)
        for digest in self._manifest.digests():
            cached = self.config.root / 'cache' / digest
            if cached.exists():
                sources[digest] = cached
        return sources

    def verify(self, goal: Goal) -> None:
        if self._manifest is None:
            raise StepFailed('no manifest downloaded')
        missing = set(self._manifest.digests()) - set(self._sources())
        if missing:
            raise StepFailed(f'{len(missing)} blobs missing after download')

    def stage(self, goal: Goal) -> None:
        assert self._manifest is not None
        try:
            assemble(self._manifest, self.release_dir(goal.release_version), self._sources())
        except TransferError as exc:
            raise StepFailed(str(exc)) from None
        self._manifest_path(goal.release_version).write_bytes(mf.manifest_json(self._manifest))

    def pre_check(self, goal: Goal, cancelled: Callable[[], bool]) -> None:
        free = shutil.disk_usage(self.config.root).free
        if free < self.config.min_free_bytes:
            raise Refused(f'{free >> 20} MB free, needs {self.config.min_free_bytes >> 20} MB')
        battery = self._battery()
        if battery is not None and battery < self.config.min_battery_percent:
            raise Refused(f'battery {battery:.0f} % below {self.config.min_battery_percent:g} %')
        if goal.force:
            return
        deadline = time.monotonic() + self.config.teleop_wait_s
        while True:
            active, present = self._teleop()
            busy = active or (present and self.config.lock_on_operator_present)
            if not busy:
                return
            if cancelled():
                raise StepFailed('cancelled while waiting for teleoperation to end')
            if time.monotonic() >= deadline:
                who = 'someone is teleoperating' if active else 'an operator is connected'
                raise Refused(f'{who} (waited {self.config.teleop_wait_s:g} s)')
            self._sleep(self.config.poll_s)

    def switch(self, version: str) -> None:
        target = self.release_dir(version)
        if not target.is_dir():
            raise StepFailed(f'release {version} is not installed')
        link = self.config.root / 'current'
        tmp = self.config.root / 'current.tmp'
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.join('releases', version), tmp)
        os.replace(tmp, link)  # atomic: `current` names the old or the new release, never none
        try:
            self.supervisor.start(version, target)
        except OSError as exc:
            raise StepFailed(f'could not start the application: {exc}') from None
        self.started_at = time.monotonic()

    def _check_command(self) -> bool | None:
        if not self.config.check_command:
            return None
        try:
            return subprocess.run(list(self.config.check_command), timeout=30,  # noqa: S603
                                  cwd=self.config.root / 'current',
                                  capture_output=True).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def reading(self, window_s: float) -> HealthReading:
        """Measure the application now (rates over the last `window_s`)."""
        first = self.supervisor.sample()
        self._sleep(min(0.2, window_s))
        second = self.supervisor.sample()
        span = max(second.at - first.at, 1e-3)
        cpu = 100.0 * (second.cpu_seconds - first.cpu_seconds) / span
        return HealthReading(second.alive, time.monotonic() - self.started_at,
                             self._rates(window_s), second.rss_bytes, cpu)

    def post_check(self, version: str, timeout_s: float, cancelled: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout_s
        found: list[str] = ['not checked']
        while time.monotonic() < deadline:
            if cancelled():
                raise StepFailed('cancelled during post-check')
            window = max(0.5, min(2.0, time.monotonic() - self.started_at))
            reading = self.reading(window)
            found = problems(self.rules, reading)
            if not reading.alive:
                break
            if not found:
                check = self._check_command()
                if check is not False:
                    return
                found = ['the check command failed']
            self._sleep(self.config.poll_s)
        raise StepFailed('unhealthy: ' + '; '.join(found))

    def discard(self, version: str) -> None:
        if version and version != self.current_version():
            shutil.rmtree(self.release_dir(version), ignore_errors=True)
            self._manifest_path(version).unlink(missing_ok=True)

    def ensure_running(self, version: str) -> None:
        if self.supervisor.release == version and self.supervisor.alive():
            return
        if self.supervisor.adopt(version) and self.current_version() == version:
            return  # the application of a killed executor runs the right release: keep it
        self.switch(version)  # stops an orphan of a killed executor first (pid file)


def default_command() -> Sequence[str]:
    """Return the default application command: the release's launch file."""
    return ('ros2', 'launch', '{release}/launch/robot.launch.py')
