"""A real aiortc operator peer for the streamer tests (and camera frames to feed it)."""

from __future__ import annotations

import asyncio
import json
import time
from fractions import Fraction

import av
import httpx
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription


def make_jpeg(width: int = 160, height: int = 120, seed: int = 0) -> bytes:
    """Encode one noisy test picture as JPEG."""
    encoder = av.CodecContext.create('mjpeg', 'w')
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = 'yuvj420p'
    encoder.time_base = Fraction(1, 15)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(pixels, format='rgb24').reformat(format='yuvj420p')
    return bytes(encoder.encode(frame)[0])


class OperatorClient:
    """An operator's browser, played by aiortc: receives video, sends joystick and pongs."""

    def __init__(self, url: str, token: str | None, video: bool = True,
                 data_channel: bool = True, answer_acks: bool = True,
                 ack_delay_s: float = 0.0) -> None:
        self.url = url
        self.token = token
        self.answer_acks = answer_acks
        self.ack_delay_s = ack_delay_s  # an operator whose command loop is this much slower
        self.acks: dict[object, float] = {}  # command id -> when its ack came (monotonic)
        self.sent_at: dict[object, float] = {}
        self.pc = RTCPeerConnection()
        self.frames = 0
        self.pings_answered = 0
        self.received: list[dict] = []
        self._reader: asyncio.Task | None = None
        if video:
            self.pc.addTransceiver('video', direction='recvonly')
        self.channel = self.pc.createDataChannel('control') if data_channel else None
        if self.channel is not None:
            self.channel.on('message', self._on_message)
        self.pc.on('track', self._on_track)

    def _on_track(self, track) -> None:
        async def read() -> None:
            while True:
                await track.recv()
                self.frames += 1

        self._reader = asyncio.ensure_future(read())

    def _on_message(self, raw: str) -> None:
        message = json.loads(raw)
        self.received.append(message)
        if message.get('type') == 'ping':
            self.channel.send(json.dumps({'type': 'pong', 'id': message['id']}))
            self.pings_answered += 1
        elif message.get('type') == 'ack':
            self.acks[message.get('id')] = time.monotonic()
            if self.answer_acks:
                answer = json.dumps({'type': 'ack', 'seq': message['seq']})
                if self.ack_delay_s:
                    asyncio.get_running_loop().call_later(self.ack_delay_s,
                                                          self.channel.send, answer)
                else:
                    self.channel.send(answer)

    async def offer(self, body: object | None = None) -> httpx.Response:
        """Send the offer (or `body` instead) to the streamer; return the HTTP response."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        if body is None:
            body = {'sdp': self.pc.localDescription.sdp, 'type': 'offer'}
        headers = {'Authorization': f'Bearer {self.token}'} if self.token else {}
        async with httpx.AsyncClient(timeout=10.0) as http:
            return await http.post(self.url, json=body, headers=headers)

    async def connect(self, timeout: float = 10.0) -> None:
        """Offer, apply the answer and wait for the data channel (or the connection) to open."""
        response = await self.offer()
        response.raise_for_status()
        await self.pc.setRemoteDescription(RTCSessionDescription(**response.json()))
        deadline = time.monotonic() + timeout
        while (self.channel.readyState if self.channel else self.pc.connectionState) not in (
                'open', 'connected'):
            if time.monotonic() > deadline:
                raise TimeoutError('data channel did not open')
            await asyncio.sleep(0.02)

    def send(self, message: dict | str) -> None:
        """Send one raw or JSON message on the data channel."""
        self.channel.send(message if isinstance(message, str) else json.dumps(message))

    async def drive(self, seconds: float, rate_hz: float = 30.0) -> None:
        """Send moving joystick commands at rate_hz for `seconds`."""
        n = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            n += 1
            self.sent_at[n] = time.monotonic()
            self.send({'type': 'joy', 'axes': [0.6, 0.3 * ((n % 10) / 10.0)], 'buttons': [0, 0],
                       'id': n})
            await asyncio.sleep(1.0 / rate_hz)

    async def vanish(self) -> None:
        """Go silent without saying goodbye, as a browser whose network dropped."""
        if self._reader is not None:
            self._reader.cancel()
        for transceiver in self.pc.getTransceivers():
            await transceiver.receiver.transport.transport.stop()
        if self.pc.sctp is not None:
            await self.pc.sctp.transport.transport.stop()

    async def close(self) -> None:
        """Hang up cleanly."""
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()
