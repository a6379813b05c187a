"""The store's writers in processes of their own, so that ingest uses the other cores.

The server process runs the event loop (robot and dashboard sockets, the API); each writer
child runs the writes of its shard of the robots (domain/shards.py, `writer_shards`, 1 on
SQLite): `CommitWorker.commit` (decoding, validating and committing the raw publish frames of
a batch, building acks and the dashboard update) and the admin writes about its robots (enrol,
revoke, marking robots offline). Shard 0 also takes the writes that belong to no robot
(operators, telemetry maintenance). Reads stay in the server process on their own connections.
A writer serves its requests one at a time, in order, so each robot still has exactly one
writer and that writer's memory matches what the database committed. Writers of different
shards touch different rows, except the event counter: appends of events still take global
positions in commit order (store/event_store.py).

Wire format over a child's stdin and stdout: frames of an 8-byte big-endian length and a
pickle; a request is `(id, method, args, kwargs)`, a response `(id, ok, value or exception)`.
The first request carries the settings and the shard; the child answers it once its store is
open. The child dies with its parent (PR_SET_PDEATHSIG) and exits at end of input; if it dies,
calls in flight fail with StoreUnavailable (the batcher retries them) and a new child is
started.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import itertools
import logging
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import IO, Any

from lekiwi_fleet_server.domain.shards import shard_of
from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, CommitWorker, RawFrame
from lekiwi_fleet_server.gateway.writer_metrics import serve_writer_metrics
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import (
    BatchResult,
    PresenceChange,
    RobotMessage,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

_HEADER = struct.Struct('>Q')
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_PR_SET_PDEATHSIG = 1
# What the server process may ask of the writer: the store's writes, and commits of frames.
WRITER_METHODS = frozenset({
    'commit_frames', 'commit_batch', 'enrol_robot', 'revoke_robot', 'create_operator',
    'mark_all_offline', 'maintain', 'ping', 'rotate_robot_token', 'reenrol_robot',
    'forget_robots', 'record_robot_event', 'record_robot_events',
})
# The writes about one robot, which go to the writer of its shard.
_ROBOT_METHODS = frozenset({'enrol_robot', 'revoke_robot', 'rotate_robot_token',
                            'reenrol_robot'})


def write_frame(out: IO[bytes], obj: object) -> None:
    """Write one length-prefixed pickle to a buffered stream and flush."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data)))
    out.write(data)
    out.flush()


def read_frame(inp: IO[bytes]) -> Any:
    """Read one length-prefixed pickle from a buffered stream; raise EOFError at its end."""
    header = inp.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError('writer pipe closed')
    size = _HEADER.unpack(header)[0]
    data = inp.read(size)
    if len(data) < size:
        raise EOFError('writer pipe closed mid-frame')
    return pickle.loads(data)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
    except Exception:
        return StoreError(f'{type(exc).__name__}: {exc}')
    return exc


# -- the child ------------------------------------------------------------------------------

class WriterService:
    """The child's request handler: the store and the commit worker over it."""

    def __init__(self, worker: CommitWorker) -> None:
        self._worker = worker

    def handle(self, method: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """Run one request; raise StoreError for a method the writer does not offer."""
        if method not in WRITER_METHODS:
            raise StoreError(f'the writer process has no method {method!r}')
        if method == 'commit_frames':
            return self._worker.commit(*args, **kwargs)
        return getattr(self._worker.store, method)(*args, **kwargs)


def serve(inp: IO[bytes], out: IO[bytes], service: WriterService) -> None:
    """Answer requests until end of input."""
    while True:
        try:
            request_id, method, args, kwargs = read_frame(inp)
        except EOFError:
            return
        try:
            response = (request_id, True, service.handle(method, args, kwargs))
        except Exception as exc:
            if not isinstance(exc, StoreError):
                log.exception('writer: %s failed', method)
            response = (request_id, False, _picklable(exc))
        write_frame(out, response)


def _die_with_parent() -> None:
    # A SIGKILLed server must not leave a writer committing behind a new one.
    if sys.platform.startswith('linux'):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _raise_priority(steps: int) -> None:
    # The writer is ingest's one serial step; when the gateway, the database and whatever else
    # runs here want more CPU than there is, it should be the last to wait (-5: p99 of the
    # benchmark at 10,000 robots 205 -> 152 ms). Needs CAP_SYS_NICE; without it, carry on.
    if steps:
        try:
            os.nice(-steps)
        except OSError as exc:
            log.info('writer keeps its priority (%s): raising it needs CAP_SYS_NICE', exc)


def child_main() -> int:  # pragma: no cover - runs only as the child (run_writer is tested)
    """Run the writer process (`python -m lekiwi_fleet_server.gateway.writer_process`)."""
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        return 1
    # The protocol owns the original stdout; anything printed goes to stderr instead.
    out = os.fdopen(os.dup(1), 'wb')
    os.dup2(2, 1)
    inp = os.fdopen(os.dup(0), 'rb')
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    return run_writer(inp, out)


def run_writer(inp: IO[bytes], out: IO[bytes]) -> int:
    """Read the settings, open the store, answer requests until end of input; exit status."""
    request_id, _method, (settings_json, shard_index, shard_count), _kwargs = read_frame(inp)
    settings = Settings.model_validate_json(settings_json)
    logging.basicConfig(level=settings.log_level.upper(),
                        format='%(asctime)s %(levelname)s %(name)s[writer]: %(message)s')
    _raise_priority(settings.writer_priority)
    from lekiwi_fleet_server.store.factory import open_store  # the SQL stack loads here

    try:
        store = open_store(settings, shard_index=shard_index, shard_count=shard_count)
    except Exception as exc:
        write_frame(out, (request_id, False, _picklable(exc)))
        return 1
    # As in the server process (cli.tune_runtime): the robots' states, loaded now, leave the
    # collector's view, and collections run rarely.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        metrics, metrics_port = serve_writer_metrics(settings.api_host,
                                                     settings.writer_metrics_port, shard_index)
    except OSError as exc:
        store.close()
        write_frame(out, (request_id, False, StoreError(
            f'writer {shard_index}: cannot serve metrics: {exc}')))
        return 1
    write_frame(out, (request_id, True, (os.getpid(), metrics_port)))
    try:
        serve(inp, out, WriterService(CommitWorker(store, metrics)))
    finally:
        store.close()
    return 0


# -- the parent ------------------------------------------------------------------------------

class WriterProcess:
    """The server's handle on its writer process: start it, call it, restart it, stop it."""

    def __init__(self, settings: Settings, *, shard_index: int = 0, shard_count: int = 1,
                 restart_delay_s: float = 1.0) -> None:
        self._settings_json = settings.model_dump_json()
        self.shard_index = shard_index
        self._shard_count = shard_count  # alone (the default), a writer writes every robot
        self._restart_delay_s = restart_delay_s
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # guards _pending and _proc swaps
        self._pending: dict[int, Future[Any]] = {}
        self._outbox: queue.SimpleQueue[tuple[int, str, tuple[Any, ...], dict[str, Any]] | None]
        self._outbox = queue.SimpleQueue()
        self._proc: subprocess.Popen[bytes] | None = None
        self._closing = False
        self.restarts = 0
        self.metrics_port: int | None = None  # where the writer serves its metrics, if it does
        self._reader: threading.Thread | None = None
        self._sender: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """Return the pid of the running writer, None while there is none."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def pending(self) -> int:
        """Return how many requests the writer has not answered yet (its queue depth)."""
        return len(self._pending)

    def start(self) -> None:
        """Start the writer and wait until its store is open (raise what opening raised)."""
        # The reader thread spawns the writer, now and on every restart: the child's death
        # signal (_die_with_parent) fires when the *thread* that spawned it ends, and the
        # caller's thread may be a pool's worker that ends when idle (the server starts its
        # writers through Starlette's threadpool, whose AnyIO workers end after 10 s idle: both
        # writers were once SIGKILLed mid-benchmark and restarted).
        spawned: Future[None] = Future()
        self._reader = threading.Thread(target=self._spawn_and_read, args=(spawned,),
                                        name='fleet-writer-read', daemon=True)
        self._reader.start()
        spawned.result()
        self._sender = threading.Thread(target=self._send_loop, name='fleet-writer-send',
                                        daemon=True)
        self._sender.start()

    def _spawn_and_read(self, spawned: Future[None]) -> None:
        try:
            self._spawn()
        except BaseException as exc:
            spawned.set_exception(exc)
            return
        spawned.set_result(None)
        self._read_loop()

    def _spawn(self) -> None:
        # The child must run this very code, wherever it was imported from (a source tree
        # shadowing an installed copy, say): its package directory goes first on the path.
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get('PYTHONPATH'))
                                            if p)
        proc = subprocess.Popen(
            [sys.executable, '-m', 'lekiwi_fleet_server.gateway.writer_process'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            write_frame(proc.stdin, (0, 'init', (self._settings_json, self.shard_index,
                                                 self._shard_count), {}))
            _id, ok, value = read_frame(proc.stdout)
        except (EOFError, OSError) as exc:
            proc.kill()
            proc.wait()
            raise StoreUnavailable(f'the writer process did not start: {exc}') from exc
        if not ok:
            proc.wait()
            raise value
        _pid, self.metrics_port = value
        self._proc = proc
        log.info('writer process %d (shard %d) started', proc.pid, self.shard_index)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Future[Any]:
        """Send a request; the future resolves with its result or its exception."""
        future: Future[Any] = Future()
        request_id = next(self._ids)
        with self._lock:
            if self._proc is None or self._closing:
                future.set_exception(StoreUnavailable('the writer process is not running'))
                return future
            self._pending[request_id] = future
        self._outbox.put((request_id, method, args, kwargs))
        return future

    def call_sync(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call and wait for the result (from a worker thread, never the event loop)."""
        return self.call(method, *args, **kwargs).result()

    def _send_loop(self) -> None:
        # Writes happen here, not in callers: a big batch never blocks the event loop on a
        # full pipe while the writer is busy.
        while (item := self._outbox.get()) is not None:
            proc = self._proc
            if item[0] not in self._pending:
                continue  # failed already (its writer died): never run it on the next one
            try:
                assert proc is not None and proc.stdin is not None
                write_frame(proc.stdin, item)
            except (OSError, AssertionError, ValueError):
                self._fail(item[0], StoreUnavailable('the writer process is gone'))

    def _fail(self, request_id: int, exc: BaseException) -> None:
        with self._lock:
            future = self._pending.pop(request_id, None)
        if future is not None:
            _resolve(future, False, exc)

    def _read_loop(self) -> None:
        while True:
            proc = self._proc
            assert proc is not None and proc.stdout is not None
            try:
                while True:
                    request_id, ok, value = read_frame(proc.stdout)
                    with self._lock:
                        future = self._pending.pop(request_id, None)
                    if future is not None:
                        _resolve(future, ok, value)
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                reason = exc
            code = proc.wait()
            with self._lock:
                self._proc = None
                failed, self._pending = self._pending, {}
            for future in failed.values():
                # The outcome of a commit in flight is unknown: the batcher retries it, and
                # robot_sequences makes the retry idempotent.
                _resolve(future, False, StoreUnavailable(f'the writer process exited ({code})'))
            if self._closing:
                return
            log.error('writer process %d exited with %s (%s); restarting', proc.pid, code,
                      reason)
            while not self._closing:
                time.sleep(self._restart_delay_s)
                try:
                    self._spawn()
                except Exception as exc:
                    log.error('writer process restart failed: %s', exc)
                    continue
                self.restarts += 1
                break
            if self._closing:
                return

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the writer after the requests already sent; kill it if it does not end."""
        self._closing = True
        self._outbox.put(None)
        if self._sender is not None:
            self._sender.join(timeout_s)
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()  # end of input: the child finishes and exits
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout_s)


class WriterPool:
    """The server's writer processes, one per shard, and the routing of store writes to them.

    Each writer is the only writer of its shard's robots (domain/shards.py), so each keeps
    the memory of its own robots only and their batches commit side by side. Writes about one
    robot go to its shard; the rest go to shard 0 (operators, telemetry maintenance) or to
    every shard (marking robots offline, pings).
    """

    def __init__(self, settings: Settings, *, restart_delay_s: float = 1.0) -> None:
        self.shards = settings.resolved_writer_shards
        self.processes = [WriterProcess(settings, shard_index=i, shard_count=self.shards,
                                        restart_delay_s=restart_delay_s)
                          for i in range(self.shards)]

    def start(self) -> None:
        """Start every writer (shard 0 first: it migrates the database); raise what failed."""
        started: list[WriterProcess] = []
        try:
            for process in self.processes:
                process.start()
                started.append(process)
        except BaseException:
            for process in started:
                process.close()
            raise

    def process_of(self, robot_id: str) -> WriterProcess:
        """Return the writer of a robot's shard."""
        return self.processes[shard_of(robot_id, self.shards)]

    def call_sync(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run a store write on the writer it belongs to and return its result (SplitStore)."""
        if method in _ROBOT_METHODS:
            return self.process_of(args[0]).call_sync(method, *args, **kwargs)
        if method == 'record_robot_event':  # args[0] is the event; its robot names the shard
            return self.process_of(args[0].robot_id).call_sync(method, *args, **kwargs)
        if method == 'record_robot_events':  # events of many robots: each to its shard's writer
            by_writer: dict[int, list[Any]] = {}
            for event in args[0]:
                by_writer.setdefault(shard_of(event.robot_id, self.shards), []).append(event)
            calls = [self.processes[i].call(method, part, **kwargs)
                     for i, part in by_writer.items()]
            return sum(f.result() for f in calls)
        if method == 'forget_robots':
            by_shard: dict[int, list[str]] = {}
            for robot_id in args[0]:
                by_shard.setdefault(shard_of(robot_id, self.shards), []).append(robot_id)
            for f in [self.processes[i].call(method, ids) for i, ids in by_shard.items()]:
                f.result()
            return None
        if method == 'commit_batch':
            return self._commit_batch(*args, **kwargs)
        if method in ('mark_all_offline', 'ping'):
            futures = [p.call(method, *args, **kwargs) for p in self.processes]
            results = [f.result() for f in futures]
            return sum(results) if method == 'mark_all_offline' else None
        return self.processes[0].call_sync(method, *args, **kwargs)

    def _commit_batch(self, messages: Sequence[RobotMessage],
                      presence: Sequence[PresenceChange] = (), *, now: float) -> BatchResult:
        parts: dict[int, tuple[list[RobotMessage], list[PresenceChange]]] = {}
        for message in messages:
            parts.setdefault(shard_of(message.robot_id, self.shards), ([], []))[0].append(
                message)
        for change in presence:
            parts.setdefault(shard_of(change.robot_id, self.shards), ([], []))[1].append(change)
        futures = [self.processes[shard].call('commit_batch', part_messages, part_presence,
                                              now=now)
                   for shard, (part_messages, part_presence) in sorted(parts.items())]
        results: list[BatchResult] = [f.result() for f in futures]
        return merge_results(results)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop every writer after the requests already sent."""
        for process in self.processes:
            process.close(timeout_s)


def merge_results(results: Sequence[BatchResult]) -> BatchResult:
    """Return one BatchResult of the shards' results of one batch (events in position order)."""
    if len(results) == 1:
        return results[0]
    return BatchResult(
        acknowledged=tuple(k for r in results for k in r.acknowledged),
        duplicates=sum(r.duplicates for r in results),
        changed_robots=tuple(sorted((s for r in results for s in r.changed_robots),
                                    key=lambda s: s.robot_id)),
        new_events=tuple(sorted((e for r in results for e in r.new_events),
                                key=lambda e: e.position)),
        rejected=tuple(x for r in results for x in r.rejected))


def _resolve(future: Future[Any], ok: bool, value: Any) -> None:
    # A caller may have given up on its future (the gateway cancels its batcher when it
    # stops): nothing to hand over then, and the reader thread must live on.
    with contextlib.suppress(InvalidStateError):
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class ProcessCommitter:
    """Commit through the writer process (the gateway's Committer in the split server)."""

    def __init__(self, process: WriterProcess) -> None:
        self._process = process

    @property
    def process(self) -> WriterProcess:
        """The writer process this commits through."""
        return self._process

    async def commit(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange],
                     now: float, want_update: bool) -> CommitOutcome:
        """Have the writer commit a batch."""
        result: CommitOutcome = await asyncio.wrap_future(self._process.call(
            'commit_frames', list(frames), list(presence), now, want_update))
        return result

    async def forget(self, robot_ids: Sequence[str]) -> None:
        """Have the writer drop its memory of these robots (after the batches sent before)."""
        await asyncio.wrap_future(self._process.call('forget_robots', list(robot_ids)))

    async def mark_all_offline(self, now: float) -> int:
        """Have the writer record every robot shown online as offline."""
        marked: int = await asyncio.wrap_future(self._process.call('mark_all_offline',
                                                                   now=now))
        return marked


if __name__ == '__main__':  # pragma: no cover - the child's entry point
    sys.exit(child_main())
