"""Dashboard stream: a WebSocket of aggregated fleet updates from the update bus.

The operator authenticates with an `Authorization: Bearer` header or, from a browser (which
cannot set headers on a WebSocket), with a first message `{"op": "auth", "token": "..."}`, or
with the dashboard's login session cookie (same origin only).
The first message is a snapshot of every robot (whole rows, their status from live presence:
api/presence_view.py); then one update per committed
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

from lekiwi_fleet_server.api.deps import SESSION_COOKIE, Services, operator_for_token, principal
from lekiwi_fleet_server.api.presence_view import live_robots
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.api.snapshot import SharedSnapshots
from lekiwi_fleet_server.broker.presence import RegistryUnavailable
from lekiwi_fleet_server.domain.roles import role_allows
from lekiwi_fleet_server.gateway.bus import Subscription, encode_update
from lekiwi_fleet_server.store.interface import Operator, RobotFilter

router = APIRouter(tags=['stream'])

CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_SLOW = 4008
CLOSE_TRY_AGAIN = 1013


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


def _same_origin(websocket: WebSocket) -> bool:
    # A page of another site must not ride on the dashboard's cookie (cross-site WebSocket
    # hijacking): a browser always sends Origin, and it must name this host.
    origin = websocket.headers.get('origin', '')
    return origin.split('://', 1)[-1] == websocket.headers.get('host', '')


async def _authenticate(websocket: WebSocket, services: FleetServices) -> Operator | None:
    if websocket.cookies.get(SESSION_COOKIE) and 'authorization' not in websocket.headers:
        if not _same_origin(websocket):
            return None
        operator = await run_in_threadpool(principal, websocket, services,
                                           websocket.app.state.accounts, None)
    else:
        token = await _read_token(websocket, services.settings.stream_auth_timeout_s)
        if token is None:
            return None
        operator = await run_in_threadpool(operator_for_token, services, token)
    return operator if operator is not None and role_allows(operator.role, 'viewer') else None


@router.websocket('/api/v1/stream')
async def stream(websocket: WebSocket, services: Services, inventory: bool = False) -> None:
    """Stream fleet updates to an authenticated operator (with `inventory`, discovery's too)."""
    await websocket.accept()
    operator = await _authenticate(websocket, services)
    if operator is None:
        await websocket.send_text('{"type":"error","code":"unauthorized"}')
        await websocket.close(CLOSE_UNAUTHORIZED, 'unauthorized')
        return
    subscription = services.bus.subscribe()
    ticket = _snapshots(websocket, services).ticket()  # right after subscribing: see snapshot.py
    services.metrics.dashboard_subscribers.inc()
    # Drain the client's side so that a close is noticed while we wait on the bus.
    reader = asyncio.create_task(_until_closed(websocket))
    reader.add_done_callback(lambda _t: subscription.close())
    forward = _forward_inventory(services, subscription) if inventory else None
    try:
        # The hand-over: every batch that commits from now on reaches this subscription (its
        # events always, its rows as deltas once it began after the subscribe); the snapshot
        # is read once the batches that began before are done, so it holds their rows. An
        # update of a batch the snapshot already holds sets rows to what they are already or
        # were just before, and the updates after it, queued in commit order, bring them on.
        await services.bus.settled()
        try:  # one build shared by the dashboards that subscribed before it (api/snapshot.py)
            snapshot = await _snapshots(websocket, services).get(ticket)
        except RegistryUnavailable as exc:
            # Status cannot be told without the registry: say so; the page retries (backoff).
            await websocket.send_text(orjson.dumps(
                {'type': 'error', 'code': 'presence_unavailable', 'detail': str(exc)}).decode())
            await websocket.close(CLOSE_TRY_AGAIN, 'presence registry unavailable')
            return
        await websocket.send_text(snapshot)
        if inventory and services.discovery is not None:
            await websocket.send_text(services.discovery.snapshot())
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
        if forward is not None:
            forward.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


def _snapshots(websocket: WebSocket, services: FleetServices) -> SharedSnapshots:
    """Return the app's shared snapshot builder (made with the first stream)."""
    state = websocket.app.state
    made: tuple[FleetServices, SharedSnapshots] | None = getattr(state, 'stream_snapshots', None)
    if made is None or made[0] is not services:  # one per lifespan (an app may start twice)
        async def build() -> str:
            robots = await run_in_threadpool(services.store.list_robots, RobotFilter(),
                                             now=services.now())
            # Presence from the live registry, as REST (api/presence_view.py).
            robots = await live_robots(services, robots)
            return encode_update('snapshot', services.now(), robots, [])

        made = state.stream_snapshots = (services, SharedSnapshots(build))
    return made[1]


@router.websocket('/api/v1/stream/inventory')
async def inventory_stream(websocket: WebSocket, services: Services) -> None:
    """Stream the discovery inventory alone: its snapshot, then its changes."""
    # Its own endpoint on discovery's bus: the inventory page follows discovery without a
    # second copy of every robot update (10,000 robots' worth) that `?inventory=true` carries.
    await websocket.accept()
    operator = await _authenticate(websocket, services)
    if operator is None or services.discovery is None:
        await websocket.send_text('{"type":"error","code":"unauthorized"}')
        await websocket.close(CLOSE_UNAUTHORIZED, 'unauthorized')
        return
    subscription = services.discovery.bus.subscribe()
    reader = asyncio.create_task(_until_closed(websocket))
    reader.add_done_callback(lambda _t: subscription.close())
    try:
        # Subscribed first: a change after the snapshot is read arrives as an update.
        await websocket.send_text(services.discovery.snapshot())
        while (update := await subscription.get()) is not None:
            await websocket.send_text(update)
        if subscription.dropped:
            await websocket.close(CLOSE_TOO_SLOW, 'too slow: updates dropped')
    except (WebSocketDisconnect, RuntimeError):
        pass  # the page went away mid-send
    finally:
        subscription.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


def _forward_inventory(services: FleetServices, into: Subscription) -> asyncio.Task[None] | None:
    """Forward discovery's inventory updates into a dashboard's subscription."""
    if services.discovery is None:
        return None
    source = services.discovery.bus.subscribe()

    async def forward() -> None:
        try:
            while not into.closed and (update := await source.get()) is not None:
                into.offer(update)
        finally:
            source.close()

    return asyncio.get_running_loop().create_task(forward())


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
