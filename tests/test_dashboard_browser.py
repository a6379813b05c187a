"""The web dashboard in real headless Chromium against the real server, agent and PostgreSQL.

An operator logs in, sees a simulated LeKiwi come online and its teleop indicator change live
(the simulated operator drives half of every 8 s), opens the robot page and its telemetry
charts, and sees the connection banner while the server restarts and the page resynchronise by
itself afterwards. Then, with a release pushed through the API, the operator starts a deployment
from the deployments page and pauses it; a resume made elsewhere (the REST API) shows in the page
live; a viewer sees it without the controls. The deployment targets a spare robot that is
enrolled but never connects, so it stays running (waiting for it) until paused, whatever the
simulated robot would make of the release.
Screenshots go to tests/artifacts/dashboard/.
"""

from __future__ import annotations

import sys

import pytest
from dashboard_browser import ARTIFACTS, build_dashboard, chromium, missing_browser
from system_harness import FleetServerProcess, ros_env, start_agent

ROBOT = 'kiwi-web'
SPARE = 'kiwi-spare'
PASSWORD = 'browser-test-password'
RELEASE = '2.0.0'

pytestmark = pytest.mark.skipif(missing_browser() is not None,
                                reason=missing_browser() or '')



@pytest.fixture
def dashboard_server(pg_url, processes, tmp_path) -> FleetServerProcess:
    dist = build_dashboard()
    server = FleetServerProcess(processes, database_url=pg_url, data_dir=tmp_path / 'server',
                                env={'LEKIWI_DASHBOARD_DIR': str(dist)})
    server.start()
    return server


def test_operator_watches_a_robot_come_online_and_drive_live(
        dashboard_server, processes, ros_domain, tmp_path):
    server = dashboard_server
    shots = ARTIFACTS / 'dashboard'
    shots.mkdir(parents=True, exist_ok=True)
    server.request('POST', '/api/v1/accounts',
                   {'name': 'olga', 'role': 'operator', 'password': PASSWORD})
    token_file = tmp_path / 'robot-token'
    token_file.write_text(server.enrol(ROBOT, ['lab-a', 'simulated']))

    with chromium() as page:
        page.set_default_timeout(30_000)
        page.goto(f'{server.api_url}/ui/')
        page.fill('input[name=name]', 'olga')
        page.fill('input[name=password]', 'wrong password')
        page.click('button[type=submit]')
        page.wait_for_selector('p.error[role=alert]')
        page.fill('input[name=password]', PASSWORD)
        page.click('button[type=submit]')
        page.wait_for_selector('#live-status[data-status=live]')
        assert page.inner_text('#who') == 'olga (operator)'
        row = f'[data-robot-id="{ROBOT}"].row'
        page.wait_for_selector(f'{row}[data-status=never_seen]')
        page.screenshot(path=str(shots / '1-enrolled.png'))

        processes.start('sim', [sys.executable, '-m', 'lekiwi_agent_ros.sim_lekiwi',
                                '--ros-args', '-p', 'drive_period_s:=8.0',
                                '-p', 'frame_width:=160', '-p', 'frame_height:=120'],
                        ros_env(ros_domain))
        start_agent(processes, ros_domain, robot_id=ROBOT, server_url=server.gateway_url,
                    token_file=token_file, outbox_path=tmp_path / 'outbox.db')
        # Live, from the stream (the page is never reloaded).
        page.wait_for_selector(f'{row}[data-status=online]', timeout=60_000)
        page.wait_for_selector(f'{row}[data-teleop=on]', timeout=60_000)
        page.screenshot(path=str(shots / '2-online-driving.png'))
        page.wait_for_selector(f'{row}[data-teleop=off]', timeout=30_000)
        page.wait_for_selector(f'{row}[data-teleop=on]', timeout=30_000)
        assert page.inner_text('[data-summary=online]') == '1'

        page.click(row)
        page.wait_for_selector(f'#robot-page[data-robot-id="{ROBOT}"]')
        page.wait_for_selector('#robot-uplink:text-is("websocket")')  # the transport in use
        # uPlot draws into canvases once the downsampled range query returned buckets.
        page.wait_for_selector('.chart[data-chart=cpu_percent]:not([data-points="0"]) canvas',
                               timeout=60_000)
        page.wait_for_selector('#timeline li')
        page.wait_for_selector('#teleop-sessions tr:nth-child(2)', timeout=30_000)
        page.screenshot(path=str(shots / '3-robot-page.png'), full_page=True)

        # A lost connection shows the banner; the page reconnects and resynchronises itself.
        server.kill()
        page.wait_for_selector('#connection-banner', timeout=30_000)
        page.screenshot(path=str(shots / '4-connection-lost.png'))
        server.start()
        page.wait_for_selector('#live-status[data-status=live]', timeout=60_000)
        assert page.query_selector('#connection-banner') is None
        page.click('a[href="#/"] >> nth=0')
        page.wait_for_selector(f'{row}[data-status=online]', timeout=60_000)

        # Deployments: a release pushed through the API, started and paused from the page.
        server.enrol(SPARE, ['spare'])
        server.upload_release(RELEASE)
        page.click('#nav-deployments')
        page.wait_for_selector(f'#start-deployment select[name=release] option[value="{RELEASE}"]',
                               state='attached')
        page.select_option('#start-deployment select[name=release]', RELEASE)
        page.check('#start-deployment input[name=target][value=tag]')
        page.fill('#start-deployment input[name=tag]', 'spare')
        page.fill('#start-deployment input[name=waves]', '1')
        page.screenshot(path=str(shots / '5-start-deployment.png'))
        page.click('#start-deployment button[type=submit]')
        page.wait_for_selector('#deployment-page[data-status=running]')
        deployment_id = page.get_attribute('#deployment-page', 'data-deployment-id')
        page.wait_for_selector(f'#deployment-robots tr[data-robot-id="{SPARE}"]')
        assert page.query_selector(f'#deployment-robots tr[data-robot-id="{ROBOT}"]') is None
        page.click('#deployment-controls button[data-action=pause]')
        page.wait_for_selector('#deployment-page[data-status=paused]')
        assert 'paused by olga' in page.inner_text('#deployment-reason')
        page.screenshot(path=str(shots / '6-deployment-paused.png'), full_page=True)
        stored = server.request('GET', f'/api/v1/deployments/{deployment_id}')
        assert stored['status'] == 'paused' and stored['created_by'] == 'olga'
        # A change made elsewhere arrives through the stream's 'deployment' updates.
        server.request('POST', f'/api/v1/deployments/{deployment_id}/resume')
        page.wait_for_selector('#deployment-page[data-status=running]', timeout=10_000)
        page.wait_for_selector('#deployment-controls button[data-action=pause]')
        page.click('#nav-deployments')
        page.wait_for_selector(f'#deployments tr[data-deployment-id="{deployment_id}"]'
                               '[data-status=running]')
        # The spare robot's page lists the deployment in its history.
        page.click(f'#deployments tr[data-deployment-id="{deployment_id}"] a')
        page.click(f'#deployment-robots tr[data-robot-id="{SPARE}"] a')
        page.wait_for_selector(f'#robot-page[data-robot-id="{SPARE}"]')
        page.wait_for_selector(f'#robot-deployments tr[data-deployment-id="{deployment_id}"]')
        assert 'pending' in page.inner_text('#robot-deployments')
        page.screenshot(path=str(shots / '7-robot-deployments.png'), full_page=True)
        # The inventory: the simulated robot found by its uplink, on its own page too.
        page.click('#nav-inventory')
        page.wait_for_selector(f'#inventory tr[data-key="{ROBOT}"][data-enrolled=yes] '
                               '[data-source=uplink]')
        page.screenshot(path=str(shots / '8-inventory.png'))
        page.click(f'#inventory tr[data-key="{ROBOT}"] a')
        page.wait_for_selector('#discovery-sources tr[data-source=uplink]')

        # A viewer sees the deployment but neither the start form nor the controls.
        server.request('POST', '/api/v1/accounts',
                       {'name': 'vera', 'role': 'viewer', 'password': PASSWORD})
        page.click('#logout')
        page.fill('input[name=name]', 'vera')
        page.fill('input[name=password]', PASSWORD)
        page.click('button[type=submit]')
        page.wait_for_selector('#live-status[data-status=live]')
        page.click('#nav-deployments')
        page.wait_for_selector(f'#deployments tr[data-deployment-id="{deployment_id}"]')
        assert page.query_selector('#start-deployment') is None
        page.click(f'#deployments tr[data-deployment-id="{deployment_id}"] a')
        page.wait_for_selector('#deployment-page[data-status=running]')
        assert page.query_selector('#deployment-controls') is None
