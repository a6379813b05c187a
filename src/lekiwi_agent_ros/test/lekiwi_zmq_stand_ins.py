"""Stand-ins for LeRobot's LeKiwi host and client, speaking their ZeroMQ wire format.

lerobot's `lekiwi_host.py` needs the robot's motors and cameras, so these stand-ins (named as
such) take its place in tests: the host binds a PULL socket for actions and a PUSH socket for
observations, the client connects a PUSH and a PULL, all with CONFLATE as lerobot sets them.
Actions are JSON objects of floats; observations JSON objects of state floats and base64 JPEGs.
"""

from __future__ import annotations

import base64
import json

import zmq


def _socket(context: zmq.Context, kind: int) -> zmq.Socket:
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.CONFLATE, 1)
    return socket


class StandInLeKiwiHost:
    """The host side: PULL for actions, PUSH for observations, bound on loopback."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.commands = _socket(self.context, zmq.PULL)
        self.observations = _socket(self.context, zmq.PUSH)
        self.command_port = self.commands.bind_to_random_port('tcp://127.0.0.1')
        self.observation_port = self.observations.bind_to_random_port('tcp://127.0.0.1')

    def receive(self, timeout_ms: int = 5000) -> bytes | None:
        if self.commands.poll(timeout_ms):
            return self.commands.recv()
        return None

    def send(self, frame: bytes) -> None:
        self.observations.send(frame)

    def close(self) -> None:
        self.commands.close()
        self.observations.close()
        self.context.term()


class StandInLeKiwiClient:
    """The operator side (LeKiwiClient): PUSH actions, PULL observations."""

    def __init__(self, command_port: int, observation_port: int) -> None:
        self.context = zmq.Context()
        self.commands = _socket(self.context, zmq.PUSH)
        self.observations = _socket(self.context, zmq.PULL)
        self.commands.connect(f'tcp://127.0.0.1:{command_port}')
        self.observations.connect(f'tcp://127.0.0.1:{observation_port}')

    def send(self, frame: bytes) -> None:
        self.commands.send(frame)

    def send_action(self, action: dict[str, float]) -> None:
        self.commands.send_string(json.dumps(action))

    def receive(self, timeout_ms: int = 5000) -> bytes | None:
        if self.observations.poll(timeout_ms):
            return self.observations.recv()
        return None

    def close(self) -> None:
        self.commands.close()
        self.observations.close()
        self.context.term()


def action(x_vel: float = 0.0, pan: float = 0.0) -> dict[str, float]:
    """Return an action of the LeKiwi's keys (arm positions and base velocities)."""
    return {'arm_shoulder_pan.pos': pan, 'arm_shoulder_lift.pos': -40.0,
            'arm_elbow_flex.pos': 60.0, 'arm_wrist_flex.pos': 10.0, 'arm_wrist_roll.pos': 0.0,
            'arm_gripper.pos': 5.0, 'x.vel': x_vel, 'y.vel': 0.0, 'theta.vel': 0.0}


def observation(jpeg: bytes, **state: float) -> bytes:
    """Return one observation frame as the host sends it."""
    values: dict[str, object] = {**action(), **state}
    values['front'] = base64.b64encode(jpeg).decode('ascii')
    values['wrist'] = base64.b64encode(jpeg[::-1]).decode('ascii')
    return json.dumps(values).encode()
