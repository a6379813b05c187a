"""The writer process: wire format, request handling, a real child, crash and restart."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import robot_frames as rf
from memory_store import MemoryStore

from lekiwi_fleet_server.domain.shards import shard_of
from lekiwi_fleet_server.gateway import writer_process
from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, CommitWorker
from lekiwi_fleet_server.gateway.writer_process import (
    ProcessCommitter,
    WriterPool,
    WriterProcess,
    WriterService,
    merge_results,
    read_frame,
    run_writer,
    serve,
    write_frame,
)
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import (
    BatchResult,
    MessageKey,
    PresenceChange,
    RecordedEvent,
    RejectedMessage,
    RobotAlreadyEnrolled,
    RobotMessage,
    RobotSummary,
    StoreError,
    StoreUnavailable,
)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
TOKEN_HASH = 'ab' * 32


def frame(robot_id: str, seq: int) -> tuple[str, float, bytes]:
    return robot_id, time.time(), orjson.dumps(rf.publish('fleet/events', seq))


def test_frames_round_trip_and_end_of_input() -> None:
    buffer = io.BytesIO()
    write_frame(buffer, (1, 'ping', (), {}))
    write_frame(buffer, {'big': b'x' * 100_000})
    buffer.seek(0)
    assert read_frame(buffer) == (1, 'ping', (), {})
    assert read_frame(buffer) == {'big': b'x' * 100_000}
    with pytest.raises(EOFError):
        read_frame(buffer)
    with pytest.raises(EOFError, match='mid-frame'):
        read_frame(io.BytesIO(buffer.getvalue()[:20]))


class Unpicklable(Exception):
    def __reduce__(self) -> tuple:
        raise TypeError('no pickling')


class FailingStore(MemoryStore):
    def revoke_robot(self, robot_id: str, *, now: float) -> None:
        raise StoreError(f'no robot {robot_id}')

    def mark_all_offline(self, *, now: float, reason: str = 'server_restart') -> int:
        raise Unpicklable('odd')

    def maintain(self, *, now: float) -> None:
        raise RuntimeError('bug')


def test_serve_answers_each_request_in_order() -> None:
    store = FailingStore()
    requests = io.BytesIO()
    for request in [(1, 'commit_frames', ([frame('a', 1), frame('a', 2)], [], 1.0, False), {}),
                    (2, 'revoke_robot', ('ghost',), {'now': 1.0}),
                    (3, 'drop_tables', (), {}),
                    (4, 'mark_all_offline', (), {'now': 1.0}),
                    (5, 'maintain', (), {'now': 1.0})]:
        write_frame(requests, request)
    requests.seek(0)
    responses = io.BytesIO()
    serve(requests, responses, WriterService(CommitWorker(store)))
    responses.seek(0)
    answers = [read_frame(responses) for _ in range(5)]
    assert [a[0] for a in answers] == [1, 2, 3, 4, 5]
    ok, outcome = answers[0][1:]
    assert ok and isinstance(outcome, CommitOutcome) and outcome.acknowledged == 2
    assert [k[2] for k in store.messages] == [1, 2]
    for answer, text in zip(answers[1:], ('no robot ghost', 'no method', 'odd', 'bug'),
                            strict=True):
        assert not answer[1] and text in str(answer[2])
    assert isinstance(answers[3][2], StoreError)  # what could not be pickled, as text


def test_run_writer_opens_the_store_serves_and_closes(tmp_path: Path) -> None:
    # The embedded database; priority 0: this test runs the writer in the test process.
    settings = Settings(data_dir=tmp_path, log_level='warning', writer_priority=0)
    requests = io.BytesIO()
    write_frame(requests, (0, 'init', (settings.model_dump_json(), 0, 1), {}))
    write_frame(requests, (1, 'enrol_robot', ('kiwi', TOKEN_HASH, ()), {'now': 1.0}))
    requests.seek(0)
    responses = io.BytesIO()
    assert run_writer(requests, responses) == 0
    responses.seek(0)
    assert read_frame(responses) == (0, True, (os.getpid(), None))  # no metrics port
    request_id, ok, summary = read_frame(responses)
    assert (request_id, ok, summary.robot_id) == (1, True, 'kiwi')
    assert (tmp_path / 'fleet.db').exists()


def test_run_writer_reports_a_store_that_does_not_open(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / 'file', log_level='critical', writer_priority=0)
    (tmp_path / 'file').write_text('not a directory')
    requests = io.BytesIO()
    write_frame(requests, (0, 'init', (settings.model_dump_json(), 0, 1), {}))
    requests.seek(0)
    responses = io.BytesIO()
    assert run_writer(requests, responses) == 1
    responses.seek(0)
    request_id, ok, error = read_frame(responses)
    assert (request_id, ok) == (0, False) and isinstance(error, Exception)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path, log_level='warning')


@pytest.fixture
def writer(settings: Settings) -> WriterProcess:
    process = WriterProcess(settings, restart_delay_s=0.05)
    process.start()
    yield process
    process.close()


def test_the_child_writes_and_reports_store_errors(writer: WriterProcess) -> None:
    summary = writer.call_sync('enrol_robot', 'kiwi', TOKEN_HASH, ('lab',), now=1.0)
    assert summary.robot_id == 'kiwi' and summary.tags == ('lab',)
    with pytest.raises(RobotAlreadyEnrolled):
        writer.call_sync('enrol_robot', 'kiwi', TOKEN_HASH, (), now=2.0)
    with pytest.raises(StoreError, match='no method'):
        writer.call_sync('close')
    outcome = writer.call_sync('commit_frames', [frame('kiwi', 1), frame('kiwi', 2)], [],
                               time.time(), True)
    assert outcome.acknowledged == 2 and orjson.loads(outcome.acks[0][1])['msg']['ranges'] == [
        [1, 2]]
    assert orjson.loads(outcome.update)['events'][0]['type'] == 'RobotEventReported'
    writer.call_sync('ping')


@pytest.mark.anyio
async def test_a_dead_writer_fails_its_calls_and_is_restarted(writer: WriterProcess) -> None:
    committer = ProcessCommitter(writer)
    writer.call_sync('enrol_robot', 'kiwi', TOKEN_HASH, (), now=1.0)
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    with pytest.raises(StoreUnavailable):
        for _ in range(100):  # until the reader has noticed the death
            await committer.commit([frame('kiwi', 1)], [], time.time(), False)
            await asyncio.sleep(0.01)
    deadline = time.monotonic() + 30
    while writer.pid in (None, first):
        assert time.monotonic() < deadline, 'no new writer'
        await asyncio.sleep(0.05)
    assert writer.restarts == 1
    outcome = await committer.commit([frame('kiwi', 1)], [], time.time(), False)
    assert outcome.acknowledged == 1
    assert await committer.mark_all_offline(time.time()) == 0


def test_a_writer_that_cannot_open_its_store_says_why(tmp_path: Path) -> None:
    settings = Settings(database_url='postgresql+psycopg://nobody:x@127.0.0.1:1/none',
                        data_dir=tmp_path, log_level='critical')
    with pytest.raises(StoreUnavailable):
        WriterProcess(settings).start()
    closed = WriterProcess(settings)
    with pytest.raises(StoreUnavailable, match='not running'):
        closed.call_sync('ping')


def test_the_writer_dies_with_its_parent(settings: Settings) -> None:
    script = ('import sys, time\n'
              'from lekiwi_fleet_server.gateway.writer_process import WriterProcess\n'
              'from lekiwi_fleet_server.settings import Settings\n'
              'w = WriterProcess(Settings.model_validate_json(sys.argv[1]))\n'
              'w.start()\n'
              'print(w.pid, flush=True)\n'
              'time.sleep(60)\n')
    env = dict(os.environ, PYTHONPATH=f'{PACKAGE_ROOT}{os.pathsep}'
                                      f'{os.environ.get("PYTHONPATH", "")}')
    parent = subprocess.Popen([sys.executable, '-c', script, settings.model_dump_json()],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        child = int(parent.stdout.readline())  # type: ignore[union-attr]
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, 'the writer outlived its parent'
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_the_writer_outlives_the_thread_that_started_it(settings: Settings) -> None:
    # The server starts its writers from a threadpool worker, which ends when idle; the
    # writer's death signal follows the thread that spawned it, so that must not be this one.
    process = WriterProcess(settings, restart_delay_s=0.05)
    starter = threading.Thread(target=process.start)
    starter.start()
    starter.join()
    try:
        pid = process.pid
        assert pid is not None
        time.sleep(0.5)  # a SIGKILLed child is seen (and restarted) within this
        assert process.pid == pid and process.restarts == 0
        process.call_sync('ping')
    finally:
        process.close()


def _alive(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().split()[2] != 'Z'
    except FileNotFoundError:
        return False


@pytest.fixture
def anyio_backend() -> str:
    return 'asyncio'


def test_the_writer_asks_for_priority_and_carries_on_without(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    asked: list[int] = []

    def refuse(increment: int) -> int:
        asked.append(increment)
        raise PermissionError('not permitted')

    monkeypatch.setattr(writer_process.os, 'nice', refuse)
    with caplog.at_level('INFO'):
        writer_process._raise_priority(5)
        writer_process._raise_priority(0)
    assert asked == [-5] and 'CAP_SYS_NICE' in caplog.text


# -- a writer per shard ---------------------------------------------------------------------

def robot_of(shard_index: int) -> str:
    return next(f'kiwi-{i}' for i in range(100) if shard_of(f'kiwi-{i}', 2) == shard_index)


def heartbeat_frame(robot_id: str, seq: int) -> tuple[str, float, bytes]:
    return robot_id, time.time(), orjson.dumps(rf.publish('fleet/heartbeat', seq,
                                                          rf.heartbeat(robot_id, seq)))


@pytest.fixture
def pool(pg_url: str, tmp_path: Path) -> Iterator[WriterPool]:
    settings = Settings(database_url=pg_url, data_dir=tmp_path, log_level='warning',
                        writer_shards=2)
    writers = WriterPool(settings, restart_delay_s=0.05)
    writers.start()
    yield writers
    writers.close()


def test_a_pool_sends_each_robot_s_writes_to_its_shard(pool: WriterPool) -> None:
    assert [p.shard_index for p in pool.processes] == [0, 1]
    assert len({p.pid for p in pool.processes}) == 2
    a, b = robot_of(0), robot_of(1)
    for robot in (a, b):
        pool.call_sync('enrol_robot', robot, TOKEN_HASH, (), now=1.0)
    first = pool.processes[1].call_sync('commit_frames', [heartbeat_frame(b, 1)], [],
                                        time.time(), False)
    assert first.acknowledged == 1
    # The revocation reaches the writer that holds b, whose next batch shows it revoked. (Sent
    # to the other writer, b's writer would still hold b as not revoked.)
    pool.call_sync('revoke_robot', b, now=2.0)
    beat = RobotMessage(b, rf.BOOT, 2, 'fleet/heartbeat', rf.heartbeat(b, 2), time.time())
    refused = pool.call_sync('commit_batch', [beat], now=time.time())
    assert not refused.acknowledged and 'revoked' in refused.rejected[0].reason
    c = next(f'kiwi-{i}' for i in range(100, 200) if shard_of(f'kiwi-{i}', 2) == 1)
    pool.call_sync('enrol_robot', c, TOKEN_HASH, (), now=2.5)
    # A batch over both shards is split between them and its results merged.
    result = pool.call_sync('commit_batch', [
        RobotMessage(r, rf.BOOT, 5, 'fleet/events', rf.event(r, 5), time.time())
        for r in (a, c)], [PresenceChange(a, True, time.time(), 'connected')], now=time.time())
    assert sorted(k.robot_id for k in result.acknowledged) == sorted([a, c])
    assert [s.robot_id for s in result.changed_robots] == sorted([a, c])
    positions = [e.position for e in result.new_events]
    assert positions == sorted(positions) and len(positions) == 3  # online, 2 events
    assert pool.call_sync('mark_all_offline', now=3.0) == 1  # a, from shard 0
    pool.call_sync('ping')


def test_shard_results_merge_in_order() -> None:
    def summary(robot_id: str) -> RobotSummary:
        return RobotSummary(robot_id=robot_id, tags=(), status='online', enrolled_at=0.0,
                            revoked=False)

    def event(position: int) -> RecordedEvent:
        return RecordedEvent(position=position, stream_id='s', version=position, type='T',
                             schema_version=1, data={}, metadata={}, recorded_at=0.0)

    key = MessageKey('a', 'b', 1)
    one = BatchResult((key,), 1, (summary('z'),), (event(2), event(5)))
    two = BatchResult((), 0, (summary('c'),), (event(3),),
                      (RejectedMessage(MessageKey('c', 'b', 1), 'no'),))
    merged = merge_results([one, two])
    assert merged.acknowledged == (key,) and merged.duplicates == 1
    assert [s.robot_id for s in merged.changed_robots] == ['c', 'z']
    assert [e.position for e in merged.new_events] == [2, 3, 5]
    assert len(merged.rejected) == 1 and merge_results([one]) is one


def test_a_writer_process_serves_its_metrics(settings: Settings) -> None:
    import httpx

    process = WriterProcess(settings.model_copy(update={'writer_metrics_port': 0}))
    process.start()
    try:
        assert process.metrics_port
        process.call_sync('enrol_robot', 'kiwi', TOKEN_HASH, (), now=1.0)
        outcome = process.call_sync('commit_frames', [frame('kiwi', 1), frame('kiwi', 2)], [],
                                    time.time(), False)
        assert outcome.acknowledged == 2 and process.pending == 0
        text = httpx.get(f'http://127.0.0.1:{process.metrics_port}/metrics', timeout=5).text
    finally:
        process.close()
    assert 'lekiwi_writer_batches_total{shard="0"} 1.0' in text
    assert 'lekiwi_writer_messages_total{shard="0"} 2.0' in text
    assert 'lekiwi_writer_commit_seconds_count{shard="0"} 1.0' in text
    assert 'lekiwi_writer_events_total{shard="0",type="RobotEventReported"} 2.0' in text
