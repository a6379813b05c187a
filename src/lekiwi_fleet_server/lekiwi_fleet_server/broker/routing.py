"""Commands and action goals from the API to the gateway that holds the robot.

The API may run beside any gateway, or on a host of its own. It looks the robot's holder up
in the presence registry (broker/presence.py) and, when that is another gateway, asks it with
a NATS request on the gateway's own subject, `lekiwi.gateway.<gateway_id>.robot`; that
gateway sends the frame over the robot's session and replies with the robot's answer. With
one gateway (the embedded default, no NATS), `LocalRouter` calls it directly.

The deployment engine goes the same way (deployments/engine.py): `connected` is who the
router can reach, and `results` carries the robots' Deploy results back. Over NATS every
gateway publishes each `action_result` its robots send on `lekiwi.actions.results` and every
process's router hands them to its `results` relay, so the one engine that drives (the lease
holder, leadership.py) hears the robots of every gateway; a result lost with NATS
is a goal without an answer, failed after the deployment's `robot_timeout_s`.

Wire format (JSON, orjson): a request `{"kind": "command" | "goal" | "cancel", "robot_id",
...}`; a reply `{"ok": true, ...}` or `{"ok": false, "error": "not_connected" | "timeout" |
"invalid", "message"}`, which the caller turns back into the gateway's own exceptions, so the
API answers the same 409/504/400 whichever gateway holds the robot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from lekiwi_fleet_server.broker.presence import PresenceRegistry, RegistryUnavailable
from lekiwi_fleet_server.broker.subjects import ACTION_RESULTS
from lekiwi_fleet_server.domain.protocol import CommandResponse
from lekiwi_fleet_server.gateway.actions import (
    ActionRelay,
    ActionResult,
    result_message,
    result_of_message,
)
from lekiwi_fleet_server.gateway.commands import (
    CommandDispatcher,
    CommandError,
    CommandTimeout,
    InvalidCommand,
    RobotNotConnected,
)

if TYPE_CHECKING:
    from lekiwi_fleet_server.gateway.server import RobotGateway

log = logging.getLogger(__name__)

_ERRORS: dict[str, type[CommandError]] = {
    'not_connected': RobotNotConnected, 'timeout': CommandTimeout, 'invalid': InvalidCommand}
_HOP_S = 2.0  # what a request may take beyond the robot's own answer time (NATS, the hop)


class RoutingUnavailable(CommandError):
    """The broker or the registry cannot be reached: the command was not sent."""


def subject_of(gateway_id: str) -> str:
    """Return the NATS subject a gateway answers robot requests on."""
    return f'lekiwi.gateway.{gateway_id}.robot'


class LocalRouter:
    """One gateway, in this process: call it."""

    def __init__(self, gateway: RobotGateway) -> None:
        self._gw = gateway
        self.results: ActionRelay = gateway.actions  # its robots are all there are

    async def connected(self, robot_ids: Collection[str]) -> set[str]:
        """Return those of the robots with a session on the gateway."""
        return {r for r in robot_ids if self._gw.is_connected(r)}

    async def send_command(self, robot_id: str, command_type: str, payload_json: str,
                           timeout_s: float | None = None) -> CommandResponse:
        """Send a command to the robot and return its answer."""
        return await self._gw.send_command(robot_id, command_type, payload_json, timeout_s)

    async def send_action_goal(self, robot_id: str, goal_id: str, args: Mapping[str, Any]
                               ) -> bool:
        """Send a Deploy goal; False when the robot is not connected."""
        return self._gw.send_action_goal(robot_id, goal_id, args)

    async def cancel_action_goal(self, robot_id: str, goal_id: str) -> bool:
        """Cancel a goal; False when the robot is not connected."""
        return self._gw.cancel_action_goal(robot_id, goal_id)

    async def start(self) -> None:
        """Nothing to start."""

    async def ping(self) -> None:
        """Nothing to reach."""

    async def close(self) -> None:
        """Nothing to close."""


class NatsRouter:
    """Several gateways: reach the robot's holder over NATS; serve requests for ours."""

    def __init__(self, url: str, registry: PresenceRegistry, *,
                 gateway: RobotGateway | None = None, gateway_id: str | None = None,
                 command_timeout_s: float = 10.0, connect_timeout_s: float = 2.0) -> None:
        self._url = url
        self._registry = registry
        self._gw = gateway
        self._gateway_id = gateway_id if gateway_id is not None else (
            gateway.gateway_id if gateway is not None else None)
        self._command_timeout_s = command_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._nc: Any = None
        self.results = ActionRelay()  # the Deploy results of every gateway of the fleet
        self._publishing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect (retrying in the background if NATS is away) and serve our subject."""
        import nats  # the NATS stack only where it is configured

        self._nc = await nats.connect(
            self._url, name=f'lekiwi-router-{self._gateway_id or "api"}',
            connect_timeout=self._connect_timeout_s, allow_reconnect=True,
            max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        await self._nc.subscribe(ACTION_RESULTS, cb=self._take_result)
        if self._gw is not None:
            # Not to a listener here: the engine that drives may be another process's.
            self._gw.actions.listener = self._publish_result
        if self._gw is not None and self._gateway_id is not None:
            await self._nc.subscribe(subject_of(self._gateway_id), cb=self._serve)
        await self._nc.flush()

    async def close(self) -> None:
        """Drain and close the connection."""
        if self._gw is not None and self._gw.actions.listener == self._publish_result:
            self._gw.actions.listener = None
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), 3.0)
            except Exception:  # closing anyway
                await self._nc.close()

    async def ping(self) -> None:
        """Raise RoutingUnavailable unless NATS answers."""
        if self._nc is None or not self._nc.is_connected:
            raise RoutingUnavailable('nats: not connected')
        try:
            await self._nc.flush(timeout=self._connect_timeout_s)
        except Exception as exc:
            raise RoutingUnavailable(f'nats: {exc}') from None

    # -- the API side ---------------------------------------------------------------------
    async def connected(self, robot_ids: Collection[str]) -> set[str]:
        """Return those of the robots some gateway of the fleet holds (the registry's view)."""
        try:
            return set(await self._registry.lookup(robot_ids))
        except RegistryUnavailable as exc:
            raise RoutingUnavailable(str(exc)) from None

    async def _holder(self, robot_id: str) -> str:
        try:
            owner = (await self._registry.lookup([robot_id])).get(robot_id)
        except RegistryUnavailable as exc:
            raise RoutingUnavailable(str(exc)) from None
        if owner is None:
            raise RobotNotConnected(f'robot {robot_id} is not connected')
        return owner.gateway_id

    async def _ask(self, gateway_id: str, request: dict[str, Any], timeout_s: float
                   ) -> dict[str, Any]:
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout

        if self._nc is None or not self._nc.is_connected:
            raise RoutingUnavailable('nats: not connected')
        try:
            msg = await self._nc.request(subject_of(gateway_id), orjson.dumps(request),
                                         timeout=timeout_s)
        except NoRespondersError:
            # The holder's claim outlives it until the TTL: it died or lost NATS.
            raise RobotNotConnected(f'robot {request["robot_id"]}: its gateway {gateway_id} '
                                    'does not answer') from None
        except NatsTimeout:
            raise CommandTimeout(f'robot {request["robot_id"]} did not answer within '
                                 f'{timeout_s:g} s (via gateway {gateway_id})') from None
        except Exception as exc:
            raise RoutingUnavailable(f'nats: {exc}') from None
        reply: dict[str, Any] = orjson.loads(msg.data)
        if not reply.get('ok'):
            raise _ERRORS.get(reply.get('error', ''), CommandError)(reply.get('message', ''))
        return reply

    async def send_command(self, robot_id: str, command_type: str, payload_json: str,
                           timeout_s: float | None = None) -> CommandResponse:
        """Send a command through the robot's gateway and return the robot's answer."""
        CommandDispatcher.validate(command_type, payload_json)  # 400 before any hop
        timeout_s = timeout_s if timeout_s is not None else self._command_timeout_s
        holder = await self._holder(robot_id)
        if self._gw is not None and holder == self._gateway_id:
            return await self._gw.send_command(robot_id, command_type, payload_json, timeout_s)
        reply = await self._ask(holder, {
            'kind': 'command', 'robot_id': robot_id, 'command_type': command_type,
            'payload_json': payload_json, 'timeout_s': timeout_s}, timeout_s + _HOP_S)
        return CommandResponse(**reply['response'])

    async def send_action_goal(self, robot_id: str, goal_id: str, args: Mapping[str, Any]
                               ) -> bool:
        """Send a Deploy goal through the robot's gateway; False when it is not connected."""
        return await self._goal(robot_id, {'kind': 'goal', 'robot_id': robot_id,
                                           'goal_id': goal_id, 'args': dict(args)})

    async def cancel_action_goal(self, robot_id: str, goal_id: str) -> bool:
        """Cancel a goal through the robot's gateway; False when it is not connected."""
        return await self._goal(robot_id, {'kind': 'cancel', 'robot_id': robot_id,
                                           'goal_id': goal_id})

    async def _goal(self, robot_id: str, request: dict[str, Any]) -> bool:
        try:
            holder = await self._holder(robot_id)
            if self._gw is not None and holder == self._gateway_id:
                return self._local_goal(request)
            return bool((await self._ask(holder, request, _HOP_S))['sent'])
        except RobotNotConnected:
            return False

    # -- the gateway side -----------------------------------------------------------------
    def _publish_result(self, result: ActionResult) -> None:
        task = asyncio.get_running_loop().create_task(
            self._nc.publish(ACTION_RESULTS, result_message(result)))
        self._publishing.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._published)

    def _published(self, task: asyncio.Task[None]) -> None:
        self._publishing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning('routing: a Deploy result not published (%s)', task.exception())

    async def _take_result(self, msg: Any) -> None:
        try:
            result = result_of_message(msg.data)
        except ValueError as exc:
            log.warning('routing: bad Deploy result message (%s)', exc)
            return
        self.results.result(result)

    def _local_goal(self, request: dict[str, Any]) -> bool:
        assert self._gw is not None
        if request['kind'] == 'goal':
            return self._gw.send_action_goal(request['robot_id'], request['goal_id'],
                                             request['args'])
        return self._gw.cancel_action_goal(request['robot_id'], request['goal_id'])

    async def _serve(self, msg: Any) -> None:
        reply: dict[str, Any]
        try:
            request = orjson.loads(msg.data)
            if request['kind'] == 'command':
                assert self._gw is not None
                response = await self._gw.send_command(
                    request['robot_id'], request['command_type'], request['payload_json'],
                    float(request['timeout_s']))
                reply = {'ok': True, 'response': dataclasses.asdict(response)}
            else:
                reply = {'ok': True, 'sent': self._local_goal(request)}
        except CommandError as exc:
            kind = next((k for k, cls in _ERRORS.items() if isinstance(exc, cls)), 'invalid')
            reply = {'ok': False, 'error': kind, 'message': str(exc)}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            reply = {'ok': False, 'error': 'invalid', 'message': f'bad request: {exc}'}
        try:
            await msg.respond(orjson.dumps(reply))
        except Exception as exc:  # the asker went away; nothing to do
            log.info('routing: reply not sent (%s)', exc)


def open_router(settings: Any, gateway: RobotGateway, registry: PresenceRegistry
                ) -> LocalRouter | NatsRouter:
    """Return the router the settings name: over NATS when `nats_url` is set, else local."""
    if settings.nats_url:
        return NatsRouter(settings.nats_url, registry, gateway=gateway,
                          command_timeout_s=settings.command_timeout_s)
    return LocalRouter(gateway)
