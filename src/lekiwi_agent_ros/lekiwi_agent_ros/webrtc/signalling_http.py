"""A small HTTP/1.1 server on asyncio streams for WebRTC signalling (stdlib only).

The streamer needs one JSON endpoint (offer -> answer); a web framework would add a dependency
and megabytes to a robot process for that. One request per connection (`Connection: close`),
bounded head and body sizes, and a deadline for reading a request, so a slow or hostile client
cannot hold the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEAD_BYTES = 16_384
_log = logging.getLogger(__name__)


class HttpError(Exception):
    """A request that is answered with an error status and a JSON reason."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Keep the status, the reason and any extra headers."""
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


@dataclass(frozen=True)
class HttpRequest:
    """One parsed request; header names are lower case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b''

    def json(self) -> object:
        """Return the body as JSON, or raise HttpError 400."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, 'body is not JSON') from exc


@dataclass(frozen=True)
class HttpResponse:
    """One response."""

    status: int
    body: bytes = b''
    content_type: str = 'application/json'
    headers: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def json(cls, status: int, data: object,
             headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
        """Build a JSON response."""
        return cls(status, json.dumps(data).encode(), headers=headers)

    def encode(self) -> bytes:
        """Serialise status line, headers and body."""
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:
            phrase = 'Unknown'
        lines = [f'HTTP/1.1 {self.status} {phrase}', f'Content-Length: {len(self.body)}',
                 'Connection: close', 'Cache-Control: no-store']
        if self.body:
            lines.append(f'Content-Type: {self.content_type}')
        lines.extend(f'{name}: {value}' for name, value in self.headers)
        return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1') + self.body


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Parse a request line and headers, or raise HttpError 400."""
    try:
        text = head.decode('latin-1')
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, 'bad request head') from exc
    lines = text.split('\r\n')
    parts = lines[0].split(' ')
    if len(parts) != 3 or not parts[2].startswith('HTTP/1.'):
        raise HttpError(400, 'bad request line')
    method, target, _ = parts
    if not method.isalpha() or not target.startswith('/'):
        raise HttpError(400, 'bad request line')
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(':')
        if not sep or not name or name != name.strip():
            raise HttpError(400, 'bad header line')
        headers[name.lower()] = value.strip()
    path = target.split('?', 1)[0]
    return method.upper(), path, headers


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class HttpServer:
    """Serve `handler` over HTTP/1.1, one request per connection."""

    def __init__(self, handler: Handler, *, max_body_bytes: int = 65_536,
                 read_timeout_s: float = 5.0) -> None:
        """Keep the handler and the limits."""
        self._handler = handler
        self._max_body = max_body_bytes
        self._read_timeout_s = read_timeout_s
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 picks a free port); return the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port,
                                                  limit=MAX_HEAD_BYTES)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and end open connections."""
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request, answer it, close."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                request = await asyncio.wait_for(self._read(reader), self._read_timeout_s)
                response = await self._handler(request)
            except HttpError as exc:
                response = HttpResponse.json(exc.status, {'error': exc.reason}, exc.headers)
            except asyncio.TimeoutError:  # not the builtin before Python 3.11
                response = HttpResponse.json(408, {'error': 'request not received in time'})
            except Exception:
                _log.exception('signalling handler failed')
                response = HttpResponse.json(500, {'error': 'internal error'})
            writer.write(response.encode())
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> HttpRequest:
        """Read and parse one request within the limits."""
        try:
            head = await reader.readuntil(b'\r\n\r\n')
        except asyncio.LimitOverrunError as exc:
            raise HttpError(431, 'request head too large') from exc
        except asyncio.IncompleteReadError as exc:
            raise HttpError(400, 'incomplete request') from exc
        method, path, headers = parse_head(head[:-4])
        if 'transfer-encoding' in headers:
            raise HttpError(411, 'send a Content-Length, not a Transfer-Encoding')
        length_text = headers.get('content-length', '0')
        if not length_text.isdigit():
            raise HttpError(400, 'bad Content-Length')
        length = int(length_text)
        if length > self._max_body:
            raise HttpError(413, f'body larger than {self._max_body} bytes')
        try:
            body = await reader.readexactly(length) if length else b''
        except asyncio.IncompleteReadError as exc:
            raise HttpError(400, 'incomplete body') from exc
        return HttpRequest(method, path, headers, body)
