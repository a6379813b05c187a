"""Commands to robots: a `call_service fleet/command` out, its `service_response` back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import orjson

from lekiwi_fleet_server.domain.protocol import COMMAND_TYPES, CommandResponse, command_frame


class CommandError(Exception):
    """A command could not be delivered or answered."""


class InvalidCommand(CommandError):
    """The command type or payload is not acceptable."""


class RobotNotConnected(CommandError):
    """The robot has no connection to this gateway."""


class CommandTimeout(CommandError):
    """The robot did not answer within the timeout."""


def _new_command_id() -> str:
    return f'cmd-{uuid.uuid4().hex}'


class CommandDispatcher:
    """Send commands over robot sessions and match responses to the waiting callers."""

    def __init__(self, new_id: Callable[[], str] = _new_command_id) -> None:
        self._new_id = new_id
        # (robot_id, command id) -> future: a robot can only answer its own commands.
        self._waiting: dict[tuple[str, str], asyncio.Future[CommandResponse]] = {}

    @staticmethod
    def validate(command_type: str, payload_json: str) -> None:
        """Raise InvalidCommand unless the type is known and the payload a JSON object."""
        if command_type not in COMMAND_TYPES:
            raise InvalidCommand(f'command_type must be one of {sorted(COMMAND_TYPES)}')
        try:
            payload = orjson.loads(payload_json)
        except orjson.JSONDecodeError as exc:
            raise InvalidCommand(f'payload_json is not valid JSON: {exc}') from None
        if type(payload) is not dict:
            raise InvalidCommand('payload_json must encode a JSON object')

    async def call(self, robot_id: str, send: Callable[[bytes], bool] | None,
                   command_type: str, payload_json: str, timeout_s: float) -> CommandResponse:
        """Send one command through `send` (the robot's session) and wait for its response."""
        self.validate(command_type, payload_json)
        if send is None:
            raise RobotNotConnected(f'robot {robot_id} is not connected')
        command_id = self._new_id()
        future: asyncio.Future[CommandResponse] = asyncio.get_running_loop().create_future()
        self._waiting[(robot_id, command_id)] = future
        try:
            if not send(command_frame(command_id, command_type, payload_json)):
                raise RobotNotConnected(f'robot {robot_id} is not connected')
            return await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
            raise CommandTimeout(f'robot {robot_id} did not answer within {timeout_s} s') from None
        finally:
            self._waiting.pop((robot_id, command_id), None)

    def resolve(self, robot_id: str, response: CommandResponse) -> bool:
        """Hand a robot's response to its caller; False if nobody waits for it."""
        future = self._waiting.get((robot_id, response.id))
        if future is None or future.done():
            return False
        future.set_result(response)
        return True

    def robot_gone(self, robot_id: str) -> None:
        """Fail the robot's outstanding commands at once instead of letting them time out."""
        for (rid, _cid), future in list(self._waiting.items()):
            if rid == robot_id and not future.done():
                future.set_exception(RobotNotConnected(f'robot {robot_id} disconnected'))
