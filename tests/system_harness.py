"""Start, watch and stop the real processes of a system test: server, agent, publishers."""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

READY_MARK = 'lekiwi-fleet-server ready'


def _libpq(url: str) -> str:
    return make_url(url).set(drivername='postgresql').render_as_string(hide_password=False)


def create_database(base_url: str, name: str) -> str:
    """Create database `name` next to base_url's and return its SQLAlchemy URL."""
    with psycopg.connect(_libpq(base_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(base_url: str, url: str) -> None:
    """Drop a database made by create_database, disconnecting its sessions."""
    name = make_url(url).database
    for attempt in range(8):
        try:
            with psycopg.connect(_libpq(base_url), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.errors.InsufficientPrivilege:
            # An autovacuum worker is on the database, which only a superuser may end; it is
            # done within moments.
            if attempt == 7:
                raise
            time.sleep(0.2 * (attempt + 1))


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
               message: str = 'condition') -> Any:
    """Poll predicate until it returns a truthy value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {message}')
        time.sleep(interval)


class ManagedProcess:
    """A child process whose combined output is collected line by line."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str],
                 cwd: Path | None = None) -> None:
        self.name = name
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.popen = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._lock:
                self.lines.append(line.rstrip('\n'))

    def output(self) -> str:
        """Return everything the process printed so far."""
        with self._lock:
            return '\n'.join(self.lines)

    def find_line(self, mark: str) -> str | None:
        """Return the first output line containing mark, if any."""
        with self._lock:
            return next((line for line in self.lines if mark in line), None)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send sig to the whole process group (the ROS bootstrapper re-executes once)."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGKILL:
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the process to stop (SIGINT, as Ctrl-C), then kill it if it lingers."""
        if not self.alive():
            return
        self.kill(signal.SIGINT)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)


class ProcessGroup:
    """All processes of one test; stop_all() leaves none behind."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> ManagedProcess:
        process = ManagedProcess(name, argv, {**os.environ, **(env or {})}, cwd)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def dump(self) -> str:
        """Return every process's output, for assertion messages."""
        return '\n'.join(f'--- {p.name} (exit {p.popen.poll()})\n{p.output()[-4000:]}'
                         for p in self.processes)


class FleetServerProcess:
    """The real fleet server as a child process, with the REST calls the tests need."""

    def __init__(self, processes: ProcessGroup, database_url: str, data_dir: Path,
                 env: dict[str, str] | None = None, args: Sequence[str] = ()) -> None:
        self.processes = processes
        self.args = tuple(args)  # after `serve`: `--role gateway`, say
        self.database_url = database_url
        self.data_dir = data_dir
        self.admin_token = secrets.token_hex(24)
        self.extra_env = env or {}
        self.api_url = ''
        self.gateway_url = ''
        self.gateway_port = 0
        self.api_port = 0
        self.process: ManagedProcess | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (on the same ports as before when restarted) and wait until ready."""
        env = {
            'LEKIWI_DATABASE_URL': self.database_url,
            'LEKIWI_DATA_DIR': str(self.data_dir),
            'LEKIWI_API_HOST': '127.0.0.1',
            'LEKIWI_GATEWAY_HOST': '127.0.0.1',
            'LEKIWI_API_PORT': str(self.api_port),
            'LEKIWI_GATEWAY_PORT': str(self.gateway_port),
            'LEKIWI_BOOTSTRAP_ADMIN_TOKEN': self.admin_token,
            'LEKIWI_LOG_LEVEL': 'warning',
            **self.extra_env,
        }
        self.process = self.processes.start(
            'fleet-server', [sys.executable, '-m', 'lekiwi_fleet_server', 'serve', *self.args],
            env)
        line = wait_until(lambda: self._ready_line(), timeout, message='the server to start')
        fields = dict(part.split('=', 1) for part in line.split() if '=' in part)
        if 'api' not in fields:  # `--role writer` serves neither
            return
        self.api_url = fields['api']
        self.gateway_url = fields['gateway']
        self.api_port = int(self.api_url.rsplit(':', 1)[1])
        self.gateway_port = int(self.gateway_url.rstrip('/').rsplit(':', 1)[1])

    def _ready_line(self) -> str | None:
        assert self.process is not None
        if not self.process.alive():
            raise AssertionError(f'the server exited:\n{self.process.output()}')
        return self.process.find_line(READY_MARK)

    def kill(self) -> None:
        """SIGKILL the server: no shutdown handler runs."""
        assert self.process is not None
        self.process.kill(signal.SIGKILL)

    def upload_release(self, version: str) -> None:
        """Upload a one-file release tarball (its launch file) through the REST API as admin."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode='w:gz') as tar:
            data = f'# release {version}\n'.encode()
            info = tarfile.TarInfo('launch/robot.launch.py')
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        request = urllib.request.Request(
            f'{self.api_url}/api/v1/releases?version={version}', data=buf.getvalue(),
            method='POST', headers={'Authorization': f'Bearer {self.admin_token}',
                                    'Content-Type': 'application/gzip'})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Call the REST API as the bootstrap admin and return the decoded JSON body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.api_url + path, data=data, method=method,
            headers={'Authorization': f'Bearer {self.admin_token}',
                     'Content-Type': 'application/json'})
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def enrol(self, robot_id: str, tags: Sequence[str] = ()) -> str:
        """Enrol a robot through the REST API and return its token."""
        return self.request('POST', '/api/v1/robots',
                            {'robot_id': robot_id, 'tags': list(tags)})['token']

    def robot(self, robot_id: str) -> dict[str, Any] | None:
        """Return the robot's REST representation, or None when it is not listed."""
        try:
            robots = self.request('GET', '/api/v1/robots')
        except (urllib.error.URLError, ConnectionError):
            return None
        return next((r for r in robots if r['robot_id'] == robot_id), None)


def ros_env(domain: str) -> dict[str, str]:
    """Environment of a ROS process of the test: its own domain, loopback only."""
    return {'ROS_DOMAIN_ID': domain, 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
            'PYTHONUNBUFFERED': '1'}


def start_agent(processes: ProcessGroup, domain: str, *, robot_id: str, server_url: str,
                token_file: Path, outbox_path: Path, extra: Sequence[str] = ()) -> ManagedProcess:
    """Start the one-process agent with the parameters a robot would give it."""
    argv = [sys.executable, '-m', 'lekiwi_agent_ros.agent', '--ros-args',
            '-p', f'robot_id:={robot_id}', '-p', f'server_url:={server_url}',
            '-p', f'token_file:={token_file}', '-p', f'outbox_path:={outbox_path}', *extra]
    return processes.start(f'agent-{robot_id}', argv, ros_env(domain))
