"""FrameHub hand-over across threads, decoding of camera frames, and the camera track."""

from __future__ import annotations

import asyncio
import threading
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from webrtc_client import make_jpeg

from lekiwi_agent_ros.webrtc.webrtc_media import CameraFrame, CameraTrack, FrameDecoder, FrameHub


def raw_frame(encoding: str, width: int, height: int, step: int, data: bytes) -> CameraFrame:
    return CameraFrame(1, 0.0, encoding, data, False, width, height, step)


def test_decodes_jpeg_and_png() -> None:
    decoder = FrameDecoder()
    jpeg = decoder.decode(CameraFrame(1, 0.0, 'jpeg', make_jpeg(64, 48), True))
    assert (jpeg.width, jpeg.height) == (64, 48)
    encoder = av.CodecContext.create('png', 'w')
    encoder.width, encoder.height, encoder.pix_fmt = 8, 4, 'rgb24'
    encoder.time_base = Fraction(1, 1)
    pixels = np.zeros((4, 8, 3), dtype=np.uint8)
    png = bytes(encoder.encode(av.VideoFrame.from_ndarray(pixels, format='rgb24'))[0])
    decoded = decoder.decode(CameraFrame(2, 0.0, 'rgb8; png compressed bgr8', png, True))
    assert (decoded.width, decoded.height) == (8, 4)


def test_raw_images_honour_row_padding() -> None:
    width, height, step = 3, 2, 12  # 9 bytes of pixels and 3 of padding per row
    rows = [bytes([10, 20, 30] * 3) + b'\xff' * 3, bytes([40, 50, 60] * 3) + b'\xff' * 3]
    frame = FrameDecoder().decode(raw_frame('rgb8', width, height, step, b''.join(rows)))
    assert frame.format.name == 'rgb24'
    assert frame.to_ndarray()[1, 2].tolist() == [40, 50, 60]
    mono = FrameDecoder().decode(raw_frame('mono8', 4, 2, 4, bytes(range(8))))
    assert mono.to_ndarray()[1].tolist() == [4, 5, 6, 7]


def test_unsupported_or_corrupt_frames_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    decoder = FrameDecoder()
    assert decoder.decode(CameraFrame(1, 0.0, 'h264', b'x', True)) is None
    assert decoder.decode(CameraFrame(2, 0.0, 'jpeg', b'not a jpeg at all', True)) is None
    assert decoder.decode(raw_frame('yuv422', 2, 2, 4, bytes(8))) is None
    assert decoder.decode(raw_frame('rgb8', 4, 4, 12, bytes(10))) is None  # too short
    assert decoder.decode(raw_frame('rgb8', 4, 4, 12, bytes(10))) is None
    warnings = [r.getMessage() for r in caplog.records]
    assert sum('does not fit' in w for w in warnings) == 1  # once per kind, not per frame
    assert any("unsupported CompressedImage format 'h264'" in w for w in warnings)
    assert any("unsupported Image encoding 'yuv422'" in w for w in warnings)


def test_hub_hands_the_newest_frame_across_threads() -> None:
    async def scenario() -> None:
        hub = FrameHub(time.monotonic)
        hub.bind(asyncio.get_running_loop())
        assert hub.last_received() is None and not hub.is_live(1.0)
        waiting = asyncio.create_task(hub.next_after(0))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        thread = threading.Thread(target=lambda: [hub.put('jpeg', bytes([i]), True)
                                                  for i in range(3)])
        thread.start()
        frame = await asyncio.wait_for(waiting, 2.0)
        thread.join()
        assert frame.seq >= 1
        newest = await asyncio.wait_for(hub.next_after(frame.seq - 1), 1.0)
        assert newest.seq >= frame.seq  # a waiter always gets the newest, never a backlog
        assert hub.is_live(1.0)

    asyncio.run(scenario())


def test_track_times_frames_by_arrival_and_skips_bad_ones() -> None:
    async def scenario() -> None:
        now = [100.0]
        hub = FrameHub(lambda: now[0])
        hub.bind(asyncio.get_running_loop())
        track = CameraTrack(hub)
        jpeg = make_jpeg(32, 24)
        hub.put('jpeg', jpeg, True)
        first = await asyncio.wait_for(track.recv(), 2.0)
        assert first.pts == 0 and first.time_base == Fraction(1, 90_000)
        hub.put('jpeg', b'corrupt', True)  # skipped: recv waits for the next good frame
        now[0] += 0.5
        later = asyncio.create_task(track.recv())
        await asyncio.sleep(0.05)
        hub.put('jpeg', jpeg, True)
        second = await asyncio.wait_for(later, 2.0)
        assert second.pts == 45_000
        hub.put('jpeg', jpeg, True)  # same arrival time: pts still increases
        third = await asyncio.wait_for(track.recv(), 2.0)
        assert third.pts == 45_001

    asyncio.run(scenario())
