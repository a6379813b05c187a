"""The small signalling HTTP server over real loopback sockets."""

from __future__ import annotations

import asyncio
import json

import pytest

from lekiwi_agent_ros.webrtc.signalling_http import (
    HttpError,
    HttpRequest,
    HttpResponse,
    HttpServer,
    parse_head,
)


async def echo(request: HttpRequest) -> HttpResponse:
    if request.path == '/boom':
        raise RuntimeError('handler bug')
    if request.path == '/refuse':
        raise HttpError(409, 'refused', (('X-Why', 'test'),))
    return HttpResponse.json(200, {'method': request.method, 'path': request.path,
                                   'body': request.body.decode(),
                                   'auth': request.headers.get('authorization')})


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    head, _, body = data.partition(b'\r\n\r\n')
    lines = head.decode().split('\r\n')
    headers = dict(line.split(': ', 1) for line in lines[1:])
    return int(lines[0].split(' ')[1]), headers, body


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20.0))


async def with_server(body, **limits):
    server = HttpServer(echo, **limits)
    port = await server.start('127.0.0.1', 0)
    try:
        return await body(port)
    finally:
        await server.close()


def test_post_with_body_and_query() -> None:
    async def body(port: int):
        payload = b'{"a": 1}'
        return await exchange(port, b'POST /offer?x=1 HTTP/1.1\r\nHost: x\r\n'
                              b'Authorization: Bearer abc\r\nContent-Length: 8\r\n\r\n' + payload)

    status, headers, raw = run(with_server(body))
    assert status == 200
    assert headers['Connection'] == 'close'
    assert headers['Content-Type'] == 'application/json'
    assert json.loads(raw) == {'method': 'POST', 'path': '/offer', 'body': '{"a": 1}',
                               'auth': 'Bearer abc'}


@pytest.mark.parametrize(
    ('raw', 'status'),
    [
        (b'GARBAGE\r\n\r\n', 400),
        (b'GET nopath HTTP/1.1\r\n\r\n', 400),
        (b'G3T / HTTP/1.1\r\n\r\n', 400),
        (b'GET / HTTP/1.1\r\nno colon here\r\n\r\n', 400),
        (b'POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n', 400),
        (b'POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n', 413),
        (b'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n', 411),
        (b'GET / HTTP/1.1\r\nX: ' + b'a' * 20_000 + b'\r\n\r\n', 431),
        (b'GET /refuse HTTP/1.1\r\n\r\n', 409),
        (b'GET /boom HTTP/1.1\r\n\r\n', 500),
    ],
)
def test_bad_requests_get_a_clear_status(raw: bytes, status: int) -> None:
    got, headers, body = run(with_server(lambda port: exchange(port, raw), max_body_bytes=1000))
    assert got == status
    assert 'error' in json.loads(body)
    if status == 409:
        assert headers['X-Why'] == 'test'


def test_incomplete_body_and_slow_clients_are_cut_off() -> None:
    async def half_close(port: int):
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        writer.write(b'POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc')
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        return data

    async def slow(port: int):
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        writer.write(b'GET / HTTP/1.1\r\n')  # and then nothing
        data = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        return data

    assert b' 400 ' in run(with_server(half_close)).split(b'\r\n')[0]
    assert b' 408 ' in run(with_server(slow, read_timeout_s=0.2)).split(b'\r\n')[0]


def test_close_ends_open_connections() -> None:
    async def scenario() -> bytes:
        server = HttpServer(echo, read_timeout_s=30.0)
        port = await server.start('127.0.0.1', 0)
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        writer.write(b'GET / HTTP/1.1\r\n')
        await asyncio.sleep(0.05)
        await asyncio.wait_for(server.close(), 5.0)
        data = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        return data

    assert run(scenario()) == b''


def test_parse_head_and_response_encoding() -> None:
    assert parse_head(b'post /a HTTP/1.0\r\nX-A:  b \r\n') == ('POST', '/a', {'x-a': 'b'})
    with pytest.raises(HttpError):
        parse_head(b'GET / FTP/1.1')
    assert HttpResponse(599).encode().startswith(b'HTTP/1.1 599 Unknown\r\n')
    assert b'Content-Type' not in HttpResponse(204).encode()
    with pytest.raises(HttpError, match='not JSON'):
        HttpRequest('POST', '/', {}, b'{').json()
