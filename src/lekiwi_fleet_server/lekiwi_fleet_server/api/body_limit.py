"""Refuse request bodies beyond a size before they are read whole (pure ASGI middleware).

Not FastAPI's own `max_body_size`: with a Content-Length over the limit, Starlette's limiter
answers in plain text, outside the API's one error format.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lekiwi_fleet_server.api.errors import error_response

MAX_BODY_BYTES = 256 * 1024  # the largest body a route takes is a command (16 KB payload)


class BodyTooLarge(HTTPException):
    """The body went beyond the limit while it was received (FastAPI re-raises it as is)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f'the body is larger than {max_bytes} bytes')


class BodyLimit:
    """Answer 413, in the API's error format, to an HTTP request whose body is too large."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        length = dict(scope['headers']).get(b'content-length')
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            refused = BodyTooLarge(self.max_bytes)
            await error_response(413, 'payload_too_large', refused.detail)(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            # A chunked body has no length up front: count it as it arrives.
            nonlocal received
            message = await receive()
            if message['type'] == 'http.request':
                received += len(message.get('body', b''))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted_receive, send)
