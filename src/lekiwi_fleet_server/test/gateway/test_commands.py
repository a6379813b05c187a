"""CommandDispatcher: validation, round trip, timeout, disconnect."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from lekiwi_fleet_server.domain.protocol import CommandResponse
from lekiwi_fleet_server.gateway.commands import (
    CommandDispatcher,
    CommandTimeout,
    InvalidCommand,
    RobotNotConnected,
)

pytestmark = pytest.mark.anyio

def response(command_id: str, message: str = 'pong') -> CommandResponse:
    return CommandResponse(command_id, True, True, message, {})


async def test_round_trip_matches_response_to_caller() -> None:
    dispatcher = CommandDispatcher(new_id=lambda: 'cmd-1')
    sent: list[bytes] = []

    def send(data: bytes) -> bool:
        sent.append(data)
        asyncio.get_running_loop().call_soon(dispatcher.resolve, 'r1', response('cmd-1'))
        return True

    result = await dispatcher.call('r1', send, 'ping', '{}', timeout_s=1.0)
    assert result.message == 'pong'
    frame = orjson.loads(sent[0])
    assert frame['op'] == 'call_service' and frame['args']['command_type'] == 'ping'
    assert not dispatcher.resolve('r1', response('cmd-1'))  # nobody waits any more


async def test_other_robot_cannot_answer_and_timeout_fires() -> None:
    dispatcher = CommandDispatcher(new_id=lambda: 'cmd-2')

    def send(data: bytes) -> bool:
        asyncio.get_running_loop().call_soon(dispatcher.resolve, 'intruder', response('cmd-2'))
        return True

    with pytest.raises(CommandTimeout):
        await dispatcher.call('r1', send, 'ping', '{}', timeout_s=0.05)


async def test_disconnect_fails_waiting_command() -> None:
    dispatcher = CommandDispatcher()
    task = asyncio.create_task(dispatcher.call('r1', lambda _d: True, 'request_snapshot',
                                               '{}', timeout_s=5.0))
    await asyncio.sleep(0.01)
    dispatcher.robot_gone('r1')
    with pytest.raises(RobotNotConnected):
        await task


async def test_unconnected_and_invalid_commands() -> None:
    dispatcher = CommandDispatcher()
    with pytest.raises(RobotNotConnected):
        await dispatcher.call('r1', None, 'ping', '{}', timeout_s=1)
    with pytest.raises(RobotNotConnected):
        await dispatcher.call('r1', lambda _d: False, 'ping', '{}', timeout_s=1)
    for command_type, payload in (('reboot', '{}'), ('ping', 'nope'), ('configure', '[1]')):
        with pytest.raises(InvalidCommand):
            await dispatcher.call('r1', lambda _d: True, command_type, payload, timeout_s=1)
