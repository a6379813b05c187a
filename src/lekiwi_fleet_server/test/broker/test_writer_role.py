"""The writer role in this process (`serve --role writer`) and its NATS link's refusals.

The system tests run the role as a process of its own; here it runs in the test's event loop
on a real nats-server and an embedded database, and the link meets the brokers it must
refuse: none at all, one whose stream an older release made, one that went away.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import nats
import pytest
from nats.js.api import RetentionPolicy, StreamConfig
from nats_server import NatsServer

from lekiwi_fleet_server.broker.link import DUPLICATE_WINDOW_S, NatsLink, partition_consumer
from lekiwi_fleet_server.broker.subjects import DURABLE_PREFIX, STREAM
from lekiwi_fleet_server.broker.writers import run_writer_role
from lekiwi_fleet_server.cli import main as cli_main
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import StoreUnavailable

pytestmark = pytest.mark.anyio


def closed_port_url() -> tuple[socket.socket, str]:
    """Return a bound, never listening socket (connections to it are refused) and its URL."""
    held = socket.socket()
    held.bind(('127.0.0.1', 0))
    return held, f'nats://127.0.0.1:{held.getsockname()[1]}'


def writer_settings(tmp_path: Path, nats_url: str) -> Settings:
    return Settings(database_url=f'sqlite:///{tmp_path / "fleet.db"}', data_dir=tmp_path,
                    nats_url=nats_url, writer_priority=0, broker_connect_timeout_s=10.0)


def unreachable_broker_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, nats_url: str, *,
                           connect_timeout_s: float) -> None:
    """Point the CLI at SQLite in tmp_path and at `nats_url`, where nobody listens."""
    monkeypatch.setenv('LEKIWI_DATABASE_URL', f'sqlite:///{tmp_path / "fleet.db"}')
    monkeypatch.setenv('LEKIWI_DATA_DIR', str(tmp_path))
    monkeypatch.setenv('LEKIWI_NATS_URL', nats_url)
    monkeypatch.setenv('LEKIWI_BROKER_CONNECT_TIMEOUT_S', str(connect_timeout_s))
    monkeypatch.setenv('LEKIWI_WRITER_PRIORITY', '0')


def test_a_shard_the_fleet_has_not_is_refused_before_nats_is_tried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    held, url = closed_port_url()
    with held:
        unreachable_broker_env(monkeypatch, tmp_path, url, connect_timeout_s=3)
        started = time.monotonic()
        assert cli_main(['serve', '--role', 'writer', '--shard', '3']) == 2
        assert time.monotonic() - started < 2.0
    # SQLite has one writer shard: 0.
    assert 'lekiwi-fleet-server: writer shard 3 is not one of 0..0' in capsys.readouterr().err


def test_a_writer_role_without_a_broker_gives_up_after_the_connect_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    held, url = closed_port_url()
    with held:
        unreachable_broker_env(monkeypatch, tmp_path, url, connect_timeout_s=0.5)
        assert cli_main(['serve', '--role', 'writer']) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'lekiwi-fleet-server: NATS at {url} unreachable: ')


async def test_the_writer_role_says_it_is_ready_consumes_its_partition_and_stops(
        tmp_path: Path, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]) -> None:
    stop = asyncio.Event()
    role = asyncio.create_task(run_writer_role(writer_settings(tmp_path, nats_server.url),
                                               None, stop))
    deadline = time.monotonic() + 30
    out = ''
    while 'ready' not in out:
        assert not role.done(), role
        assert time.monotonic() < deadline, 'the writer role did not say it is ready'
        await asyncio.sleep(0.05)
        out += capsys.readouterr().out
    assert 'lekiwi-fleet-server ready role=writer shards=0\n' in out
    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jetstream().consumer_info(STREAM, partition_consumer(0))
        assert info.config.durable_name == 'writer-0'
        stop.set()
        await asyncio.wait_for(role, 15)
        # Its connection drained and closed: the consumer is left for the next writer.
        assert (await nc.jetstream().consumer_info(STREAM, partition_consumer(0))
                ).num_waiting == 0
    finally:
        await nc.close()


async def test_a_broker_that_never_answers_is_unavailable_after_the_timeout() -> None:
    held, url = closed_port_url()
    with held:
        link = NatsLink(url, 'test')
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=f'NATS at {url} unreachable: .*[Rr]efused'):
            # nats-py alone would retry without end: the link's own timeout must end it.
            await asyncio.wait_for(link.connect(timeout_s=0.5), 10)
        assert time.monotonic() - started < 5
    assert not link.healthy() and link.status()['nats'] == 'down'
    assert 'Refused' in link.status()['last_error']


async def test_a_stream_with_other_settings_is_updated_in_place(
        nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(StreamConfig(
            name=STREAM, subjects=[f'{DURABLE_PREFIX}.>'], retention=RetentionPolicy.INTEREST,
            duplicate_window=5.0))
        link = NatsLink(nats_server.url, 'test')
        await link.connect(timeout_s=5)
        try:
            info = await nc.jetstream().stream_info(STREAM)
            assert info.config.duplicate_window == DUPLICATE_WINDOW_S
            assert link.healthy() and link.status()['nats'] == 'ok'
        finally:
            await link.close()
    finally:
        await nc.close()


async def test_a_work_queue_stream_of_an_older_release_is_refused(
        nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(StreamConfig(
            name=STREAM, subjects=[f'{DURABLE_PREFIX}.>'],
            retention=RetentionPolicy.WORK_QUEUE))
        link = NatsLink(nats_server.url, 'test')
        with pytest.raises(StoreUnavailable, match='exists with settings this release cannot '
                                                   'use .*drain it with the old writers'):
            await link.connect(timeout_s=5)
        await link.close()
        # Nothing was changed: the old writers can still drain it.
        info = await nc.jetstream().stream_info(STREAM)
        assert info.config.retention == RetentionPolicy.WORK_QUEUE
    finally:
        await nc.close()


async def test_closing_after_the_broker_went_away_closes_without_draining(
        nats_server: NatsServer) -> None:
    link = NatsLink(nats_server.url, 'test')
    await link.connect(timeout_s=5)
    assert link.healthy()
    nats_server.stop()
    deadline = time.monotonic() + 10
    while link.healthy():  # nats-py notices the closed socket and starts reconnecting
        assert time.monotonic() < deadline, 'the link did not notice the broker going away'
        await asyncio.sleep(0.02)
    await asyncio.wait_for(link.close(), 10)
    assert link.nc.is_closed
    assert link.status()['nats'] == 'down'
