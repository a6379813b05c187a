"""A stand-in for the fleet gateway in the uplink's tests: protocol-conformant, small, strict.

It speaks robot protocol `lekiwi-fleet/1` (docs/robot-protocol.md) over the `websockets`
library on 127.0.0.1 (port 0), in a thread of its own so tests stay synchronous:
- validates every frame a robot sends against docs/robot-protocol-v1.schema.json and records
  any violation (tests assert there is none);
- authenticates (`auth` first, known token; refusals close with 4401) and replaces an older
  connection of the same robot (4409);
- "commits" publishes once per (robot, boot_id, seq), counting duplicates, and acknowledges in
  batches, as the real gateway does after its durable commit;
- sends commands and goals and collects the answers; can withhold acks, refuse or fail
  chosen frames, cut connections and stop/restart listening on the same port.
It is not the real gateway (src/lekiwi_fleet_server); the system tests use that one.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol_schema import robot_frame_kind, validator
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

PROTOCOL = 'lekiwi-fleet/1'


@dataclass
class Committed:
    """One stored robot message."""

    robot_id: str
    boot_id: str
    seq: int
    topic: str
    msg: dict[str, Any]


@dataclass
class Robot:
    """Server-side view of one robot connection."""

    robot_id: str
    ws: ServerConnection
    responses: dict[str, asyncio.Future] = field(default_factory=dict)
    action_frames: list[dict[str, Any]] = field(default_factory=list)
    # Seqs received per boot and not yet acked, on this connection only: a cut connection's
    # pending acks must not swallow those of the robot's next connection.
    pending_acks: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))


class UplinkTestServer:
    """The uplink tests' stand-in gateway (see the module docstring)."""

    def __init__(self, tokens: dict[str, str], ack_delay_s: float = 0.01) -> None:
        self.tokens = dict(tokens)
        self.ack_delay_s = ack_delay_s
        self.acks_enabled = True
        self.refuse: dict[tuple[str, int], str] = {}  # (boot_id, seq) -> error code, once
        self.committed: list[Committed] = []
        # Frames without boot_id/seq (robot -> server at most once): (robot, topic, msg).
        self.at_most_once: list[tuple[str, str, dict[str, Any]]] = []
        self.keys: set[tuple[str, str, int]] = set()
        self.duplicates = 0
        self.violations: list[str] = []
        self.auth_results: list[str] = []
        self.frames_received = 0
        self.bytes_received = 0
        self.port = 0
        self._robots: dict[str, Robot] = {}
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._listen())

    # ---- test-facing API (any thread) ----
    @property
    def url(self) -> str:
        return f'ws://127.0.0.1:{self.port}/'

    def connected(self, robot_id: str) -> bool:
        return robot_id in self._robots

    def messages(self, topic: str | None = None) -> list[Committed]:
        with self._lock:
            return [c for c in self.committed if topic is None or c.topic == topic]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def call_command(
        self, robot_id: str, command_type: str, payload: dict | str = '{}', timeout_s: float = 5.0
    ) -> dict[str, Any]:
        """Send a fleet/command call and return the robot's service_response frame."""
        payload_json = payload if isinstance(payload, str) else json.dumps(payload)
        return self._call(self._command(robot_id, command_type, payload_json), timeout_s + 1)

    def send_goal(
        self, robot_id: str, goal_id: str, args: dict[str, Any], *, check: bool = True
    ) -> None:
        frame = {
            'op': 'send_action_goal',
            'id': goal_id,
            'action': 'fleet/deploy',
            'action_type': 'lekiwi_fleet_msgs/action/Deploy',
            'args': args,
            'feedback': True,
        }
        if check:  # this server speaks the protocol too, unless a test breaks it on purpose
            validator('DeployGoalFrame').validate(frame)
        self.send_raw(robot_id, json.dumps(frame))

    def action_frames(self, robot_id: str) -> list[dict[str, Any]]:
        robot = self._robots.get(robot_id)
        return list(robot.action_frames) if robot else []

    def send_raw(self, robot_id: str, text: str | bytes) -> None:
        self._call(self._robots[robot_id].ws.send(text))

    def cut(self, robot_id: str) -> None:
        """Drop a robot's TCP connection without a close handshake (a network cut)."""
        robot = self._robots.get(robot_id)
        if robot is not None:
            self._loop.call_soon_threadsafe(robot.ws.transport.abort)
            # Until this connection is gone: the robot may be back on a new one already.
            self.wait_for(lambda: self._robots.get(robot_id) is not robot)

    def stop_listening(self) -> None:
        """Stop accepting and drop every connection (the server crashed)."""
        self._call(self._shutdown())

    def start_listening(self) -> None:
        """Listen again on the same port (the server came back)."""
        self._call(self._listen())

    def close(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro: Any, timeout_s: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    # ---- server side (the server's own loop) ----
    async def _listen(self) -> None:
        self._server = await serve(
            self._handle, '127.0.0.1', self.port, ping_interval=1.0, max_size=65536
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close(close_connections=False)
            for robot in list(self._robots.values()):
                robot.ws.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: ServerConnection) -> None:
        robot: Robot | None = None
        try:
            # Inside the try: a connection cut while its auth reply is sent is unregistered too.
            robot = await self._authenticate(ws)
            if robot is None:
                return
            async for text in ws:
                self._received(text)
                await self._on_frame(robot, text)
        except ConnectionClosed:
            pass
        finally:
            if robot is not None and self._robots.get(robot.robot_id) is robot:
                del self._robots[robot.robot_id]

    def _received(self, text: str | bytes) -> None:
        self.frames_received += 1
        self.bytes_received += len(text)

    def _check(self, frame: Any, text: str | bytes) -> bool:
        try:
            if not isinstance(frame, dict):
                raise ValueError('not an object')
            validator(robot_frame_kind(frame)).validate(frame)
        except Exception as exc:
            self.violations.append(f'{str(exc)[:300]} in {str(text)[:200]}')
            return False
        return True

    async def _authenticate(self, ws: ServerConnection) -> Robot | None:
        try:
            text = await asyncio.wait_for(ws.recv(), 5.0)
        except (TimeoutError, ConnectionClosed):
            return None
        self._received(text)
        frame = _loads(text)
        if not self._check(frame, text) or frame.get('op') != 'auth':
            await self._refuse(ws, 'unauthenticated', 'the first frame must be auth')
            return None
        robot_id = frame.get('robot_id')
        if self.tokens.get(robot_id) != frame.get('token'):
            await self._refuse(ws, 'auth_failed', 'unknown robot or wrong token')
            return None
        if PROTOCOL not in frame.get('protocol', []):
            await self._refuse(ws, 'unsupported_protocol', 'no common protocol')
            return None
        old = self._robots.get(robot_id)
        robot = Robot(robot_id, ws)
        self._robots[robot_id] = robot
        if old is not None:
            with _quiet():  # the old connection may be dead already: that must not fail this one
                await old.ws.send(_status_error('replaced', 'a newer connection took over'))
                await old.ws.close(4409, 'replaced')
        self.auth_results.append(f'{robot_id}: ok')
        await ws.send(
            json.dumps(
                {
                    'op': 'status',
                    'level': 'info',
                    'id': 'auth',
                    'msg': 'authenticated',
                    'protocol': PROTOCOL,
                    'robot_id': robot_id,
                }
            )
        )
        return robot

    async def _refuse(self, ws: ServerConnection, code: str, msg: str) -> None:
        self.auth_results.append(code)
        with _quiet():
            await ws.send(_status_error(code, msg))
            await ws.close(4401, code)

    async def _on_frame(self, robot: Robot, text: str | bytes) -> None:
        frame = _loads(text)
        op = frame.get('op') if isinstance(frame, dict) else None
        if not self._check(frame, text):
            frame_id = None
            if isinstance(frame, dict) and 'boot_id' in frame and 'seq' in frame:
                frame_id = f'{frame["boot_id"]}:{frame["seq"]}'  # as the protocol says
            await robot.ws.send(_status_error('invalid_message', 'schema violation', frame_id))
            return
        if op == 'service_response':
            future = robot.responses.pop(frame['id'], None)
            if future is not None and not future.done():
                future.set_result(frame)
            return
        if op in ('action_feedback', 'action_result'):
            robot.action_frames.append(frame)  # not acknowledged, as the protocol says
            return
        if op == 'publish':
            await self._on_publish(robot, frame)

    async def _on_publish(self, robot: Robot, frame: dict[str, Any]) -> None:
        if 'boot_id' not in frame:  # the protocol's at-most-once path: kept, never acked
            with self._lock:
                self.at_most_once.append((robot.robot_id, frame['topic'], frame['msg']))
            return
        key = (frame['boot_id'], frame['seq'])
        code = self.refuse.pop(key, None)
        if code is not None:
            await robot.ws.send(_status_error(code, 'refused by the test', f'{key[0]}:{key[1]}'))
            return
        full_key = (robot.robot_id, *key)
        with self._lock:
            if full_key in self.keys:
                self.duplicates += 1
            else:
                self.keys.add(full_key)
                self.committed.append(Committed(robot.robot_id, *key, frame['topic'], frame['msg']))
        if self.acks_enabled:
            pending = robot.pending_acks[key[0]]
            if not pending:
                self._loop.call_later(self.ack_delay_s, self._flush_acks, robot, key[0])
            pending.add(key[1])

    def _flush_acks(self, robot: Robot, boot_id: str) -> None:
        seqs = sorted(robot.pending_acks.pop(boot_id, ()))
        if not seqs or self._robots.get(robot.robot_id) is not robot:
            return
        ranges: list[list[int]] = []
        for seq in seqs:
            if ranges and ranges[-1][1] == seq - 1:
                ranges[-1][1] = seq
            else:
                ranges.append([seq, seq])
        ack = {'boot_id': boot_id, 'ranges': ranges}
        frame = {'op': 'publish', 'topic': 'fleet/ack', 'msg': ack}
        asyncio.ensure_future(_send_quietly(robot.ws, json.dumps(frame)))

    async def _command(self, robot_id: str, command_type: str, payload_json: str) -> dict:
        robot = self._robots[robot_id]
        request_id = f'cmd-{time.monotonic_ns()}'
        future = self._loop.create_future()
        robot.responses[request_id] = future
        call = {
            'op': 'call_service',
            'service': 'fleet/command',
            'id': request_id,
            'args': {
                'command_id': request_id,
                'command_type': command_type,
                'payload_json': payload_json,
            },
        }
        await robot.ws.send(json.dumps(call))
        return await asyncio.wait_for(future, 5.0)


class _quiet:
    """Ignore a connection that closed under us."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, ConnectionClosed)


async def _send_quietly(ws: ServerConnection, text: str) -> None:
    with _quiet():
        await ws.send(text)


def _status_error(code: str, msg: str, frame_id: str | None = None) -> str:
    frame = {'op': 'status', 'level': 'error', 'code': code, 'msg': msg}
    if frame_id is not None:
        frame['id'] = frame_id
    return json.dumps(frame)


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
