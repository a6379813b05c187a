"""Commands sent from the API, each recorded on the robot's stream with who sent it.

Every operator action shows in the timeline with its actor (issue 19): a command becomes a
`RobotCommandSent` event (type, outcome, the robot's message) whose metadata names the
operator. It is recorded after the robot answered or the attempt failed, so the outcome is
the real one; a command refused as invalid before sending is not an action and is not
recorded. A store that cannot record it does not turn the robot's answer into an error (the
command ran): it is logged instead.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.domain.events import RobotCommandSent
from lekiwi_fleet_server.domain.protocol import CommandResponse
from lekiwi_fleet_server.gateway.commands import CommandTimeout, InvalidCommand, RobotNotConnected
from lekiwi_fleet_server.store.interface import StoreError, UnknownRobot

log = logging.getLogger(__name__)


async def send_recorded_command(services: FleetServices, actor: str, robot_id: str,
                                command_type: str, payload_json: str) -> CommandResponse:
    """Send a command to a robot and record it, with its actor and outcome, as an event."""
    outcome, message, command_id, record = 'failed', '', '', True
    try:
        # To the gateway that holds the robot, wherever it runs (broker/routing.py).
        response = await (services.router or services.gateway).send_command(
            robot_id, command_type, payload_json)
    except InvalidCommand:
        record = False
        raise
    except RobotNotConnected:
        outcome = 'not_connected'
        raise
    except CommandTimeout:
        outcome = 'timeout'
        raise
    else:
        outcome = 'accepted' if response.result and response.accepted else 'refused'
        message, command_id = response.message, response.id
        return response
    finally:
        if record:
            await _record(services, actor, RobotCommandSent(
                robot_id, command_id=command_id, command_type=command_type, outcome=outcome,
                message=message[:200], at=services.now()))


async def _record(services: FleetServices, actor: str, event: RobotCommandSent) -> None:
    try:
        await run_in_threadpool(services.store.record_robot_event, event, now=services.now(),
                                actor=actor, causation='api:command')
    except UnknownRobot:
        pass  # not enrolled: the command could not have reached it; nothing to attach it to
    except StoreError as exc:
        log.warning('command %s to %s (%s) by %s not recorded: %s', event.command_type,
                    event.robot_id, event.outcome, actor, exc)
