"""Deployments through the real app and gateway: robots answer Deploy goals over websockets."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

from api_harness import ADMIN_TOKEN, Api, release_tar, robot_connection
from websockets.exceptions import ConnectionClosed


def push_release(api: Api, version: str) -> None:
    body = release_tar({'launch/robot.launch.py': f'app {version}'.encode()})
    response = api.client.post(f'/api/v1/releases?version={version}', content=body,
                               headers=api.admin)
    assert response.status_code == 201, response.text


class FakeRobotAgent:
    """A robot's uplink speaking the protocol's action frames; its executor is scripted."""

    def __init__(self, api: Api, robot_id: str, *, fail: bool = False) -> None:
        self.ws = robot_connection(api, robot_id, api.enrol(robot_id))
        self.fail = fail
        self.go = threading.Event()  # answers goals once set
        self.go.set()
        self.version = '1'
        self.goals: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                frame = json.loads(self.ws.recv(timeout=30))
                if frame.get('op') != 'send_action_goal':
                    continue
                self.goals.append(frame)
                self.go.wait(30)
                args = frame['args']
                ok = not self.fail or args['release_version'] == '1'
                previous, self.version = self.version, (args['release_version'] if ok
                                                        else self.version)
                self.ws.send(json.dumps({
                    'op': 'action_result', 'id': frame['id'], 'action': 'fleet/deploy',
                    'status': 4 if ok else 6, 'result': ok,
                    'values': {'success': ok, 'final_version': self.version,
                               'rolled_back': not ok, 'message': 'healthy' if ok else
                               'post_check: unhealthy', 'status': 'succeeded' if ok else
                               'rolled_back', 'transferred_bytes': 10, 'full_bytes': 100,
                               'duration_s': 0.1, 'previous_version': previous}}))
        except (ConnectionClosed, TimeoutError):
            return


def wait_status(api: Api, deployment_id: str, want: set[str], timeout_s: float = 30.0
                ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body = api.client.get(f'/api/v1/deployments/{deployment_id}', headers=api.viewer).json()
        if body['status'] in want:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def metric(api: Api, name: str, **labels: str) -> float | None:
    """Return one sample of /metrics (labels in the exposition's order), None when absent."""
    inner = ','.join(f'{k}="{v}"' for k, v in labels.items())
    key = f'{name}{{{inner}}}' if labels else name
    match = re.search(rf'^{re.escape(key)} (\S+)$', api.client.get('/metrics').text,
                      re.MULTILINE)
    return float(match.group(1)) if match else None


def test_a_good_release_rolls_out_wave_by_wave(api: Api) -> None:
    robots = [FakeRobotAgent(api, f'kiwi-{i}') for i in range(4)]
    push_release(api, '2')
    with api.client.websocket_connect('/api/v1/stream') as dash:
        dash.send_text(json.dumps({'op': 'auth', 'token': ADMIN_TOKEN}))
        assert json.loads(dash.receive_text())['type'] == 'snapshot'
        _good_rollout(api, robots)
        statuses = []
        while 'completed' not in statuses:
            update = json.loads(dash.receive_text())
            if update['type'] == 'deployment':
                statuses.append(update['deployment']['status'])
        assert update['deployment']['robots'] == {'succeeded': 4}
        assert len(update['deployment']['waves']) == 3


def _good_rollout(api: Api, robots: list[FakeRobotAgent]) -> None:
    created = api.client.post('/api/v1/deployments', headers=api.admin, json={
        'release_version': '2', 'all': True, 'waves': [0.25, 0.5, 1.0]})
    assert created.status_code == 201, created.text
    deployment_id = created.json()['deployment_id']
    assert created.json()['planned_waves'] == [1, 1, 2]
    again = api.client.post('/api/v1/deployments', headers=api.admin,
                            json={'release_version': '2', 'robots': ['kiwi-0']})
    assert again.status_code in (201, 409)  # refused while the first is active
    if again.status_code == 201:
        raise AssertionError('a second deployment to the same robot was accepted')
    done = wait_status(api, deployment_id, {'completed'})
    assert [w['succeeded'] for w in done['waves']] == [1, 1, 2]
    assert {r['state'] for r in done['robots']} == {'succeeded'}
    assert all(r.version == '2' for r in robots)
    goal = robots[0].goals[0]['args']
    assert goal['manifest_url'].endswith('/api/v1/releases/2/manifest')
    assert len(goal['manifest_sha256']) == 64
    listed = api.client.get('/api/v1/deployments', headers=api.viewer).json()
    assert listed[0]['deployment_id'] == deployment_id and listed[0]['status'] == 'completed'
    assert api.client.post(f'/api/v1/deployments/{deployment_id}/pause',
                           headers=api.admin).status_code == 409
    assert api.client.delete('/api/v1/releases/2', headers=api.admin).status_code == 204


def test_a_failing_first_wave_rolls_back_and_stops(api: Api) -> None:
    robots = [FakeRobotAgent(api, f'kiwi-{i}', fail=True) for i in range(3)]
    push_release(api, '1')
    push_release(api, '2')
    created = api.client.post('/api/v1/deployments', headers=api.admin, json={
        'release_version': '2', 'robots': ['kiwi-0', 'kiwi-1', 'kiwi-2'],
        'waves': [0.34, 1.0]}).json()
    in_use = api.client.delete('/api/v1/releases/2', headers=api.admin)
    done = wait_status(api, created['deployment_id'], {'rolled_back'})
    assert len(done['waves']) == 1 and done['waves'][0]['failed'] == 2
    assert 'failed' in done['reason']
    assert not robots[2].goals  # the second wave never started
    assert in_use.status_code in (204, 409)
    # Prometheus sees the rollback (LekiwiRolloutRolledBack) and the deployment's end.
    assert metric(api, 'lekiwi_deployment_transitions_total', to='rolling_back') == 1
    assert metric(api, 'lekiwi_deployment_transitions_total', to='rolled_back') == 1
    assert metric(api, 'lekiwi_deployment_transitions_total', to='paused') == 0
    assert metric(api, 'lekiwi_deployments', status='rolled_back') == 1
    assert metric(api, 'lekiwi_deployments', status='running') == 0
    assert metric(api, 'lekiwi_deployments_state_up') == 1
    assert created['deployment_id'] not in api.client.get('/metrics').text  # ended: no series


def test_pause_resume_abort_and_bad_requests(api: Api) -> None:
    robot = FakeRobotAgent(api, 'kiwi-0')
    robot.go.clear()
    push_release(api, '2')
    assert api.client.post('/api/v1/deployments', headers=api.viewer, json={
        'release_version': '2', 'all': True}).status_code == 403
    assert api.client.post('/api/v1/deployments', headers=api.admin, json={
        'release_version': '9', 'all': True}).status_code == 404
    assert api.client.post('/api/v1/deployments', headers=api.admin, json={
        'release_version': '2', 'robots': ['ghost']}).status_code == 422
    assert api.client.post('/api/v1/deployments', headers=api.admin, json={
        'release_version': '2'}).status_code == 422
    assert api.client.get('/api/v1/deployments/nope', headers=api.admin).status_code == 404
    assert api.client.post('/api/v1/deployments/nope/pause',
                           headers=api.admin).status_code == 404
    created = api.client.post('/api/v1/deployments', headers=api.admin, json={
        'release_version': '2', 'robots': ['kiwi-0'], 'tag': None}).json()
    deployment_id = created['deployment_id']
    paused = api.client.post(f'/api/v1/deployments/{deployment_id}/pause', headers=api.admin)
    assert paused.json()['status'] == 'paused'
    # What LekiwiRolloutPaused reads: the paused deployment by name, its robot by state.
    ids = {'deployment_id': deployment_id, 'release_version': '2'}
    assert metric(api, 'lekiwi_deployment_status', **ids, status='paused') == 1
    assert metric(api, 'lekiwi_deployments', status='paused') == 1
    assert sum(metric(api, 'lekiwi_deployment_robots', **ids, state=s) or 0
               for s in ('pending', 'running', 'succeeded', 'failed', 'skipped')) == 1
    assert metric(api, 'lekiwi_deployment_transitions_total', to='paused') == 1
    assert api.client.post(f'/api/v1/deployments/{deployment_id}/pause',
                           headers=api.admin).status_code == 409
    assert api.client.post(f'/api/v1/deployments/{deployment_id}/resume',
                           headers=api.admin).json()['status'] == 'running'
    assert api.client.post(f'/api/v1/deployments/{deployment_id}/abort',
                           headers=api.admin).json()['status'] == 'aborting'
    robot.go.set()
    wait_status(api, deployment_id, {'aborted'})
    assert metric(api, 'lekiwi_deployment_transitions_total', to='running') == 2  # new, resumed
    assert metric(api, 'lekiwi_deployment_transitions_total', to='aborted') == 1
    assert metric(api, 'lekiwi_deployments', status='paused') == 0
    assert metric(api, 'lekiwi_deployment_status', **ids, status='paused') is None
