"""The scanner against real listeners in a namespace of the test's own, dead hosts dropping."""

from __future__ import annotations

import asyncio
import json
import time

from netns_lab import NetnsLab
from standins import AgentStatusStandIn, RosbridgeStandIn, SilentListener, agent_status

from lekiwi_fleet_server.discovery.scanner import (
    ScanConfig,
    parse_agent_status,
    run_probe,
    scan,
    scan_serially,
)
from lekiwi_fleet_server.discovery.targets import Probe, ProbeKind, expand_targets, plan_probes

AGENT_PORT, ROSBRIDGE_PORT = 8765, 9090


def test_a_scan_finds_agents_and_rosbridges_and_times_out_dropped_hosts(lab: NetnsLab) -> None:
    dropped = [f'127.0.0.{i}' for i in range(20, 60)]
    lab.drop(dropped)

    async def main() -> tuple[list, float, int]:
        servers = [await AgentStatusStandIn(f'127.0.0.{i}', AGENT_PORT, json.dumps(
            agent_status(f'kiwi-{i}')).encode()).start() for i in range(2, 6)]
        servers.append(await RosbridgeStandIn('127.0.0.6', ROSBRIDGE_PORT).start())
        # Open ports that are not what we look for: an HTTP 404, a non-agent JSON, a
        # WebSocket that is not rosbridge (closes), a listener that never answers.
        servers.append(await AgentStatusStandIn('127.0.0.7', AGENT_PORT, b'no', 404).start())
        servers.append(await AgentStatusStandIn('127.0.0.8', AGENT_PORT, b'{"a": 1}').start())
        servers.append(await SilentListener('127.0.0.9', ROSBRIDGE_PORT).start())
        servers.append(await AgentStatusStandIn('127.0.0.10', ROSBRIDGE_PORT, b'x').start())
        seen: list = []
        probes = plan_probes(expand_targets(['127.0.0.0/26']), agent_port=AGENT_PORT,
                             rosbridge_port=ROSBRIDGE_PORT)
        start = time.monotonic()
        results = await scan(probes, ScanConfig(concurrency=256, timeout_s=1.0), seen.append)
        elapsed = time.monotonic() - start
        for server in servers:
            await server.stop()
        return results, elapsed, len(seen)

    results, elapsed, reported = lab.run(main)
    assert len(results) == reported == 62 * 2
    found = {(r.probe.address, r.probe.kind): r for r in results if r.found}
    assert set(found) == {(f'127.0.0.{i}', ProbeKind.AGENT) for i in range(2, 6)} | {
        ('127.0.0.6', ProbeKind.ROSBRIDGE)}
    agent = found[('127.0.0.3', ProbeKind.AGENT)]
    assert agent.robot_id == 'kiwi-3'
    assert agent.details == {'agent_version': '0.1.0', 'software_version': 'sim-1',
                             'enrolled': True, 'uplink': 'connected'}
    rosbridge = found[('127.0.0.6', ProbeKind.ROSBRIDGE)]
    assert rosbridge.robot_id is None and rosbridge.details['rosbridge'] == 'v2'
    by_key = {(r.probe.address, r.probe.port): r for r in results}
    for address in dropped:
        assert by_key[(address, AGENT_PORT)].error == 'timeout'
        assert 0.9 < by_key[(address, AGENT_PORT)].elapsed_s < 3.0
    assert by_key[('127.0.0.1', AGENT_PORT)].error == 'refused'
    assert by_key[('127.0.0.7', AGENT_PORT)].error == 'not_agent: HTTP 404'
    assert by_key[('127.0.0.8', AGENT_PORT)].error.startswith('not_agent')
    assert by_key[('127.0.0.9', ROSBRIDGE_PORT)].error == 'timeout'
    assert not by_key[('127.0.0.10', ROSBRIDGE_PORT)].found
    # 80 dropped probes of 1 s each ran side by side: the scan took about one timeout.
    assert elapsed < 4.0


def test_concurrency_bounds_how_many_probes_wait_at_once(lab: NetnsLab) -> None:
    dropped = [f'127.0.0.{i}' for i in range(2, 8)]
    lab.drop(dropped)
    probes = [Probe(a, AGENT_PORT, ProbeKind.AGENT) for a in dropped]

    async def timed(config: ScanConfig, serial: bool = False) -> float:
        start = time.monotonic()
        if serial:
            await scan_serially(probes, config)
        else:
            await scan(probes, config)
        return time.monotonic() - start

    async def main() -> tuple[float, float, float]:
        return (await timed(ScanConfig(concurrency=2, timeout_s=0.3)),
                await timed(ScanConfig(concurrency=6, timeout_s=0.3)),
                await timed(ScanConfig(timeout_s=0.3), serial=True))

    two_slots, six_slots, serial = lab.run(main)
    assert 0.85 < two_slots < 3.0  # three rounds of 0.3 s
    assert six_slots < 0.85  # one round
    assert 1.75 < serial < 5.0  # six timeouts in a row


def test_a_rosbridge_that_sends_other_frames_first_is_still_recognised(lab: NetnsLab) -> None:
    async def main() -> tuple[bool, str | None]:
        bridge = await RosbridgeStandIn('127.0.0.2', ROSBRIDGE_PORT).start()
        original = bridge._frame

        async def chatty(ws, payload):  # type: ignore[no-untyped-def]
            await ws.send(json.dumps({'op': 'status', 'level': 'info', 'msg': 'hello'}))
            await original(ws, payload)

        bridge._frame = chatty  # type: ignore[method-assign]
        result = await run_probe(Probe('127.0.0.2', ROSBRIDGE_PORT, ProbeKind.ROSBRIDGE), 2.0)
        await bridge.stop()
        sent = bridge.received[0]
        # What the probe sent is a valid call_service (ROSBRIDGE_PROTOCOL.md 3.2.8).
        assert sent['op'] == 'call_service' and isinstance(sent['service'], str)
        assert isinstance(sent['id'], str) and sent['args'] == []
        return result.found, result.error

    assert lab.run(main) == (True, None)


def test_agent_status_parsing_refuses_what_is_not_an_agent() -> None:
    ok = b'HTTP/1.1 200 OK\r\n\r\n' + json.dumps(agent_status('kiwi-1', extra=1)).encode()
    assert parse_agent_status(ok)[0] == 'kiwi-1'
    for raw in (b'', b'garbage', b'HTTP/1.0 200 OK\r\n\r\n[1]',
                b'HTTP/1.0 200 OK\r\n\r\n' + json.dumps(agent_status('bad id!')).encode(),
                b'HTTP/1.0 200 OK\r\n\r\n' + b'x' * 20000):
        try:
            parse_agent_status(raw)
        except Exception as exc:
            assert str(exc).startswith('not_agent')
        else:
            raise AssertionError(f'accepted {raw[:40]!r}')


def test_probe_config_is_validated() -> None:
    for bad in ({'concurrency': 0}, {'timeout_s': 0}):
        try:
            ScanConfig(**bad)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(bad)


def test_a_probe_of_an_unroutable_address_fails_fast_without_raising() -> None:
    async def main() -> str | None:
        # Port 1 on the machine's own loopback: nothing listens, so refused at once.
        return (await run_probe(Probe('127.0.0.1', 1, ProbeKind.ROSBRIDGE), 1.0)).error

    assert asyncio.run(main()) == 'refused'
