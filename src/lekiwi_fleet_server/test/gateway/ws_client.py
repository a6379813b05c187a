"""Test clients of the robot gateway: a `websockets` robot and a raw-socket one.

The raw client speaks just enough RFC 6455 to do what a well-behaved library will not: stay
silent (never answer pings), stop reading, or send a frame of any size.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from typing import Any

import orjson
import robot_frames as rf
import websockets
from websockets.asyncio.client import ClientConnection


class Robot:
    """A robot on a `websockets` connection with helpers for the protocol."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> Robot:
        return cls(await websockets.connect(url, open_timeout=5, **kwargs))

    @classmethod
    async def authenticated(cls, url: str, robot_id: str, token: str) -> Robot:
        robot = await cls.connect(url)
        await robot.send(rf.auth(robot_id, token))
        reply = await robot.recv()
        assert reply.get('msg') == 'authenticated', reply
        return robot

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        if isinstance(frame, dict):
            frame = orjson.dumps(frame).decode()
        await self.ws.send(frame)

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return orjson.loads(raw)  # type: ignore[no-any-return]

    async def recv_until(self, predicate: Any, timeout: float = 3.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            frame = await self.recv(max(left, 0.001))
            if predicate(frame):
                return frame

    async def acked(self, boot_id: str, seqs: set[int], timeout: float = 3.0) -> set[int]:
        """Collect acks of `boot_id` until all of `seqs` are covered; return what was acked."""
        got: set[int] = set()
        deadline = asyncio.get_running_loop().time() + timeout
        while not seqs <= got:
            left = deadline - asyncio.get_running_loop().time()
            frame = await self.recv(max(left, 0.001))
            if frame.get('topic') == 'fleet/ack' and frame['msg']['boot_id'] == boot_id:
                for first, last in frame['msg']['ranges']:
                    got.update(range(first, last + 1))
        return got

    async def closed(self, timeout: float = 3.0) -> tuple[int | None, list[dict[str, Any]]]:
        """Read until the server closes; return (close code, frames received meanwhile)."""
        frames = []
        try:
            while True:
                frames.append(await self.recv(timeout))
        except websockets.ConnectionClosed as exc:
            return (exc.rcvd.code if exc.rcvd else None), frames

    async def close(self) -> None:
        await self.ws.close()


class RawClient:
    """A minimal blocking-free WebSocket client on a raw socket (asyncio streams)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, rcvbuf: int | None = None) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f'GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n'
                      f'Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n'
                      'Sec-WebSocket-Version: 13\r\n\r\n').encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b'\r\n\r\n'), 5)
        assert b' 101 ' in head.split(b'\r\n', 1)[0], head
        return cls(reader, writer)

    def frame(self, payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack('!H', n)
        else:
            head += bytes([0x80 | 127]) + struct.pack('!Q', n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + masked

    async def send(self, payload: bytes | dict[str, Any], opcode: int = 0x1,
                   fin: bool = True) -> None:
        if isinstance(payload, dict):
            payload = orjson.dumps(payload)
        self.writer.write(self.frame(payload, opcode, fin))
        await self.writer.drain()

    async def recv_frame(self, timeout: float = 3.0) -> tuple[int, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        opcode, n = head[0] & 0x0F, head[1] & 0x7F
        if n == 126:
            n = struct.unpack('!H', await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack('!Q', await self.reader.readexactly(8))[0]
        return opcode, await self.reader.readexactly(n)

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        """Return the next text frame as JSON (pings are skipped, not answered)."""
        while True:
            opcode, payload = await self.recv_frame(timeout)
            if opcode == 0x1:
                return orjson.loads(payload)  # type: ignore[no-any-return]
            if opcode == 0x8:
                raise ConnectionError(f'closed {struct.unpack("!H", payload[:2])[0]}')

    async def close_code(self, timeout: float = 3.0) -> int | None:
        """Read until a close frame or EOF; return the close code."""
        try:
            while True:
                opcode, payload = await self.recv_frame(timeout)
                if opcode == 0x8:
                    return struct.unpack('!H', payload[:2])[0] if len(payload) >= 2 else None
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def close(self) -> None:
        self.writer.close()
