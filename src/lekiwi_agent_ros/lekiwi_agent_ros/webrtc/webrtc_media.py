"""Camera frames from the ROS thread to aiortc video tracks.

`FrameHub` keeps only the newest frame (a slow peer skips frames rather than queueing them) and
wakes the asyncio side only while a track is waiting, so the camera costs next to nothing when
no operator is connected. Decoding happens per track, lazily, in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from aiortc import MediaStreamTrack

_log = logging.getLogger(__name__)
VIDEO_CLOCK = Fraction(1, 90_000)
# sensor_msgs/Image encodings -> (PyAV pixel format, bytes per pixel)
RAW_ENCODINGS = {
    'rgb8': ('rgb24', 3),
    'bgr8': ('bgr24', 3),
    'rgba8': ('rgba', 4),
    'bgra8': ('bgra', 4),
    'mono8': ('gray', 1),
}


@dataclass(frozen=True)
class CameraFrame:
    """One camera message as received: compressed bytes, or raw pixels with their geometry."""

    seq: int
    received: float  # monotonic seconds
    encoding: str  # CompressedImage.format or Image.encoding
    data: bytes | bytearray | memoryview
    compressed: bool
    width: int = 0
    height: int = 0
    step: int = 0


class FrameHub:
    """Hand the newest camera frame from the ROS thread to tracks on the asyncio loop."""

    def __init__(self, now: Callable[[], float]) -> None:
        """Start with no frame; bind a loop before tracks wait on it."""
        self._now = now
        # Guards _latest and _waiter: put() runs on the ROS executor thread, next_after() on
        # the asyncio thread.
        self._lock = threading.Lock()
        self._latest: CameraFrame | None = None
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set the loop whose tracks consume frames."""
        self._loop = loop

    def put(self, encoding: str, data: bytes | bytearray | memoryview, compressed: bool,
            width: int = 0, height: int = 0, step: int = 0) -> None:
        """Publish a new frame (any thread); wake waiting tracks."""
        with self._lock:
            self._seq += 1
            self._latest = CameraFrame(self._seq, self._now(), encoding, data, compressed,
                                       width, height, step)
            wake = self._waiter is not None
        if wake and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(self._wake)

    def last_received(self) -> float | None:
        """Return when the newest frame arrived (monotonic), or None."""
        with self._lock:
            return self._latest.received if self._latest else None

    def is_live(self, stale_s: float) -> bool:
        """Say whether a frame arrived within the last `stale_s` seconds."""
        last = self.last_received()
        return last is not None and self._now() - last <= stale_s

    async def next_after(self, seq: int) -> CameraFrame:
        """Wait for a frame newer than `seq` (call on the bound loop)."""
        while True:
            with self._lock:
                frame = self._latest
                if frame is not None and frame.seq > seq:
                    return frame
                if self._waiter is None or self._waiter.done():
                    self._waiter = asyncio.get_running_loop().create_future()
                waiter = self._waiter
            await waiter

    def _wake(self) -> None:
        """Resolve the current waiter (on the loop)."""
        with self._lock:
            waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class FrameDecoder:
    """Turn camera frames into av.VideoFrames; one per track, since codec state is not shared."""

    def __init__(self) -> None:
        """Create decoders on first use."""
        self._codecs: dict[str, Any] = {}  # PyAV's stubs type create() as a bare CodecContext
        self._warned: set[str] = set()

    def decode(self, frame: CameraFrame) -> av.VideoFrame | None:
        """Decode one frame, or return None for an unsupported or corrupt one."""
        try:
            if frame.compressed:
                return self._decode_compressed(frame)
            return self._decode_raw(frame)
        except (av.FFmpegError, ValueError) as exc:
            self._warn_once(f'corrupt:{frame.encoding}', f'cannot decode a {frame.encoding!r} '
                            f'camera frame: {exc}')
            return None

    def _decode_compressed(self, frame: CameraFrame) -> av.VideoFrame | None:
        """Decode a JPEG or PNG CompressedImage."""
        encoding = frame.encoding.lower()
        codec_name = 'png' if 'png' in encoding else 'mjpeg' if 'jp' in encoding else None
        if codec_name is None:
            self._warn_once(encoding, f'unsupported CompressedImage format {frame.encoding!r}')
            return None
        codec: Any = self._codecs.get(codec_name)
        if codec is None:
            codec = self._codecs[codec_name] = av.CodecContext.create(codec_name, 'r')
        frames = codec.decode(av.Packet(bytes(frame.data)))
        return frames[-1] if frames else None

    def _decode_raw(self, frame: CameraFrame) -> av.VideoFrame | None:
        """Wrap a raw Image's pixels, honouring its row step."""
        known = RAW_ENCODINGS.get(frame.encoding)
        if known is None:
            self._warn_once(frame.encoding, f'unsupported Image encoding {frame.encoding!r}')
            return None
        import numpy as np  # only the streamer process pays for numpy, and only for raw images

        pix_fmt, bpp = known
        width, height, step = frame.width, frame.height, frame.step
        if width <= 0 or height <= 0 or step < width * bpp or len(frame.data) < step * height:
            raise ValueError(f'{width}x{height} step {step} does not fit {len(frame.data)} bytes')
        rows = np.frombuffer(frame.data, dtype=np.uint8, count=step * height).reshape(height, step)
        pixels = rows[:, :width * bpp]
        shape = (height, width) if bpp == 1 else (height, width, bpp)
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels).reshape(shape),
                                          format=pix_fmt)

    def _warn_once(self, key: str, text: str) -> None:
        """Log a problem once per kind, not once per frame."""
        if key not in self._warned:
            self._warned.add(key)
            _log.warning(text)


class CameraTrack(MediaStreamTrack):
    """A video track that sends the newest camera frame to one peer."""

    kind = 'video'

    def __init__(self, hub: FrameHub) -> None:
        """Read frames from `hub`."""
        super().__init__()
        self._hub = hub
        self._decoder = FrameDecoder()
        self._seq = 0
        self._t0: float | None = None
        self._last_pts = -1

    async def recv(self) -> av.VideoFrame:
        """Return the next decodable camera frame, timed by its arrival."""
        loop = asyncio.get_running_loop()
        while True:
            frame = await self._hub.next_after(self._seq)
            self._seq = frame.seq
            # Decoding takes milliseconds: keep it off the loop that answers pings.
            video = await loop.run_in_executor(None, self._decoder.decode, frame)
            if video is None:
                continue
            if self._t0 is None:
                self._t0 = frame.received
            pts = max(int((frame.received - self._t0) / VIDEO_CLOCK), self._last_pts + 1)
            self._last_pts = pts
            video.pts = pts
            video.time_base = VIDEO_CLOCK
            return video
