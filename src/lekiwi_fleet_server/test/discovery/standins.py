"""Stand-ins for what runs on robots, for scanner and ingest tests (named as stand-ins).

- `RosbridgeStandIn`: a rosbridge v2 WebSocket endpoint, written for the tests because a stock
  `rosbridge_server` is not installable here. It follows ROSBRIDGE_PROTOCOL.md for the ops
  the fleet server uses: `subscribe`/`unsubscribe` (3.2.4/3.2.5), `publish` to subscribers
  (3.2.3), `call_service` answered by `service_response` (3.2.8/3.2.9, `result` false for an
  unknown service), and a `status` error for a malformed or unknown op, as rosbridge does. It
  records every frame a client sent, so tests check the server against the spec.
- `AgentStatusStandIn`: an HTTP endpoint answering GET /lekiwi/status like the agent's
  (lekiwi_agent_ros/discovery/status_endpoint.py, tested against the scanner at the root).
- `SilentListener`: accepts TCP connections and never answers (a hung service).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve

KNOWN_SERVICES = {'/rosapi/get_time': {'time': {'sec': 1, 'nanosec': 0}}}
_OPS = {'subscribe', 'unsubscribe', 'publish', 'call_service', 'advertise', 'unadvertise',
        'service_response', 'set_level'}


class RosbridgeStandIn:
    """A rosbridge v2 server stand-in on one address and port."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self.received: list[dict[str, Any]] = []
        self.subscriptions: dict[ServerConnection, dict[str, str | None]] = {}
        self._server: Server | None = None
        self.connections = 0

    async def start(self) -> RosbridgeStandIn:
        self._server = await serve(self._handle, self.address, self.port, compression=None)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def drop_clients(self) -> None:
        """Close every client connection (the robot's rosbridge restarting)."""
        for ws in list(self.subscriptions):
            await ws.close()

    def subscribed(self, topic: str) -> bool:
        return any(topic in subs for subs in self.subscriptions.values())

    async def publish(self, topic: str, msg: dict[str, Any]) -> int:
        """Send a message on `topic` to every subscriber (3.2.3); return how many got it."""
        frame = json.dumps({'op': 'publish', 'topic': topic, 'msg': msg})
        sent = 0
        for ws, subs in list(self.subscriptions.items()):
            if topic in subs:
                try:
                    await ws.send(frame)
                    sent += 1
                except websockets.ConnectionClosed:
                    pass
        return sent

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.subscriptions[ws] = {}
        try:
            async for payload in ws:
                await self._frame(ws, payload)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.subscriptions.pop(ws, None)

    async def _frame(self, ws: ServerConnection, payload: str | bytes) -> None:
        try:
            frame = json.loads(payload)
        except ValueError:
            await self._status(ws, 'error', 'Unable to load JSON message')
            return
        self.received.append(frame)
        op = frame.get('op') if isinstance(frame, dict) else None
        if op not in _OPS:
            await self._status(ws, 'error', f'Unknown operation: {op}')
            return
        if op == 'subscribe':
            topic = frame.get('topic')
            if not isinstance(topic, str) or not isinstance(frame.get('type', ''), str):
                await self._status(ws, 'error', 'subscribe: topic (and type) must be strings')
                return
            self.subscriptions[ws][topic] = frame.get('id')
        elif op == 'unsubscribe':
            self.subscriptions[ws].pop(frame.get('topic'), None)
        elif op == 'call_service':
            service = frame.get('service')
            if not isinstance(service, str) or not isinstance(frame.get('args', []),
                                                              list | dict):
                await self._status(ws, 'error', 'call_service: service must be a string')
                return
            response: dict[str, Any] = {'op': 'service_response', 'service': service,
                                        'result': service in KNOWN_SERVICES}
            if 'id' in frame:
                response['id'] = frame['id']
            response['values'] = KNOWN_SERVICES.get(
                service, f'Service {service} does not exist')
            await ws.send(json.dumps(response))

    @staticmethod
    async def _status(ws: ServerConnection, level: str, msg: str) -> None:
        await ws.send(json.dumps({'op': 'status', 'level': level, 'msg': msg}))


def agent_status(robot_id: str, **extra: Any) -> dict[str, Any]:
    """Return a status document as the agent's endpoint serves it."""
    return {'service': 'lekiwi-agent', 'robot_id': robot_id, 'agent_version': '0.1.0',
            'software_version': 'sim-1', 'enrolled': True, 'uplink': 'connected', **extra}


class AgentStatusStandIn:
    """Answer GET /lekiwi/status with a JSON document (or whatever `body` says)."""

    def __init__(self, address: str, port: int, body: bytes, status: int = 200) -> None:
        self.address, self.port, self.body, self.status = address, port, body, status
        self._server: asyncio.Server | None = None

    async def start(self) -> AgentStatusStandIn:
        self._server = await asyncio.start_server(self._handle, self.address, self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b'\r\n\r\n')
            writer.write(f'HTTP/1.0 {self.status} X\r\nContent-Type: application/json\r\n'
                         f'Content-Length: {len(self.body)}\r\n\r\n'.encode() + self.body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class SilentListener:
    """Accept connections and say nothing."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self._server: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []

    async def start(self) -> SilentListener:
        async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self._held.append(w)

        self._server = await asyncio.start_server(hold, self.address, self.port)
        return self

    async def stop(self) -> None:
        for w in self._held:
            w.close()
        if self._server is not None:
            self._server.close()


def heartbeat(robot_id: str, sequence: int = 1, software_version: str = '1.0.0',
              sec: int = 1764190000) -> dict[str, Any]:
    """Return a valid lekiwi_fleet_msgs/RobotHeartbeat as rosbridge would publish it."""
    return {'header': {'stamp': {'sec': sec, 'nanosec': 0}, 'frame_id': ''},
            'robot_id': robot_id, 'agent_version': 'stock-rosbridge',
            'software_version': software_version, 'boot_id': '0123456789abcdef',
            'sequence': sequence, 'state': 1, 'teleop_active': False, 'teleop_score': 0.0,
            'resources': {'cpu_percent': 10.0, 'load_average_1min': 0.1,
                          'memory_used_bytes': 1, 'memory_total_bytes': 2,
                          'disk_used_bytes': 1, 'disk_total_bytes': 2, 'temperature_c': None,
                          'battery_voltage_v': 12.0, 'battery_percent': None,
                          'network_tx_bytes_per_s': None, 'network_rx_bytes_per_s': None,
                          'uptime_s': 5.0}}


class LoopThread:
    """An event loop in a thread of its own, for stand-ins beside a synchronous TestClient."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def call(self, coro: Any, timeout_s: float = 10.0) -> Any:
        """Run a coroutine on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)
