"""The web dashboard in real headless Chromium against the real server, agent and PostgreSQL.

An operator logs in, sees a simulated LeKiwi come online and its teleop indicator change live
(the simulated operator drives half of every 8 s), opens the robot page and its telemetry
charts, and sees the connection banner while the server restarts and the page resynchronise by
itself afterwards. Screenshots go to tests/artifacts/dashboard/.
"""

from __future__ import annotations

import sys

import pytest
from dashboard_browser import ARTIFACTS, build_dashboard, chromium, missing_browser
from system_harness import FleetServerProcess, ros_env, start_agent

ROBOT = 'kiwi-web'
PASSWORD = 'browser-test-password'

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
