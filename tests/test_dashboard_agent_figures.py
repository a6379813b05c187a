"""Issue 20 on the dashboard, in real headless Chromium: the uplink transport and guard trips.

The real agent reports its own figures in its heartbeat to the real server on PostgreSQL; the
overview shows its transport as a badge in the `Uplink` column, the robot page its memory and
ack latency p99; a flag guard set low (agent memory over 5 MB) trips on those figures and the
guard-trip banner appears live, from the stream, without a reload.
"""

from __future__ import annotations

import pytest
from dashboard_browser import ARTIFACTS, build_dashboard, chromium, missing_browser
from system_harness import FleetServerProcess, start_agent

ROBOT = 'kiwi-figures'
PASSWORD = 'browser-test-password'

pytestmark = pytest.mark.skipif(missing_browser() is not None,
                                reason=missing_browser() or '')


def test_the_dashboard_shows_the_transport_the_agent_figures_and_guard_trips(
        pg_url, processes, ros_domain, tmp_path):
    server = FleetServerProcess(processes, database_url=pg_url, data_dir=tmp_path / 'server',
                                env={'LEKIWI_DASHBOARD_DIR': str(build_dashboard()),
                                     'LEKIWI_FLAG_TICK_S': '0.2',
                                     'LEKIWI_FLAG_GUARD_COOLDOWN_S': '600'})
    server.start()
    shots = ARTIFACTS / 'dashboard'
    shots.mkdir(parents=True, exist_ok=True)
    server.request('POST', '/api/v1/accounts',
                   {'name': 'olga', 'role': 'operator', 'password': PASSWORD})
    token_file = tmp_path / 'robot-token'
    token_file.write_text(server.enrol(ROBOT, ['lab']))
    start_agent(processes, ros_domain, robot_id=ROBOT, server_url=server.gateway_url,
                token_file=token_file, outbox_path=tmp_path / 'outbox.db')

    with chromium() as page:
        page.set_default_timeout(60_000)
        page.goto(f'{server.api_url}/ui/')
        page.fill('input[name=name]', 'olga')
        page.fill('input[name=password]', PASSWORD)
        page.click('button[type=submit]')
        page.wait_for_selector('#live-status[data-status=live]')
        row = f'[data-robot-id="{ROBOT}"].row'
        page.wait_for_selector(f'{row} .c-transport .badge.transport-websocket')
        assert page.query_selector('#guard-banner') is None

        server.request('POST', '/api/v1/flags', {
            'name': 'agent_memory_probe', 'kind': 'boolean', 'default': False,
            'rules': [{'value': True, 'staged': True}], 'step': 3,
            'guards': [{'metric': 'agent_memory_mb', 'above': 5, 'action': 'step_back'}]})
        page.wait_for_selector('#guard-banner li[data-flag=agent_memory_probe]')
        assert 'agent_memory_mb' in page.inner_text('#guard-banner')
        page.screenshot(path=str(shots / 'guard-trip-banner.png'))

        page.click(row)
        page.wait_for_selector('#robot-agent:has-text("MB RSS")')
        text = page.inner_text('#robot-agent')
        assert text.startswith('websocket') and 'ack p99' in text, text
        page.wait_for_selector('#timeline li:has-text("RobotFlagGuardTripped")')
        # Loaded with the page: a trip that happened before is shown from the flags' state.
        page.reload()
        page.wait_for_selector('#guard-banner li[data-flag=agent_memory_probe]')
        page.click('#guard-banner-dismiss')
        assert page.query_selector('#guard-banner') is None
