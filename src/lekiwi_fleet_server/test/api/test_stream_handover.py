"""The dashboard stream's hand-over: the first dashboard subscribes while a batch commits.

That batch began while nobody listened, so it builds no row deltas; it commits after the
dashboard subscribed. The dashboard must still end up with its rows and its events, once each.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
from api_harness import ADMIN_TOKEN, event_frame
from live_server import live_server
from websockets.sync.client import connect

from lekiwi_fleet_server.api.admin import enrol_robot
from lekiwi_fleet_server.app import open_store
from lekiwi_fleet_server.gateway.summary_deltas import apply_delta
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import BatchResult, FleetStore


class GatedStore:
    """The real store, whose next commit can be held at its start while the test acts."""

    def __init__(self, store: FleetStore) -> None:
        self._store = store
        self.armed = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def commit_batch(self, *args: Any, **kwargs: Any) -> BatchResult:
        if self.armed.is_set():
            self.armed.clear()
            self.entered.set()
            self.release.wait(30)
        return self._store.commit_batch(*args, **kwargs)


def _wait_for(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.02)


def test_first_dashboard_during_an_unwatched_batch_gets_its_rows_and_events(
        database_url: str, tmp_path: Any) -> None:
    gated: list[GatedStore] = []

    def factory(settings: Settings) -> FleetStore:
        gated.append(GatedStore(open_store(settings)))
        return gated[0]  # type: ignore[return-value]

    settings = Settings(database_url=database_url, data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN,
                        commit_interval_ms=10)
    with live_server(settings, store_factory=factory) as server:
        store, services = gated[0], server.services
        token = enrol_robot(store, 'kiwi-h', [], now=time.time()).token
        admin = {'Authorization': f'Bearer {ADMIN_TOKEN}'}

        def last_seq() -> Any:
            return httpx.get(f'{server.url}/api/v1/robots/kiwi-h', headers=admin,
                             timeout=5).json()['last_seq']

        with connect(f'ws://127.0.0.1:{services.gateway.port}/', open_timeout=5) as robot:
            robot.send(json.dumps({'op': 'auth', 'robot_id': 'kiwi-h', 'token': token,
                                   'protocol': ['lekiwi-fleet/1']}))
            assert json.loads(robot.recv(timeout=5))['msg'] == 'authenticated'
            robot.send(json.dumps(event_frame(1, 'kiwi-h')))
            _wait_for(lambda: last_seq() == 1)
            # The next batch is held at its start: nobody listens, so it builds no deltas.
            store.armed.set()
            robot.send(json.dumps(event_frame(2, 'kiwi-h')))
            assert store.entered.wait(10)
            with connect(f'{server.url.replace("http", "ws")}/api/v1/stream',
                         open_timeout=5) as dash:
                dash.send(json.dumps({'op': 'auth', 'token': ADMIN_TOKEN}))
                _wait_for(lambda: services.bus.subscriber_count() == 1)
                time.sleep(0.3)  # time enough to read a snapshot before the batch commits
                store.release.set()
                messages, row, events = [], None, []
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not (
                        row is not None and row.get('last_seq') == 2 and events):
                    try:
                        message = json.loads(dash.recv(timeout=0.5))
                    except TimeoutError:
                        continue
                    messages.append(message['type'])
                    for delta in message['robots']:
                        row = delta if message['type'] == 'snapshot' else apply_delta(row, delta)
                    events += [e for e in message['events'] if e['data'].get('robot_sequence')]
                assert messages and messages[0] == 'snapshot' and messages.count('snapshot') == 1
                assert row is not None and row['last_seq'] == 2, (messages, row)
                # The held batch's event, once; the one committed before the snapshot, never.
                assert [e['data']['robot_sequence'] for e in events] == [2], events
