"""Two fleet server processes (gateway + API each) on one PostgreSQL, one Redis, one NATS.

A robot's second connection, to the other gateway, replaces the first; its presence stays
online; a command sent through either server's API reaches it through the gateway holding it.
Then the gateway holding two robots is SIGKILLed: the robot that reconnects to the survivor
is online at once, the one that does not shows offline once the dead gateway's claims expired
(presence_ttl_s). A deployment driven by one gateway process (the lease holder) reaches a
robot held by the other, whose result completes it. The robots here are WebSocket clients
speaking the robot protocol (a stand-in for the agent, whose uplink has its own system tests);
everything on the server side is real.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from system_harness import FleetServerProcess, ProcessGroup, wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).parents[1] / 'src/lekiwi_fleet_server/test/broker'))
from redis_and_nats import running_redis_and_nats  # noqa: E402

TTL_S = 2.0


class RobotLink:
    """One robot connection: authenticates, answers commands and Deploy goals, notes its close."""

    def __init__(self, url: str, robot_id: str, token: str, answer: str) -> None:
        self.ws: ClientConnection = connect(url, open_timeout=10)
        self.ws.send(json.dumps({'op': 'auth', 'robot_id': robot_id, 'token': token,
                                 'protocol': ['lekiwi-fleet/1']}))
        assert json.loads(self.ws.recv(timeout=10))['msg'] == 'authenticated'
        self.answer = answer
        self.close_code: int | None = None
        self.frames: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for raw in self.ws:
                frame = json.loads(raw)
                self.frames.put(frame)
                if frame.get('op') == 'call_service':
                    self.ws.send(json.dumps({
                        'op': 'service_response', 'service': 'fleet/command', 'id': frame['id'],
                        'result': True, 'values': {'accepted': True, 'message': self.answer}}))
                elif frame.get('op') == 'send_action_goal':  # a Deploy goal: done at once
                    self.ws.send(json.dumps({
                        'op': 'action_result', 'id': frame['id'], 'action': frame['action'],
                        'status': 4, 'result': True, 'values': {
                            'success': True, 'status': 'succeeded', 'message': 'healthy',
                            'final_version': frame['args']['release_version'],
                            'previous_version': '1', 'rolled_back': False,
                            'transferred_bytes': 10, 'full_bytes': 100, 'duration_s': 0.1}}))
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code

    @property
    def closed(self) -> bool:
        return not self._thread.is_alive()

    def close(self) -> None:
        self.ws.close()
        self._thread.join(5)


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with running_redis_and_nats(tmp_path) as (redis, nats):
        yield redis.url, nats.url


def status_of(server: FleetServerProcess, robot_id: str) -> tuple[str, bool] | None:
    try:
        robot = server.request('GET', f'/api/v1/robots/{robot_id}')
    except (urllib.error.URLError, ConnectionError):
        return None
    return robot['status'], robot['connected']


def command(server: FleetServerProcess, robot_id: str) -> dict[str, Any]:
    return server.request('POST', f'/api/v1/robots/{robot_id}/commands',
                          {'command_type': 'ping', 'payload': {}})


def test_robot_moves_between_gateways_and_survives_a_gateway_sigkill(
        pg_url: str, brokers: tuple[str, str], processes: ProcessGroup,
        tmp_path: Path) -> None:
    redis_url, nats_url = brokers
    servers = []
    for name in ('gw-a', 'gw-b'):
        server = FleetServerProcess(processes, pg_url, tmp_path / name, env={
            'LEKIWI_REDIS_URL': redis_url, 'LEKIWI_NATS_URL': nats_url,
            'LEKIWI_GATEWAY_ID': name, 'LEKIWI_PRESENCE_TTL_S': str(TTL_S),
            'LEKIWI_WRITER_PROCESS': 'false', 'LEKIWI_COMMAND_TIMEOUT_S': '10'})
        if servers:
            server.admin_token = servers[0].admin_token  # one fleet, one admin
        server.start(timeout=60)
        servers.append(server)
    a, b = servers
    token = a.enrol('kiwi-move')
    # Each server's writer is a thread of its own process here (the writer role and its
    # NATS partitions, which give every robot one writer, come with the broker transport):
    # enrol each robot where it first connects, so that writer's cache starts from the truth.
    other_token = b.enrol('kiwi-stays')

    first = RobotLink(a.gateway_url, 'kiwi-move', token, answer='via a')
    wait_until(lambda: status_of(b, 'kiwi-move') == ('online', True), 20,
               message='the robot online on both APIs')
    assert command(b, 'kiwi-move')['message'] == 'via a'  # b's API -> NATS -> gateway a

    second = RobotLink(b.gateway_url, 'kiwi-move', token, answer='via b')
    wait_until(lambda: first.closed, 10, message='the first connection replaced')
    assert first.close_code == 4409
    replaced = [f for f in list(first.frames.queue) if f.get('code') == 'replaced']
    assert replaced and 'another gateway' in replaced[0]['msg']
    for server in (a, b):  # online throughout, and the command goes where the robot is now
        assert status_of(server, 'kiwi-move') == ('online', True)
        assert command(server, 'kiwi-move')['message'] == 'via b'
    events = a.request('GET', '/api/v1/robots/kiwi-move/events')
    offline = [e for e in events['events'] if e['type'] == 'RobotWentOffline']
    assert offline == [], offline  # the replaced session wrote no offline

    stays = RobotLink(b.gateway_url, 'kiwi-stays', other_token, answer='stays')
    wait_until(lambda: status_of(a, 'kiwi-stays') == ('online', True), 20,
               message='the second robot online')
    wait_until(lambda: any(e['type'] == 'RobotCameOnline' for e in a.request(
        'GET', '/api/v1/robots/kiwi-stays/events')['events']), 10,
        message='the second robot recorded online')
    b.kill()  # SIGKILL: no shutdown handler releases b's claims
    wait_until(lambda: second.closed and stays.closed, 10, message='b gone')
    again = RobotLink(a.gateway_url, 'kiwi-move', token, answer='via a again')
    wait_until(lambda: status_of(a, 'kiwi-move') == ('online', True), 10,
               message='the reconnected robot online')
    assert command(a, 'kiwi-move')['message'] == 'via a again'
    # The robot that did not reconnect: b's claim expires after the TTL and a reaps it.
    seen: list[Any] = []
    try:
        wait_until(lambda: seen.append(status_of(a, 'kiwi-stays'))
                   or seen[-1] == ('offline', False), TTL_S * 5,
                   message="b's claim on kiwi-stays to expire")
    except AssertionError as exc:
        raise AssertionError(f'{exc}; last seen {seen[-1]}') from None
    wait_until(lambda: any(e['type'] == 'RobotWentOffline' for e in a.request(
        'GET', '/api/v1/robots/kiwi-stays/events')['events']), 10,
        message='the expiry recorded as RobotWentOffline')
    assert status_of(a, 'kiwi-move') == ('online', True)
    again.close()



def test_a_deployment_driven_by_one_gateway_reaches_the_robots_of_the_other(
        pg_url: str, brokers: tuple[str, str], processes: ProcessGroup,
        tmp_path: Path) -> None:
    redis_url, nats_url = brokers
    env = {'LEKIWI_REDIS_URL': redis_url, 'LEKIWI_NATS_URL': nats_url,
           'LEKIWI_PRESENCE_TTL_S': str(TTL_S), 'LEKIWI_DEPLOYMENT_TICK_S': '0.2',
           'LEKIWI_FLAG_TICK_S': '0.2'}
    # The roles as deployed: one writer (it migrates the database), two gateways serving the API.
    FleetServerProcess(processes, pg_url, tmp_path / 'writer', env=env,
                       args=('--role', 'writer')).start(timeout=60)
    servers = []
    for name in ('gw-a', 'gw-b'):  # gw-a starts first: it takes the deployment engine's lease
        server = FleetServerProcess(processes, pg_url, tmp_path / name,
                                    env={**env, 'LEKIWI_GATEWAY_ID': name},
                                    args=('--role', 'gateway'))
        if servers:
            server.admin_token = servers[0].admin_token
        server.start(timeout=60)
        servers.append(server)
    a, b = servers
    near = RobotLink(a.gateway_url, 'kiwi-near', a.enrol('kiwi-near'), answer='a')
    far = RobotLink(b.gateway_url, 'kiwi-far', b.enrol('kiwi-far'), answer='b')
    try:
        for robot_id in ('kiwi-near', 'kiwi-far'):
            wait_until(lambda r=robot_id: status_of(a, r) == ('online', True), 20,
                       message=f'{robot_id} online')
        # Each robot's flags are delivered by the gateway whose registry claim holds it, once.
        for server, robot_id in ((a, 'kiwi-near'), (b, 'kiwi-far')):
            wait_until(lambda s=server, r=robot_id: s.request(
                'GET', f'/api/v1/robots/{r}/flags')['delivered'], 20,
                message=f'the flags of {robot_id} delivered')
        for robot in (near, far):
            calls = [f for f in list(robot.frames.queue) if f.get('op') == 'call_service']
            assert len(calls) == 1, calls
        b.upload_release('2')
        # Made through b's API; a's engine drives it: a's robot is local, b's is not.
        made = b.request('POST', '/api/v1/deployments', {
            'release_version': '2', 'robots': ['kiwi-near', 'kiwi-far'], 'waves': [1.0]})
        seen: list[Any] = []
        try:
            wait_until(lambda: seen.append(a.request(
                'GET', f'/api/v1/deployments/{made["deployment_id"]}'))
                or seen[-1]['status'] == 'completed', 30, message='the deployment to complete')
        except AssertionError as exc:
            raise AssertionError(f'{exc}; last seen {seen[-1]}') from None
        assert {r['robot_id']: r['state'] for r in seen[-1]['robots']} == {
            'kiwi-near': 'succeeded', 'kiwi-far': 'succeeded'}
        for robot in (near, far):  # one goal each: one engine drove, and it sent each once
            goals = [f for f in list(robot.frames.queue) if f.get('op') == 'send_action_goal']
            assert len(goals) == 1, goals
        # The fleet-wide duties' leases (leadership.py): each held by one of the two gateways,
        # a first to start.
        leases = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            holders = {duty: leases.get(f'lekiwi:lease:{duty}')
                       for duty in ('deployment-engine', 'flag-guards')}
        finally:
            leases.close()
        assert all(h is not None and h.startswith('gw-a|') for h in holders.values()), holders
    finally:
        near.close()
        far.close()
