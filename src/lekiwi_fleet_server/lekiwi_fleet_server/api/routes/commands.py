"""Commands to a connected robot (operator role): sent over its gateway connection."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, HTTPException, status

from lekiwi_fleet_server.api.deps import OperatorRole, Services
from lekiwi_fleet_server.api.schemas import CommandRequest, CommandResult
from lekiwi_fleet_server.gateway.commands import (
    CommandTimeout,
    InvalidCommand,
    RobotNotConnected,
)

router = APIRouter(prefix='/api/v1/robots', tags=['commands'])


@router.post('/{robot_id}/commands', response_model=CommandResult)
async def send_command(robot_id: str, body: CommandRequest, services: Services,
                       _operator: OperatorRole) -> CommandResult:
    """Send a command and wait for the robot's answer (409 offline, 504 no answer)."""
    try:
        response = await services.gateway.send_command(
            robot_id, body.command_type, orjson.dumps(body.payload).decode())
    except InvalidCommand as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except RobotNotConnected as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except CommandTimeout as exc:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, str(exc)) from None
    return CommandResult(command_id=response.id, result=response.result,
                         accepted=response.accepted, message=response.message)
