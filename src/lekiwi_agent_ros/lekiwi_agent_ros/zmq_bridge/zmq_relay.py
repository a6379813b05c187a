"""ZmqRelay: a transparent ZeroMQ relay between LeKiwi operators and the LeKiwi host (shell).

The relay binds the host's public ports (commands 5555, observations 5556) and connects to the
host, moved to other ports. Frames go through unchanged, both ways, as soon as they arrive: one
thread polls the four sockets and forwards; nothing is parsed on that path (the callbacks get
the bytes and must be quick). Sockets are set as LeRobot sets its own: CONFLATE (only the
newest frame waits) and no linger, so a stalled side never builds a queue of stale commands.
Socket monitors on the two bound sockets count connected operators and observation consumers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from lekiwi_agent_ros.zmq_bridge.relay_core import ConnectionCounter

_MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED


@dataclass(frozen=True)
class RelayConfig:
    """Where the relay listens and where the host now is."""

    bind_address: str = '*'
    command_port: int = 5555  # 0: any free port (tests)
    observation_port: int = 5556
    host_address: str = '127.0.0.1'
    host_command_port: int = 15555
    host_observation_port: int = 15556

    def problems(self) -> list[str]:
        """List what is wrong with these values."""
        found = []
        for name in ('command_port', 'observation_port', 'host_command_port',
                     'host_observation_port'):
            value = getattr(self, name)
            low = 0 if name in ('command_port', 'observation_port') else 1
            if not low <= value <= 65535:
                found.append(f'{name} must be within {low}..65535, got {value}')
        if self.command_port and self.command_port == self.observation_port:
            found.append('command_port and observation_port must differ')
        if not self.bind_address or not self.host_address:
            found.append('bind_address and host_address must not be empty')
        return found


class ZmqRelay:
    """Forward LeKiwi commands to the host and observations to operators, unchanged."""

    def __init__(
        self,
        config: RelayConfig,
        on_command: Callable[[bytes], None],
        on_observation: Callable[[bytes], None],
    ) -> None:
        """Bind the public sockets and connect to the host (nothing flows until start())."""
        self._context = zmq.Context()
        self._on_command = on_command
        self._on_observation = on_observation
        self.operators = ConnectionCounter()
        self.consumers = ConnectionCounter()
        self.commands_forwarded = 0
        self.observations_forwarded = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        sockets = []
        try:
            self._commands_in = self._socket(zmq.PULL, sockets)
            self._observations_out = self._socket(zmq.PUSH, sockets)
            self._commands_out = self._socket(zmq.PUSH, sockets)
            self._observations_in = self._socket(zmq.PULL, sockets)
            self.command_port = _bind(self._commands_in, config.bind_address,
                                      config.command_port)
            self.observation_port = _bind(self._observations_out, config.bind_address,
                                          config.observation_port)
            self._commands_out.connect(f'tcp://{config.host_address}:{config.host_command_port}')
            self._observations_in.connect(
                f'tcp://{config.host_address}:{config.host_observation_port}')
            self._operator_events = self._commands_in.get_monitor_socket(_MONITOR_EVENTS)
            self._consumer_events = self._observations_out.get_monitor_socket(_MONITOR_EVENTS)
        except BaseException:
            for socket in sockets:
                socket.close(linger=0)
            self._context.term()
            raise
        self._sockets = sockets

    def _socket(self, kind: int, sockets: list[zmq.Socket]) -> zmq.Socket:
        socket = self._context.socket(kind)
        sockets.append(socket)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.CONFLATE, 1)
        return socket

    def start(self) -> None:
        """Start forwarding in a thread of its own."""
        self._thread = threading.Thread(target=self._run, name='zmq_relay', daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        for socket in (self._commands_in, self._observations_in, self._operator_events,
                       self._consumer_events):
            poller.register(socket, zmq.POLLIN)
        while not self._stop.is_set():
            ready = dict(poller.poll(200))  # ms: how soon stop() is noticed
            if self._commands_in in ready:
                for frame in _drain(self._commands_in):
                    self._forward(self._commands_out, frame)
                    self.commands_forwarded += 1
                    self._on_command(frame)
            if self._observations_in in ready:
                for frame in _drain(self._observations_in):
                    self._forward(self._observations_out, frame)
                    self.observations_forwarded += 1
                    self._on_observation(frame)
            if self._operator_events in ready:
                _count(self._operator_events, self.operators)
            if self._consumer_events in ready:
                _count(self._consumer_events, self.consumers)

    def _forward(self, socket: zmq.Socket, frame: bytes) -> None:
        try:
            socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:  # no peer on that side yet: the host would drop it as stale anyway
            self.dropped += 1

    def close(self) -> None:
        """Stop forwarding and close every socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for socket in (self._commands_in, self._observations_out):
            try:
                socket.disable_monitor()
            except zmq.ZMQError:
                pass
        for socket in (*self._sockets, self._operator_events, self._consumer_events):
            socket.close(linger=0)
        self._context.term()


def _bind(socket: zmq.Socket, address: str, port: int) -> int:
    """Bind `socket` (port 0: any free port) and return the port it got."""
    socket.bind(f'tcp://{address}:{port or "*"}')
    endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    return int(endpoint.rsplit(':', 1)[1])


def _drain(socket: zmq.Socket) -> list[bytes]:
    """Take every frame waiting (with CONFLATE, at most one)."""
    frames = []
    while True:
        try:
            frames.append(socket.recv(zmq.NOBLOCK))
        except zmq.Again:
            return frames


def _count(monitor: zmq.Socket, counter: ConnectionCounter) -> None:
    while True:
        try:
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
        except zmq.Again:
            return
        if event['event'] == zmq.EVENT_ACCEPTED:
            counter.accepted()
        elif event['event'] == zmq.EVENT_DISCONNECTED:
            counter.disconnected()
