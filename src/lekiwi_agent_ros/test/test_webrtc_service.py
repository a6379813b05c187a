"""StreamerService with real aiortc peers and real HTTP, without ROS."""

from __future__ import annotations

import asyncio
import math
import time

import aioice.ice
import httpx
import pytest
from webrtc_client import OperatorClient, make_jpeg

from lekiwi_agent_ros.webrtc.webrtc_media import FrameHub
from lekiwi_agent_ros.webrtc.webrtc_peers import StreamerSnapshot
from lekiwi_agent_ros.webrtc.webrtc_protocol import JoyCommand
from lekiwi_agent_ros.webrtc.webrtc_service import (
    StreamerConfig,
    StreamerService,
    resolve_token,
)

TOKEN = 'operator-token-for-tests-0123'
JPEG = make_jpeg()


class Streamer:
    """A running service with a 15 Hz camera, recording what it publishes."""

    def __init__(self, publish_joy=None, **overrides: object) -> None:
        settings = {'token': TOKEN, 'port': 0, 'ice_host_addresses': ('127.0.0.1',),
                    'ping_period_s': 0.1, **overrides}
        self.hub = FrameHub(time.monotonic)
        self.joys: list[JoyCommand] = []
        self.statuses: list[tuple[float, StreamerSnapshot]] = []
        self.round_trips: list[tuple[float, str, float]] = []
        self.service = StreamerService(StreamerConfig(**settings), self.hub,
                                       publish_joy or self.joys.append,
                                       lambda s: self.statuses.append((time.monotonic(), s)),
                                       publish_round_trip=lambda o, r: self.round_trips.append(
                                           (time.monotonic(), o, r)))
        self.camera_on = True
        self._camera: asyncio.Task | None = None

    async def __aenter__(self) -> Streamer:
        self.port = await self.service.start()
        self.url = f'http://127.0.0.1:{self.port}/offer'
        self._camera = asyncio.create_task(self._run_camera())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._camera.cancel()
        await self.service.stop()

    async def _run_camera(self) -> None:
        while True:
            if self.camera_on:
                self.hub.put('jpeg', JPEG, True)
            await asyncio.sleep(1 / 15)

    def latest(self) -> StreamerSnapshot:
        return self.statuses[-1][1]

    def client(self, token: str | None = TOKEN, video: bool = True,
               data_channel: bool = True, **options: object) -> OperatorClient:
        return OperatorClient(self.url, token, video, data_channel, **options)


async def until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30.0))


def test_operator_gets_video_sends_joystick_and_leaves_within_a_second() -> None:
    async def scenario() -> None:
        async with Streamer() as streamer:
            client = streamer.client()
            await client.connect()
            await client.drive(0.5)
            assert await until(lambda: client.frames >= 3, 5.0)
            assert await until(lambda: not math.isnan(streamer.latest().round_trip_ms), 2.0)
            assert streamer.latest().counts() == (1, 1)
            assert len(streamer.joys) >= 10
            assert streamer.joys[-1].axes[0] == 0.6
            assert client.pings_answered >= 1
            assert streamer.latest().last_command_at is not None
            assert streamer.latest().round_trip_ms < 100.0
            closed_at = time.monotonic()
            await client.close()
            assert await until(lambda: streamer.latest().connected_peers == 0, 1.0)
            left = next(t for t, s in streamer.statuses if t >= closed_at and
                        s.connected_peers == 0)
            assert left - closed_at < 1.0
            assert streamer.latest().video_tracks_sending == 0

    run(scenario())


def test_a_vanished_peer_leaves_after_the_idle_timeout() -> None:
    async def scenario() -> None:
        async with Streamer(idle_timeout_s=0.4) as streamer:
            client = streamer.client(video=False)
            await client.connect()
            assert await until(lambda: streamer.latest().connected_peers == 1, 2.0)
            assert streamer.latest().video_tracks_sending == 0  # no video asked for
            await asyncio.sleep(0.5)  # answering pings keeps it alive past the timeout
            assert streamer.latest().connected_peers == 1
            vanished_at = time.monotonic()
            await client.vanish()
            assert await until(lambda: streamer.latest().connected_peers == 0, 2.0)
            assert time.monotonic() - vanished_at < 1.0
            await client.close()

    run(scenario())


def test_a_peer_whose_ice_fails_leaves_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # Consent freshness (RFC 7675) is aioice's: checks every 5 s, expiry after 6 failures.
    # Shrink both so an ICE failure happens in about a second instead of half a minute.
    monkeypatch.setattr(aioice.ice, 'CONSENT_INTERVAL', 0.1)
    monkeypatch.setattr(aioice.ice, 'CONSENT_FAILURES', 2)

    async def scenario() -> None:
        async with Streamer() as streamer:
            # A viewer without a data channel: no pings, so only ICE can tell it is gone.
            client = streamer.client(data_channel=False)
            await client.connect()
            assert await until(lambda: streamer.latest().counts() == (1, 1), 2.0)
            await asyncio.sleep(0.5)  # consent checks pass while the peer answers them
            assert streamer.latest().connected_peers == 1
            await client.vanish()
            assert await until(lambda: streamer.latest().connected_peers == 0, 4.0)
            await client.close()

    run(scenario())


def test_tracks_count_only_while_the_camera_sends() -> None:
    async def scenario() -> None:
        async with Streamer(video_stale_s=0.3) as streamer:
            client = streamer.client()
            await client.connect()
            assert await until(lambda: streamer.latest().counts() == (1, 1), 2.0)
            streamer.camera_on = False
            assert await until(lambda: streamer.latest().counts() == (1, 0), 2.0)
            await client.close()

    run(scenario())


def test_signalling_requires_the_bearer_token() -> None:
    async def scenario() -> None:
        async with Streamer() as streamer:
            for token in (None, 'wrong-token-wrong-token'):
                response = await streamer.client(token).offer()
                assert response.status_code == 401
                assert response.headers['www-authenticate'] == 'Bearer'
            async with httpx.AsyncClient() as http:
                basic = await http.post(streamer.url, json={},
                                        headers={'Authorization': f'Basic {TOKEN}'})
            assert basic.status_code == 401
            assert streamer.service.snapshot().connected_peers == 0

    run(scenario())


@pytest.mark.parametrize(
    ('body', 'reason'),
    [
        ([1, 2], 'body must be'),
        ({'type': 'answer', 'sdp': 'v=0'}, 'body must be'),
        ({'type': 'offer'}, 'body must be'),
        ({'type': 'offer', 'sdp': 'this is not sdp'}, 'invalid offer'),
    ],
)
def test_bad_offers_are_refused(body: object, reason: str) -> None:
    async def scenario() -> None:
        async with Streamer() as streamer:
            response = await streamer.client().offer(body)
            assert response.status_code == 400
            assert reason in response.json()['error']
            assert streamer.service.snapshot().connected_peers == 0

    run(scenario())


def test_routes_methods_and_cors() -> None:
    async def scenario() -> None:
        async with Streamer(cors_allow_origin='https://fleet.example') as streamer:
            base = f'http://127.0.0.1:{streamer.port}'
            async with httpx.AsyncClient() as http:
                assert (await http.get(base + '/nope')).status_code == 404
                wrong = await http.get(base + '/offer')
                assert wrong.status_code == 405 and wrong.headers['allow'] == 'POST, OPTIONS'
                assert wrong.headers['access-control-allow-origin'] == 'https://fleet.example'
                pre = await http.options(base + '/offer')
                assert pre.status_code == 204
                assert 'Authorization' in pre.headers['access-control-allow-headers']
                bad = await http.post(base + '/offer', content=b'{',
                                      headers={'Authorization': f'Bearer {TOKEN}'})
                assert bad.status_code == 400

    run(scenario())


def test_max_peers_and_peers_that_never_connect() -> None:
    async def scenario() -> None:
        # The timeout is long enough that a loaded machine answers the second offer before the
        # silent peer's slot expires (0.3 s was flaky when the cores were busy).
        async with Streamer(max_peers=1, connect_timeout_s=1.5) as streamer:
            silent = streamer.client()
            assert (await silent.offer()).status_code == 200  # never applies the answer
            refused = await streamer.client().offer()
            assert refused.status_code == 503
            assert refused.headers['retry-after'] == '5'
            await asyncio.sleep(1.8)  # the silent peer's slot is freed
            late = streamer.client()
            await late.connect()
            assert await until(lambda: streamer.latest().connected_peers == 1, 2.0)
            await late.close()
            await silent.close()

    run(scenario())


def test_bad_data_channel_messages_get_an_error_and_pings_an_echo() -> None:
    async def scenario() -> None:
        async with Streamer() as streamer:
            client = streamer.client(video=False)
            await client.connect()
            client.send('not json')
            client.send({'type': 'joy', 'axes': [float('inf')]})
            client.send({'type': 'ping', 'id': 'op-1'})
            client.send({'type': 'pong', 'id': 123456})  # never sent: ignored
            client.send({'type': 'joy', 'axes': [0.2], 'buttons': [1]})
            assert await until(lambda: len(streamer.joys) == 1, 2.0)
            errors = [m for m in client.received if m['type'] == 'error']
            assert [e['reason'] for e in errors] == ['message is not JSON',
                                                     'axes must be finite numbers']
            assert {'type': 'pong', 'id': 'op-1'} in client.received
            assert streamer.joys == [JoyCommand((0.2,), (1,))]
            await client.close()

    run(scenario())


def test_command_round_trips_are_timed_per_operator_from_the_commands_themselves() -> None:
    async def scenario() -> None:
        async with Streamer() as streamer:
            fast = streamer.client(video=False)
            slow = streamer.client(video=False, ack_delay_s=0.6)  # a slower command loop
            viewer = streamer.client(video=True, answer_acks=False)  # answers pings only
            for client in (fast, slow, viewer):
                await client.connect()
            await asyncio.gather(fast.drive(1.5), slow.drive(1.5))
            await asyncio.sleep(1.0)  # the last answers arrive, and the 0.5 s report is due

            # Each command is acknowledged with its own id once published (the echo an
            # operator times its command's round trip from).
            assert set(fast.sent_at) <= set(fast.acks) and len(fast.acks) >= 20
            assert all(0 <= fast.acks[n] - fast.sent_at[n] < 1.0 for n in fast.sent_at)
            by_operator: dict[str, list[float]] = {}
            for _, operator, rtt in streamer.round_trips:
                by_operator.setdefault(operator, []).append(rtt)
            peers = {operator.removeprefix('webrtc/') for operator in by_operator}
            assert len(peers) == 2, by_operator  # the viewer sent no command: no loop
            fast_rtts, slow_rtts = sorted(by_operator.values(), key=min)
            assert max(fast_rtts) < 550.0  # loopback; generous for a loaded machine
            assert min(slow_rtts) >= 600.0  # its own loop, not the others' or a ping
            # At most one report per operator every 0.5 s, though ~45 commands closed a loop.
            for operator in by_operator:
                times = [t for t, o, _ in streamer.round_trips if o == operator]
                assert all(b - a >= 0.45 for a, b in zip(times, times[1:], strict=False))
                assert 2 <= len(times) <= 6
            loops = dict(streamer.service.snapshot().command_round_trips_ms)
            assert len(loops) == 2 and min(loops.values()) < 550.0
            for client in (fast, slow, viewer):
                await client.close()

    run(scenario())


def test_publisher_failures_do_not_stop_the_service() -> None:
    async def scenario() -> None:
        def broken(_: object) -> None:
            raise RuntimeError('context shut down')  # as rclpy's publisher at shutdown

        async with Streamer(publish_joy=broken) as streamer:
            client = streamer.client(video=False)
            await client.connect()
            client.send({'type': 'joy', 'axes': [0.5]})
            await asyncio.sleep(0.2)
            assert client.channel.readyState == 'open'
            assert await until(lambda: streamer.latest().connected_peers == 1, 2.0)
            await client.close()

    run(scenario())


@pytest.mark.parametrize(
    ('change', 'reason'),
    [
        ({'token': 'short'}, 'at least 16 characters'),
        ({'port': 70000}, 'port must be within'),
        ({'max_peers': 0}, 'max_peers must be >= 1'),
        ({'ping_period_s': 0.0}, 'ping_period_s must be > 0'),
        ({'idle_timeout_s': -1.0}, 'idle_timeout_s must be > 0'),
        ({'status_period_s': math.nan}, 'status_period_s must be > 0'),
        ({'ice_servers': ('http://x',)}, 'stun:/turn:'),
    ],
)
def test_invalid_config_is_refused(change: dict, reason: str) -> None:
    settings = {'token': TOKEN, **change}
    with pytest.raises(ValueError, match=reason):
        StreamerConfig(**settings).validated()
    assert StreamerConfig(token=TOKEN, idle_timeout_s=0.0).problems() == []


def test_resolve_token(tmp_path) -> None:
    path = tmp_path / 'token'
    path.write_text(f'  {TOKEN}\n')
    assert resolve_token('', str(path)) == TOKEN
    assert resolve_token('abc', '') == 'abc'
    with pytest.raises(ValueError, match='not both'):
        resolve_token('abc', str(path))
    with pytest.raises(ValueError, match='cannot read operator_token_file'):
        resolve_token('', str(tmp_path / 'missing'))
