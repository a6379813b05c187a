"""The robot gateway: a picows WebSocket server on the API's event loop.

It owns the sessions, presence, the commit batchers and command dispatch. Store calls never run
on the loop: publish frames go undecoded to the batcher of the robot's writer shard, whose
committer decodes and commits them in that shard's writer (a thread of this process), or
publishes them to the shard's JetStream partition (broker/: the writer's acks come back through
`deliver`); token look-ups go through a small reader pool. Acks go out only from
`_on_committed`, after the transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from picows import ws_create_server

from lekiwi_fleet_server.broker.presence import InProcessRegistry, PresenceRegistry
from lekiwi_fleet_server.domain.presence import PresenceTracker
from lekiwi_fleet_server.domain.protocol import CommandResponse, ErrorCode, ProtocolError
from lekiwi_fleet_server.domain.rate_limit import TokenBucket
from lekiwi_fleet_server.domain.shards import shard_of
from lekiwi_fleet_server.domain.tokens import generate_token, hash_token, token_matches
from lekiwi_fleet_server.gateway.actions import ActionRelay, cancel_frame, goal_frame
from lekiwi_fleet_server.gateway.admissions import AdmissionDesk
from lekiwi_fleet_server.gateway.batcher import CommitBatcher
from lekiwi_fleet_server.gateway.bus import UpdateBus
from lekiwi_fleet_server.gateway.commands import CommandDispatcher
from lekiwi_fleet_server.gateway.commit_worker import (
    CommitOutcome,
    Committer,
    ThreadCommitter,
    refusal_error,
)
from lekiwi_fleet_server.gateway.http_uplink import HttpUplink
from lekiwi_fleet_server.gateway.ownership import FencedCommitter, SessionOwnership
from lekiwi_fleet_server.gateway.session import RobotSession
from lekiwi_fleet_server.gateway.writer_metrics import WriterMetrics
from lekiwi_fleet_server.metrics import FleetMetrics
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import FleetStore, PresenceChange, RobotCredentials

log = logging.getLogger(__name__)

# picows refuses frames above its own limit by closing with 1009 before we see them; we keep
# that limit above max_frame_bytes so that a moderately oversize frame reaches the session
# (which answers oversize_frame, then closes), and a huge one is cut off without buffering it.
# For those, _LibraryRefusals sends the same oversize_frame status frame first.
_HARD_FRAME_FACTOR = 4
_HARD_FRAME_MIN = 256 * 1024
_LOGGER = 'lekiwi.gateway'
# picows logs under its own prefix, each connection as a child: picows.lekiwi.gateway.<fd>
_PICOWS_LOGGER = f'picows.{_LOGGER}'
_READ_BUFFER_BYTES = 4096  # grows on demand; picows' 16 KiB default costs 160 MB at 10k robots


_TOO_BIG = re.compile(r'(\d+) > (\d+)')


class _LibraryRefusals(logging.Handler):
    """Answer a frame picows refuses for its size with oversize_frame, as the session would.

    picows parses the frame header, finds the length over its limit and, in one go, logs
    "WS parser error" on the connection's logger (`picows.lekiwi.gateway.<fd>`), sends close
    1009 and disconnects, with no hook for the application. The log record comes first and is
    handled synchronously, so the status frame written here precedes the close frame on the
    wire. The
    gateway test of oversize frames pins this (every size, up to 2^40 bytes), so a picows that
    changes it fails there rather than in the field.
    """

    def __init__(self, gateway: RobotGateway) -> None:
        super().__init__(logging.ERROR)
        self._gw = gateway

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not str(record.msg).startswith('WS parser error') or not record.args:
                return
            args = record.args[0] if isinstance(record.args, tuple) else None
            if not isinstance(args, tuple) or not args or int(args[0]) != 1009:
                return
            fd = int(record.name.rsplit('.', 1)[1])
            match = _TOO_BIG.search(str(args[1]) if len(args) > 1 else '')
            size = int(match.group(1)) if match else 0
        except (ValueError, IndexError, TypeError):
            return
        self._gw.refused_by_library(fd, size)


class RobotGateway:
    """Accept robots, authenticate them, validate and batch their messages, ack after commit."""

    def __init__(self, settings: Settings, store: FleetStore, bus: UpdateBus,
                 metrics: FleetMetrics, *, committers: Sequence[Committer] | None = None,
                 now: Callable[[], float] = time.time,
                 registry: PresenceRegistry | None = None) -> None:
        self.settings = settings
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self._now = now
        self.commands = CommandDispatcher()
        self.actions = ActionRelay()
        self.presence = PresenceTracker(settings.presence_timeout_s, settings.ping_interval_s)
        self._sessions: dict[str, RobotSession] = {}
        self._open: set[RobotSession] = set()
        self._by_fd: dict[int, RobotSession] = {}  # for _LibraryRefusals
        self._library_refusals = _LibraryRefusals(self)
        # Without committers (the broker's, one per writer shard), commits run in one thread of
        # this process.
        # With several, each commits the robots of its shard (domain/shards.py) in batches of
        # its own, side by side.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix='fleet-writer')
        self._committers = list(committers or [ThreadCommitter(
            store, self._writer, WriterMetrics(metrics.registry, shard=0))])
        # Presence and session ownership live in the registry, shared by every gateway of
        # the fleet (Redis) or this process's own (the embedded default).
        registry = registry or InProcessRegistry(settings.presence_ttl_s, now)
        self.gateway_id = settings.resolved_gateway_id
        self.ownership = SessionOwnership(self, registry, self.gateway_id,
                                          settings.presence_ttl_s)
        if registry.shared:  # several gateways: re-check tokens right before each commit
            self._committers = [FencedCommitter(c, registry) for c in self._committers]
        self._readers = ThreadPoolExecutor(4, thread_name_prefix='fleet-auth')
        interval_s = settings.commit_interval_ms / 1000.0
        self.batchers = [CommitBatcher(
            committer, interval_s=interval_s, max_batch=settings.max_batch_messages,
            max_pending=max(1, settings.max_pending_messages // len(self._committers)),
            retry_s=settings.store_retry_s, on_committed=self._on_committed, metrics=metrics,
            want_update=bus.begin_batch, batch_done=bus.end_batch, now=now,
            flush_interval_s=settings.state_flush_interval_s)
            for committer in self._committers]
        metrics.track_queue_depth(lambda: self.pending)
        self._refused = {code: metrics.frames_refused.labels(code.value) for code in ErrorCode}
        self._received = metrics.messages_received
        # Unknown robots are checked against a random hash so that they take as long as known.
        self._decoy_hash = hash_token(generate_token())
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self.admissions = AdmissionDesk(self)  # robots without a token asking admission
        self.polling = HttpUplink(self)  # robots on HTTP long polling (gateway/http_uplink.py)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Join the presence registry, then listen and run.

        With a shared registry nothing is marked offline here: other gateways hold robots,
        and the claims of one that died expire by their TTL (SessionOwnership reaps them).
        The in-process registry is this process's alone and starts empty: every claim of
        the previous run has expired with it, so its robots are recorded offline at once.
        """
        loop = self._loop = asyncio.get_running_loop()
        if not self.ownership.registry.shared:
            now = self._now()
            marked = sum(await asyncio.gather(
                *(c.mark_all_offline(now) for c in self._committers)))
            log.info('gateway start: %d claims of the last run expired (marked offline)', marked)
        await self.ownership.start()
        hard_limit = max(self.settings.max_frame_bytes * _HARD_FRAME_FACTOR, _HARD_FRAME_MIN)
        logging.getLogger(_PICOWS_LOGGER).addHandler(self._library_refusals)
        self._server = await ws_create_server(
            self._listener_for, self.settings.gateway_host, self.settings.gateway_port,
            websocket_handshake_timeout=self.settings.auth_timeout_s,
            max_frame_size=hard_limit, read_buffer_init_size=_READ_BUFFER_BYTES,
            logger_name=_LOGGER, backlog=4096)
        self._tasks = [loop.create_task(b.run(), name=f'commit-batcher-{i}')
                       for i, b in enumerate(self.batchers)]
        self._tasks.append(loop.create_task(self._sweep_loop(), name='presence-sweep'))
        log.info('robot gateway listening on ws://%s:%d/', self.settings.gateway_host, self.port)

    @property
    def started(self) -> bool:
        """Tell whether `start` has run."""
        return self._server is not None

    @property
    def port(self) -> int:
        """Return the port the gateway listens on (the real one when configured as 0)."""
        assert self._server is not None, 'gateway not started'
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Close every connection, commit what is queued (robots go offline), stop threads."""
        if self._server is not None:
            self._server.close()
        now = self._now()
        leaving = []
        for robot_id, session in list(self._sessions.items()):
            change = self.presence.closed(robot_id, session, now, 'server_shutdown')
            if change is not None:
                leaving.append((session, change))
        self._sessions.clear()
        await self.ownership.stop(leaving)  # offline only for the robots still ours
        for session in list(self._open):
            # 1012, service restart: the robots' uplinks start their backoff again (quick).
            session.close(1012, 'server restarting')
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        drained = await asyncio.gather(*(b.drain(drain_timeout_s) for b in self.batchers))
        if not all(drained):
            log.error('gateway stop: %d messages could not be committed', self.pending)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=False, cancel_futures=True)
        logging.getLogger(_PICOWS_LOGGER).removeHandler(self._library_refusals)

    # -- called by sessions -------------------------------------------------------------------
    def _listener_for(self, request: object) -> RobotSession | None:
        path = getattr(request, 'path', b'/').split(b'?', 1)[0]
        return RobotSession(self) if path in (b'/', b'') else None

    def batcher_of(self, robot_id: str) -> CommitBatcher:
        """Return the batcher of the robot's writer shard."""
        return self.batchers[shard_of(robot_id, len(self.batchers))]

    @property
    def pending(self) -> int:
        """Return how many frames wait for a commit, over every shard."""
        return sum(b.pending for b in self.batchers)

    def now(self) -> float:
        """Return the wall clock the gateway stamps messages with."""
        return self._now()

    def opened(self, session: RobotSession, fd: int | None = None) -> None:
        """Track a new (not yet authenticated) connection and its socket's descriptor.

        A connection the server dialled itself (discovery's rosbridge ingest) has no picows
        socket, so no descriptor.
        """
        self._open.add(session)
        if fd is not None:
            self._by_fd[fd] = session

    def refused_by_library(self, fd: int, size: int) -> None:
        """Send oversize_frame to the connection picows is closing for a frame's size."""
        session = self._by_fd.get(fd)
        if session is not None:
            session.refused_oversize(size)

    def closed(self, session: RobotSession, was_authenticated: bool) -> None:
        """Forget a closed connection; its robot goes offline unless a newer one took over."""
        self._open.discard(session)
        fd = getattr(session, 'fd', None)
        if fd is not None and self._by_fd.get(fd) is session:
            del self._by_fd[fd]
        robot_id = session.robot_id
        # A dialled rosbridge robot's session (discovery/rosbridge_ingest.py) never asks admission.
        asked = getattr(session, 'admission_robot_id', None)
        if asked is not None:
            self.admissions.closed(asked, session)
        if not was_authenticated or robot_id is None:
            return
        if self._sessions.get(robot_id) is session:
            del self._sessions[robot_id]
        change = self.presence.closed(robot_id, session, self._now())
        self.ownership.detached(robot_id, session, change)
        if change is not None:
            self.commands.robot_gone(robot_id)
        self._metrics.connections.set(len(self._sessions))

    def attach(self, session: RobotSession) -> None:
        """Make an authenticated session the robot's current one; close an older one."""
        robot_id = session.robot_id
        assert robot_id is not None
        change, _replaced = self.presence.connected(robot_id, session, self._now())
        older = self._sessions.get(robot_id)
        self._sessions[robot_id] = session
        # Claimed before the older one closes: its close then finds the claim moved on.
        self.ownership.attached(robot_id, session, change)
        if older is not None and older is not session:
            older.refuse(ProtocolError(ErrorCode.REPLACED,
                                       'a newer connection of this robot took over'))
        self._metrics.connections.set(len(self._sessions))

    def heard(self, robot_id: str) -> None:
        """Note life from a robot (any frame or pong)."""
        self.presence.heard(robot_id, self._now())

    def submit(self, robot_id: str, payload: bytes) -> bool:
        """Queue a publish frame for commit; False when the backlog is full."""
        if self.batcher_of(robot_id).submit(robot_id, self._now(), payload):
            self._received.inc()
            return True
        return False

    def rate_bucket(self) -> TokenBucket:
        """Return a new publish-rate bucket for a robot's connection."""
        return TokenBucket(self.settings.robot_rate_per_s, self.settings.robot_rate_burst,
                           time.monotonic())

    def check_robot_limits(self, session: RobotSession, frame_id: str) -> None:
        """Refuse the frame with rate_limited when its robot is over its rate or in-flight cap."""
        robot_id = session.robot_id
        assert robot_id is not None and session.rate is not None
        if not session.rate.admit(time.monotonic()):
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f'over {self.settings.robot_rate_per_s:g} frames/s; send it again in '
                f'{max(0.1, session.rate.retry_after_s()):.1f} s', frame_id)
        if self.batcher_of(robot_id).robot_pending(robot_id) >= self.settings.robot_max_inflight:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f'{self.settings.robot_max_inflight} frames of this robot wait for their commit; '
                'send it again once they are acked', frame_id)

    def count_refused(self, code: ErrorCode) -> None:
        """Count a refused frame by its error code."""
        self._refused[code].inc()

    async def verify_robot(self, robot_id: str, token: str) -> RobotCredentials:
        """Check a robot's token against its stored hash; return its credentials, or raise."""
        credentials = await asyncio.get_running_loop().run_in_executor(
            self._readers, self._store.robot_credentials, robot_id)
        stored = credentials.token_sha256 if credentials is not None else self._decoy_hash
        matches = token_matches(token, stored)
        if credentials is None or not matches:
            raise ProtocolError(ErrorCode.AUTH_FAILED, 'unknown robot or wrong token', 'auth')
        if credentials.revoked:
            raise ProtocolError(ErrorCode.AUTH_FAILED, 'robot token revoked', 'auth')
        return credentials  # its key binding is checked by the session (domain/key_binding)

    @property
    def store(self) -> FleetStore:
        """Return the store (the admission desk enrols through it)."""
        return self._store

    async def robot_known(self, robot_id: str) -> bool:
        """Tell whether the store has this robot, enrolled or revoked."""
        credentials = await asyncio.get_running_loop().run_in_executor(
            self._readers, self._store.robot_credentials, robot_id)
        return credentials is not None

    # -- admin changes made anywhere (store/changes.py) ---------------------------------------
    def store_changed(self, kind: str, key: str) -> None:
        """Take an admin change (from any thread): a robot's credentials or state changed."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_store_change, kind, key)

    def _on_store_change(self, kind: str, key: str) -> None:
        if kind == 'robot':
            self.recheck_robots([key])
        elif kind == 'resync':  # the watcher may have missed changes: check everybody
            self.recheck_robots(list(self._sessions))

    def recheck_robots(self, robot_ids: Sequence[str]) -> None:
        """Make the writers reload these robots and close sessions whose token is no longer good.

        The writers forget first: their next batch reads the robot back (revoked, its frames
        are refused), in order after the batch they are committing now.
        """
        loop = asyncio.get_running_loop()
        by_shard: dict[int, list[str]] = {}
        for robot_id in robot_ids:
            by_shard.setdefault(shard_of(robot_id, len(self._committers)), []).append(robot_id)
        for shard, ids in by_shard.items():
            self._keep(loop.create_task(self._forget(self._committers[shard], ids)))
        for robot_id in robot_ids:
            session = self._sessions.get(robot_id)
            if session is not None:
                self._keep(loop.create_task(self._recheck(robot_id, session)))

    def _keep(self, task: asyncio.Task[None]) -> None:
        # The loop holds tasks weakly: keep them until they end.
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _forget(committer: Committer, robot_ids: list[str]) -> None:
        try:
            await committer.forget(robot_ids)
        except Exception as exc:  # a writer that died reloads every robot when it restarts
            log.warning('writer could not forget %d robots: %s', len(robot_ids), exc)

    async def _recheck(self, robot_id: str, session: RobotSession) -> None:
        try:
            credentials = await asyncio.get_running_loop().run_in_executor(
                self._readers, self._store.robot_credentials, robot_id)
        except Exception as exc:
            log.error('robot %s: credentials re-check failed (%s); closing its session',
                      robot_id, exc)
            credentials = None  # unsure whether it may stay: it reconnects and authenticates
        if self._sessions.get(robot_id) is not session:
            return
        if credentials is None or credentials.revoked:
            session.refuse(ProtocolError(ErrorCode.AUTH_FAILED, 'robot token revoked'))
        elif session.token_sha256 is not None and credentials.token_sha256 != session.token_sha256:
            # (A session the server dialled holds no token: enrolment alone admits it.)
            session.refuse(ProtocolError(ErrorCode.AUTH_FAILED, 'robot token rotated'))

    # -- after commit -------------------------------------------------------------------------
    def deliver(self, outcome: CommitOutcome) -> None:
        """Send a committed batch's acks and refusals (the broker's writers send them here)."""
        self._on_committed(outcome)

    def _on_committed(self, outcome: CommitOutcome) -> None:
        sessions = self._sessions
        for robot_id, frame in outcome.acks:
            session = sessions.get(robot_id)
            if session is not None:
                session.send(frame)
        for refusal in outcome.refusals:
            session = sessions.get(refusal[0])
            if session is not None:
                session.refuse(refusal_error(refusal))
        if outcome.update is not None:
            self._bus.publish(outcome.update)

    # -- presence -----------------------------------------------------------------------------
    async def _sweep_loop(self) -> None:
        period = max(0.02, min(self.settings.ping_interval_s,
                               self.settings.presence_timeout_s) / 4)
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def sweep(self) -> list[PresenceChange]:
        """Ping idle robots and drop silent ones; return their offline changes.

        Each change is committed once its claim is released (SessionOwnership), with the
        claim's fencing token.
        """
        result = self.presence.sweep(self._now())
        for session in result.to_ping:
            session.ping()  # type: ignore[attr-defined]
        for (robot_id, session), change in zip(result.silent, result.changes, strict=True):
            if self._sessions.get(robot_id) is session:
                del self._sessions[robot_id]
            self.commands.robot_gone(robot_id)
            self.ownership.detached(robot_id, session, change)
            session.close(1001, 'presence timeout', graceful=False)  # type: ignore[attr-defined]
        if result.silent:
            self._metrics.connections.set(len(self._sessions))
        return list(result.changes)

    # -- commands and queries -----------------------------------------------------------------
    async def send_command(self, robot_id: str, command_type: str, payload_json: str,
                           timeout_s: float | None = None) -> CommandResponse:
        """Send a command to a connected robot and return its response."""
        session = self._sessions.get(robot_id)
        return await self.commands.call(
            robot_id, session.send if session is not None else None, command_type,
            payload_json, timeout_s if timeout_s is not None else self.settings.command_timeout_s)

    def send_action_goal(self, robot_id: str, goal_id: str, args: Mapping[str, Any]) -> bool:
        """Send a Deploy goal to a connected robot; False when it is not connected."""
        session = self._sessions.get(robot_id)
        return session is not None and session.send(goal_frame(goal_id, args))

    def cancel_action_goal(self, robot_id: str, goal_id: str) -> bool:
        """Ask a connected robot to cancel a goal; False when it is not connected."""
        session = self._sessions.get(robot_id)
        return session is not None and session.send(cancel_frame(goal_id))

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: object) -> None:
        """Run `callback(*args)` on the gateway's loop (from a worker thread)."""
        assert self._loop is not None, 'gateway not started'
        self._loop.call_soon_threadsafe(callback, *args)

    def disconnect(self, robot_id: str, error: ProtocolError) -> bool:
        """Refuse a connected robot with `error` (which closes it); False if not connected."""
        session = self._sessions.get(robot_id)
        if session is None:
            return False
        session.refuse(error)
        return True

    def is_connected(self, robot_id: str) -> bool:
        """Tell whether the robot has an authenticated connection."""
        return robot_id in self._sessions

    async def held_here(self, robot_ids: Sequence[str]) -> set[str]:
        """Return those of the robots this gateway answers for; raise RegistryUnavailable.

        A session here and, with a shared registry, the robot's current claim: during a
        handover the old gateway keeps its session until the new claim's notice arrives, and
        only the new holder answers for the robot meanwhile.
        """
        local = [r for r in robot_ids if r in self._sessions]
        if not local or not self.ownership.registry.shared:
            return set(local)
        owners = await self.ownership.registry.lookup(local)
        return {r for r, owner in owners.items() if owner.gateway_id == self.gateway_id}

    def peer_address(self, robot_id: str) -> str | None:
        """Return the IP address a connected robot's socket comes from (discovery lists it)."""
        session = self._sessions.get(robot_id)
        peer = session.peer_address() if session is not None else None
        return peer if isinstance(peer, str) else None

    @property
    def connection_count(self) -> int:
        """Return the number of authenticated robot connections."""
        return len(self._sessions)
