"""Dashboard stream: a WebSocket of aggregated fleet updates from the update bus.

The operator authenticates with an `Authorization: Bearer` header or, from a browser (which
cannot set headers on a WebSocket), with a first message `{"op": "auth", "token": "..."}`.
The first message is a snapshot of every robot (whole rows); then one update per committed
batch that changed something: its events, and per robot that changed its `robot_id` and the
fields that changed (in `resources` and `telemetry`, the entries that changed, a removed one as
null), or the whole row when the stream has not carried that robot before. A dashboard sets a
delta's fields on the row it holds (gateway/summary_deltas.py, `apply_delta`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server.api.deps import Services, operator_for_token
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.gateway.bus import encode_update
from lekiwi_fleet_server.store.interface import Operator, RobotFilter

router = APIRouter(tags=['stream'])

CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_SLOW = 4008


async def _read_token(websocket: WebSocket, timeout_s: float) -> str | None:
    header = websocket.headers.get('authorization', '')
    if header.lower().startswith('bearer '):
        return header[7:].strip()
    try:
        first = await asyncio.wait_for(websocket.receive_text(), timeout_s)
        message = orjson.loads(first)
    except (asyncio.TimeoutError, orjson.JSONDecodeError, WebSocketDisconnect, KeyError):
        return None
    token = message.get('token') if isinstance(message, dict) else None
    return token if isinstance(token, str) and message.get('op') == 'auth' else None


async def _authenticate(websocket: WebSocket, services: FleetServices) -> Operator | None:
    token = await _read_token(websocket, services.settings.stream_auth_timeout_s)
    if token is None:
        return None
    return await run_in_threadpool(operator_for_token, services, token)


@router.websocket('/api/v1/stream')
async def stream(websocket: WebSocket, services: Services) -> None:
    """Stream fleet updates to an authenticated operator."""
    await websocket.accept()
    operator = await _authenticate(websocket, services)
    if operator is None:
        await websocket.send_text('{"type":"error","code":"unauthorized"}')
        await websocket.close(CLOSE_UNAUTHORIZED, 'unauthorized')
        return
    subscription = services.bus.subscribe()
    services.metrics.dashboard_subscribers.inc()
    # Drain the client's side so that a close is noticed while we wait on the bus.
    reader = asyncio.create_task(_until_closed(websocket))
    reader.add_done_callback(lambda _t: subscription.close())
    try:
        robots = await run_in_threadpool(services.store.list_robots, RobotFilter(),
                                         now=services.now())
        await websocket.send_text(encode_update('snapshot', services.now(), robots, []))
        lag = services.metrics.stream_lag_seconds
        while (update := await subscription.get()) is not None:
            await websocket.send_text(update)
            age = update_age(update, services.now())
            if age is not None:
                lag.observe(age)
        if subscription.dropped:
            await websocket.close(CLOSE_TOO_SLOW, 'too slow: updates dropped')
    except (WebSocketDisconnect, RuntimeError):
        pass  # the dashboard went away mid-send
    finally:
        services.metrics.dashboard_subscribers.dec()
        subscription.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


async def _until_closed(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while (await websocket.receive())['type'] != 'websocket.disconnect':
            pass


_AT = re.compile(r'"at":(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)')


def update_age(update: str, now: float) -> float | None:
    """Return how long ago an encoded update's batch started committing (its `at`)."""
    # encode_update writes `at` second: a search of the first bytes, not a parse of the update.
    match = _AT.search(update, 0, 80)
    return max(0.0, now - float(match.group(1))) if match else None
