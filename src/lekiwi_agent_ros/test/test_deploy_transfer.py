"""Differential transfer over real HTTP: only missing blobs, range resume, digests, hard links."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lekiwi_agent_ros.deploy.manifest import build_manifest, diff
from lekiwi_agent_ros.deploy.transfer import (
    BlobFetcher,
    RateLimiter,
    TransferCancelled,
    TransferError,
    assemble,
    installed_blobs,
)

TOKEN = 'robot-token'


class BlobServer:
    """A real HTTP server of blobs by digest with bearer auth and Range (cut after N bytes)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                digest = self.path.rsplit('/', 1)[-1]
                server.requests.append((digest, self.headers.get('Range')))
                if self.headers.get('Authorization') != f'Bearer {TOKEN}':
                    self.send_error(401)
                    return
                data = server.blobs.get(digest)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng := self.headers.get('Range'):
                    start = int(rng.split('=')[1].rstrip('-'))
                    self.send_response(206)
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(body[:server.cut_after])
                    server.cut_after = None
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_port}/blobs'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest


@pytest.fixture
def server() -> Iterator[BlobServer]:
    s = BlobServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def fetcher(server: BlobServer, tmp_path: Path, **kw: object) -> BlobFetcher:
    return BlobFetcher(server.url, TOKEN, tmp_path / 'cache', rate=RateLimiter(0),
                       timeout_s=5.0, **kw)  # type: ignore[arg-type]


def test_an_interrupted_download_resumes_with_a_range_request(
        server: BlobServer, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    digest = server.add(data)
    server.cut_after = 100_000
    blobs = fetcher(server, tmp_path)
    with pytest.raises(TransferError):
        blobs.fetch(digest, len(data))
    moved = blobs.fetch(digest, len(data))
    assert moved == 200_000
    assert server.requests[-1] == (digest, 'bytes=100000-')
    cached = blobs.cached(digest)
    assert cached is not None and cached.read_bytes() == data
    assert blobs.fetch(digest, len(data)) == 0  # cached: nothing moves


def test_a_wrong_digest_or_a_refused_token_is_an_error_and_caches_nothing(
        server: BlobServer, tmp_path: Path) -> None:
    digest = server.add(b'good')
    server.blobs[digest] = b'evil'
    with pytest.raises(TransferError, match='does not match'):
        fetcher(server, tmp_path).fetch(digest, 4)
    bad = BlobFetcher(server.url, 'wrong', tmp_path / 'c2', rate=RateLimiter(0))
    with pytest.raises(TransferError, match='401'):
        bad.fetch(server.add(b'x'), 1)
    with pytest.raises(TransferError, match='404'):
        fetcher(server, tmp_path).fetch('0' * 64, 1)
    assert not any((tmp_path / 'cache').glob('*[!t]'))


def test_cancel_stops_a_download(server: BlobServer, tmp_path: Path) -> None:
    digest = server.add(os.urandom(200_000))
    with pytest.raises(TransferCancelled):
        fetcher(server, tmp_path, cancelled=lambda: True).fetch(digest, 200_000)


def test_rate_limiter_sleeps_to_hold_the_cap() -> None:
    clock = [0.0]
    slept: list[float] = []
    limiter = RateLimiter(1000, now=lambda: clock[0], sleep=slept.append)
    limiter.take(500)
    limiter.take(1500)
    assert slept == [0.5, 2.0]
    RateLimiter(0).take(10**9)  # no cap: returns at once


def test_a_second_release_fetches_only_changed_files_and_links_the_rest(
        server: BlobServer, tmp_path: Path) -> None:
    src = tmp_path / 'src'
    (src / 'launch').mkdir(parents=True)
    for i in range(20):
        (src / f'f{i}').write_bytes(os.urandom(5000))
    os.symlink('f0', src / 'link')
    os.chmod(src / 'f1', 0o755)
    v1 = build_manifest(src, '1')
    for entry in v1.files():
        server.add((src / entry.path).read_bytes())
    blobs = fetcher(server, tmp_path)
    for digest, size in diff(v1, []).fetch.items():
        blobs.fetch(digest, size)
    sources = {d: tmp_path / 'cache' / d for d in v1.digests()}
    assemble(v1, tmp_path / 'releases' / '1', sources)
    assert build_manifest(tmp_path / 'releases' / '1', '1') == v1

    (src / 'f3').write_bytes(os.urandom(5000))
    v2 = build_manifest(src, '2')
    server.add((src / 'f3').read_bytes())
    have = installed_blobs(v1, tmp_path / 'releases' / '1')
    plan = diff(v2, have)
    assert plan.fetch_bytes == 5000 and plan.full_bytes == 100_000
    requests_before = len(server.requests)
    for digest, size in plan.fetch.items():
        blobs.fetch(digest, size)
    assert len(server.requests) == requests_before + 1
    sources = dict(have) | {d: tmp_path / 'cache' / d for d in plan.fetch}
    assemble(v2, tmp_path / 'releases' / '2', sources, verify_reused=True)
    assert build_manifest(tmp_path / 'releases' / '2', '2') == v2
    same = (tmp_path / 'releases' / '1' / 'f5', tmp_path / 'releases' / '2' / 'f5')
    assert same[0].stat().st_ino == same[1].stat().st_ino  # a hard link, not a copy
    with pytest.raises(TransferError, match='missing'):
        assemble(v2, tmp_path / 'releases' / '3', {})
