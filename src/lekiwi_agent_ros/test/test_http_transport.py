"""The polling fallback's choices: when it polls, when it goes back, how often it probes."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from polling_server import PollingStandIn
from uplink_server import UplinkTestServer

from lekiwi_agent_ros.uplink.ack_latency import LatencyConfig
from lekiwi_agent_ros.uplink.backoff import Backoff, BackoffConfig
from lekiwi_agent_ros.uplink.http_transport import POLLING, WEBSOCKET, PollingFallback
from lekiwi_agent_ros.uplink.outbox import Outbox, TopicPolicy
from lekiwi_agent_ros.uplink.polling_config import PollingConfig
from lekiwi_agent_ros.uplink.uplink_session import (
    ActionGoal,
    Command,
    CommandOutcome,
    SessionConfig,
    UplinkSession,
)


class Handler:
    def handle_command(self, command: Command) -> CommandOutcome:
        return CommandOutcome(True, 'ok')

    def start_action_goal(self, goal: ActionGoal) -> str | None:
        return 'none here'

    def cancel_action_goal(self, goal_id: str) -> None:
        pass


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def fallback(logs: list[str], url: str = 'http://127.0.0.1:1',
             now: Callable[[], float] = time.monotonic) -> PollingFallback:
    config = PollingConfig(poll_url=url, latency=LatencyConfig(min_samples=1),
                           probe_base_s=1.0, probe_cap_s=4.0)
    return PollingFallback(config, 'ws://127.0.0.1:1/', 'kiwi-1',
                           lambda level, text: logs.append(f'{logging.getLevelName(level)} {text}'),
                           now=now)


def run(fb: PollingFallback, tmp_path: Path) -> None:
    outbox, session, backoff = uplink_parts(tmp_path, now=lambda: 0.0)

    async def go() -> None:
        await fb.run('lkw_token', session, session.frames_to_send, asyncio.Event(),
                     asyncio.Event(), backoff)

    asyncio.run(go())
    outbox.close()


def test_a_websocket_that_worked_is_not_replaced_by_polling(tmp_path: Path) -> None:
    logs: list[str] = []
    fb = fallback(logs)
    fb.watch(FakeWebSocket([]))  # type: ignore[arg-type]  # the last attempt opened one
    run(fb, tmp_path)
    assert fb.transport == WEBSOCKET and fb.switches == 0 and logs == []


def test_polling_after_a_refused_websocket_and_back_when_it_ends(tmp_path: Path) -> None:
    logs: list[str] = []
    fb = fallback(logs, f'http://127.0.0.1:{closed_port()}')
    run(fb, tmp_path)  # no WebSocket opened: it polls (the API is down too, so it ends)
    assert fb.switches == 2 and fb.transport == WEBSOCKET
    assert any('uplink transport: polling (the WebSocket could not be opened)' in line
               for line in logs), logs
    assert any('polling http://127.0.0.1' in line and 'ConnectError' in line for line in logs)


class FakeWebSocket:
    """Takes frames and answers the given messages, as an open WebSocket."""

    def __init__(self, answers: list[str]) -> None:
        self.sent: list[str] = []
        self._answers = list(answers)

    async def send(self, frame: str) -> None:
        self.sent.append(frame)

    def __aiter__(self) -> FakeWebSocket:
        return self

    async def __anext__(self) -> str:
        if not self._answers:
            raise StopAsyncIteration
        return self._answers.pop(0)


PUBLISH = '{"op":"publish","topic":"fleet/events","boot_id":"b00t0001","seq":1,"msg":{}}'
ACK = json.dumps({'op': 'publish', 'topic': 'fleet/ack',
                  'msg': {'boot_id': 'b00t0001', 'ranges': [[1, 1]]}})


def test_a_slow_websocket_goes_polling_and_probes_back_off(tmp_path: Path) -> None:
    logs: list[str] = []
    clock = [100.0]
    fb = fallback(logs, f'http://127.0.0.1:{closed_port()}', now=lambda: clock[0])
    assert fb.probe_delay() == 1.0

    async def exchange(ws: object, delay_s: float) -> list[str]:
        received = []
        await ws.send(PUBLISH)  # type: ignore[attr-defined]
        clock[0] += delay_s
        async for message in ws:  # type: ignore[attr-defined]
            received.append(message)
        return received

    watched = fb.watch(FakeWebSocket([ACK]))  # type: ignore[arg-type]
    assert asyncio.run(exchange(watched, 0.2)) == [ACK]  # the wrapper passes frames through
    assert fb.too_slow() is None
    run(fb, tmp_path)  # opened, quick: stays on the WebSocket
    assert fb.switches == 0
    watched = fb.watch(FakeWebSocket([ACK]))  # type: ignore[arg-type]
    asyncio.run(exchange(watched, 0.9))  # one ack that took 900 ms
    assert 'p99 900 ms' in (fb.too_slow() or '')
    run(fb, tmp_path)
    assert any('polling (ack latency p99 900 ms over 500 ms' in line for line in logs), logs
    assert fb.probe_delay() == 2.0  # too slow again after coming back: probe less often
    assert asyncio.run(fb.probe()) is False  # nothing listens: still blocked
    assert fb.probe_delay() == 4.0
    assert asyncio.run(fb.probe()) is False and fb.probe_delay() == 4.0  # capped
    assert fb.transport == WEBSOCKET and POLLING == 'polling'


def test_config_problems() -> None:
    assert PollingConfig(poll_url='ws://x').problems()
    assert PollingConfig(poll_url='https://fleet', probe_base_s=9, probe_cap_s=2).problems()
    assert PollingConfig(poll_url='https://fleet').problems() == []


@pytest.mark.parametrize('url', ['http://fleet:8000', 'https://fleet.example'])
def test_good_urls(url: str) -> None:
    assert PollingConfig(poll_url=url).problems() == []


def event(n: int) -> dict:
    return {'header': {'stamp': {'sec': 1, 'nanosec': 0}, 'frame_id': ''}, 'robot_id': 'kiwi-1',
            'boot_id': 'b00t0001', 'sequence': n, 'severity': 1, 'event_type': 'test.tick',
            'payload_json': '{}'}


def uplink_parts(tmp_path: Path, events: int = 0, now: Callable[[], float] = time.monotonic
                 ) -> tuple[Outbox, UplinkSession, Backoff]:
    """Return an outbox holding events 1..`events`, a session over it and the backoff."""
    outbox = Outbox(str(tmp_path / 'o.db'), 'b00t0001', {'fleet/events': TopicPolicy(False)})
    for n in range(1, events + 1):
        outbox.put('fleet/events', event(n))
    session = UplinkSession(SessionConfig(robot_id='kiwi-1', agent_version='0'), outbox,
                            Handler(), now, lambda level, text: None)
    return outbox, session, Backoff(BackoffConfig(), random.random, now)


def test_polling_delivers_acks_commands_and_goes_back_when_a_probe_opens(
        tmp_path: Path) -> None:
    logs: list[str] = []
    probe_target = UplinkTestServer({'kiwi-1': 'lkw_token'})
    outbox, session, backoff = uplink_parts(tmp_path, events=5)

    async def go() -> PollingStandIn:
        stand_in = PollingStandIn('kiwi-1', 'lkw_token')
        url = await stand_in.start()
        config = PollingConfig(poll_url=url, long_poll_s=0.2, probe_base_s=1.5,
                               probe_cap_s=1.5)
        fb = PollingFallback(config, probe_target.url, 'kiwi-1',
                             lambda level, text: logs.append(text))
        await stand_in.commands.put({
            'op': 'call_service', 'service': 'fleet/command', 'id': 'cmd-1',
            'args': {'command_id': 'cmd-1', 'command_type': 'ping', 'payload_json': '{}'}})
        wake = asyncio.Event()
        await asyncio.wait_for(fb.run('lkw_token', session, session.frames_to_send, wake,
                                      asyncio.Event(), backoff), 20)
        await stand_in.close()
        assert fb.transport == WEBSOCKET and fb.switches == 2
        return stand_in

    try:
        stand_in = asyncio.run(go())
    finally:
        probe_target.close()
    assert stand_in.committed == [('b00t0001', n) for n in range(1, 6)]
    assert stand_in.gzipped >= 1  # five events make a body worth compressing
    assert len(outbox) == 0 and session.stats.acked_total == 5
    assert stand_in.responses == [{'op': 'service_response', 'service': 'fleet/command',
                                   'id': 'cmd-1', 'result': True,
                                   'values': {'accepted': True, 'message': 'ok'}}]
    assert 'the WebSocket opens again: leaving polling' in logs, logs
    assert any('authenticated with http://127.0.0.1' in line for line in logs)
    outbox.close()


def test_a_polling_session_the_server_dropped_ends_and_a_wrong_token_is_refused(
        tmp_path: Path) -> None:
    logs: list[str] = []
    outbox, session, backoff = uplink_parts(tmp_path, events=1)

    async def go(token: str) -> None:
        stand_in = PollingStandIn('kiwi-1', 'lkw_token')
        stand_in.refuse_frames = True
        config = PollingConfig(poll_url=await stand_in.start(), long_poll_s=0.2)
        fb = PollingFallback(config, 'ws://127.0.0.1:1/', 'kiwi-1',
                             lambda level, text: logs.append(text))
        await asyncio.wait_for(fb.run(token, session, session.frames_to_send, asyncio.Event(),
                                      asyncio.Event(), backoff), 20)
        await stand_in.close()

    asyncio.run(go('lkw_token'))
    assert any('ended: HTTP 409' in line for line in logs), logs
    asyncio.run(go('lkw_wrong'))
    assert any('ended: HTTP 401' in line for line in logs), logs
    assert len(outbox) == 1  # nothing acked, nothing lost
    outbox.close()


def test_the_node_parameters_make_the_fallback(tmp_path: Path) -> None:
    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from lekiwi_agent_ros.uplink.polling_config import polling_fallback

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        def node(**values: object) -> Node:
            overrides = [Parameter(k, value=v) for k, v in values.items()]
            return Node('fallback_params', context=context, parameter_overrides=overrides)

        plain = node()
        assert polling_fallback(plain, 'ws://x/', 'kiwi-1', print, 'ua') is None
        plain.destroy_node()
        on = node(poll_url='https://fleet.example', fallback_latency_p99_ms=250.0,
                  websocket_probe_base_s=2.0)
        fb = polling_fallback(on, 'ws://x/', 'kiwi-1', print, 'ua')
        assert fb is not None and fb.transport == WEBSOCKET and fb.probe_delay() == 2.0
        on.destroy_node()
        bad = node(poll_url='ftp://fleet')
        with pytest.raises(ValueError, match='poll_url must start with http'):
            polling_fallback(bad, 'ws://x/', 'kiwi-1', print, 'ua')
        bad.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_the_transport_parameter_forces_polling_and_auto_goes_back(tmp_path: Path) -> None:
    """fleet_uplink:transport (issue 20): polling polls over a working WebSocket, no probes."""
    logs: list[str] = []
    probe_target = UplinkTestServer({'kiwi-1': 'lkw_token'})
    outbox, session, backoff = uplink_parts(tmp_path, events=1)

    async def go() -> None:
        stand_in = PollingStandIn('kiwi-1', 'lkw_token')
        config = PollingConfig(poll_url=await stand_in.start(), long_poll_s=0.2,
                               probe_base_s=0.2, probe_cap_s=0.2)
        fb = PollingFallback(config, probe_target.url, 'kiwi-1',
                             lambda level, text: logs.append(text))
        fb.set_mode('polling')
        fb.watch(FakeWebSocket([]))  # type: ignore[arg-type]  # a WebSocket that worked
        assert fb.too_slow() == 'the transport parameter says polling'
        runner = asyncio.create_task(fb.run('lkw_token', session, session.frames_to_send,
                                            asyncio.Event(), asyncio.Event(), backoff))
        deadline = time.monotonic() + 10
        while len(outbox) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # five probe periods: none may run while forced
        assert fb.transport == POLLING and not runner.done()
        assert not any('probe' in line for line in logs), logs
        fb.set_mode('auto')
        fb.notify_mode()
        await asyncio.wait_for(runner, 10)
        assert fb.transport == WEBSOCKET
        await stand_in.close()

    try:
        asyncio.run(go())
    finally:
        probe_target.close()
    assert len(outbox) == 0, 'the event was acked over polling'
    assert 'the WebSocket opens again: leaving polling' in logs, logs
    with pytest.raises(ValueError, match='transport must be one of'):
        fallback([]).set_mode('carrier-pigeon')
    outbox.close()


def test_the_transport_parameter_websocket_never_polls(tmp_path: Path) -> None:
    logs: list[str] = []
    fb = fallback(logs)
    fb.set_mode('websocket')
    run(fb, tmp_path)  # the WebSocket was refused: auto would poll now
    assert fb.transport == WEBSOCKET and fb.switches == 0
    fb.watch(FakeWebSocket([]))  # type: ignore[arg-type]
    assert fb.too_slow() is None


def test_going_back_to_the_websocket_waits_for_the_post_under_way(tmp_path: Path) -> None:
    """The handover race (issue 20): a probe opens the WebSocket while a POST is answered
    slowly; cut off, its acks would be lost and its frames sent again on the WebSocket."""
    logs: list[str] = []
    probe_target = UplinkTestServer({'kiwi-1': 'lkw_token'})
    outbox, session, backoff = uplink_parts(tmp_path, events=3)

    async def go() -> PollingStandIn:
        stand_in = PollingStandIn('kiwi-1', 'lkw_token')
        stand_in.post_delay_s = 1.5  # the probe (0.3 s) opens the WebSocket meanwhile
        config = PollingConfig(poll_url=await stand_in.start(), long_poll_s=0.2,
                               probe_base_s=0.3, probe_cap_s=0.3, post_linger_s=0.0)
        fb = PollingFallback(config, probe_target.url, 'kiwi-1',
                             lambda level, text: logs.append(text))
        await asyncio.wait_for(fb.run('lkw_token', session, session.frames_to_send,
                                      asyncio.Event(), asyncio.Event(), backoff), 20)
        await stand_in.close()
        return stand_in

    try:
        stand_in = asyncio.run(go())
    finally:
        probe_target.close()
    assert 'the WebSocket opens again: leaving polling' in logs, logs
    assert stand_in.sent == [('b00t0001', n) for n in range(1, 4)]  # each once
    assert len(outbox) == 0, 'the POST was cut off: its frames would go again'
    outbox.close()


def test_a_key_bound_robot_proves_its_key_on_every_polling_request(tmp_path: Path) -> None:
    from lekiwi_agent_ros.uplink.admission_key import AdmissionKey

    key = AdmissionKey.load_or_create(str(tmp_path / 'admission_key.pem'))
    logs: list[str] = []
    outbox, session, backoff = uplink_parts(tmp_path, events=3)

    async def go(signer: AdmissionKey | None) -> PollingStandIn:
        stand_in = PollingStandIn('kiwi-1', 'lkw_token')
        stand_in.public_key = key.public_key
        config = PollingConfig(poll_url=await stand_in.start(), long_poll_s=0.2,
                               probe_base_s=30.0, probe_cap_s=30.0)
        fb = PollingFallback(config, 'ws://127.0.0.1:1/', 'kiwi-1',
                             lambda level, text: logs.append(text))
        stop = asyncio.Event()

        async def stop_when_acked() -> None:
            while len(outbox) and not any('ended' in line for line in logs):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # a few more requests, each with its proof
            stop.set()

        stopper = asyncio.create_task(stop_when_acked())
        await asyncio.wait_for(fb.run('lkw_token', session, session.frames_to_send,
                                      asyncio.Event(), stop, backoff, signer), 20)
        await stopper
        await stand_in.close()
        return stand_in

    refused = asyncio.run(go(None))  # without the key: the token alone is refused
    assert any('ended: HTTP 401' in line for line in logs), logs
    assert refused.proved == 0 and len(outbox) == 3
    logs.clear()
    proved = asyncio.run(go(key))
    assert len(outbox) == 0 and session.stats.acked_total == 3
    # The session, its POSTs and GETs: every one proved (the stand-in refuses any other).
    assert proved.proved >= 3 and proved.nonces == ['nonce-0']
    outbox.close()
