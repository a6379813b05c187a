"""The mDNS browser with real zeroconf announcers, in a namespace with multicast on loopback.

The announcements are made with the zeroconf library the way the agent makes them
(lekiwi_agent_ros/discovery/announcer.py: robot id and versions in TXT, the status port in
SRV): one in this process that says goodbye, one in a process that is killed without one, so
its records must run out by their TTL.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from typing import Any

from netns_lab import NetnsLab
from zeroconf import ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from lekiwi_fleet_server.discovery.inventory import Inventory, Sighting, Source
from lekiwi_fleet_server.discovery.mdns import SERVICE_TYPE, MdnsBrowser

ANNOUNCER = textwrap.dedent('''
    import socket, sys, time
    from zeroconf import ServiceInfo, Zeroconf
    zc = Zeroconf(interfaces=['127.0.0.1'])
    zc.register_service(ServiceInfo(
        '_lekiwi._tcp.local.', 'kiwi-dies._lekiwi._tcp.local.', port=8766,
        properties={'robot_id': 'kiwi-dies', 'agent_version': '0.1.0'},
        addresses=[socket.inet_aton('127.0.0.3')], server='kiwi-dies.local.',
        host_ttl=3, other_ttl=3))
    print('registered', flush=True)
    time.sleep(600)
''')


class Recorder:
    """What the browser feeds: the discovery service's observe/withdraw, into an inventory."""

    def __init__(self) -> None:
        self.inventory = Inventory()
        self.log: list[tuple[str, str, float]] = []

    def observe(self, sighting: Sighting) -> None:
        self.inventory.observe(sighting)
        self.log.append(('observe', sighting.robot_id or '', time.monotonic()))

    def withdraw(self, source: Source, key: str) -> None:
        self.inventory.withdraw(source, key)
        self.log.append(('withdraw', key, time.monotonic()))


async def until(check: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError('mDNS condition not met in time')
        await asyncio.sleep(0.05)


def test_announcements_are_listed_updated_and_withdrawn(mcast_lab: NetnsLab) -> None:
    recorder = Recorder()

    async def main() -> dict[str, Any]:
        browser = MdnsBrowser(recorder, ['127.0.0.1'], check_s=0.5)  # type: ignore[arg-type]
        await browser.start()
        runner = asyncio.get_running_loop().create_task(browser.run())
        announcer = AsyncZeroconf(interfaces=['127.0.0.1'])
        info = ServiceInfo(SERVICE_TYPE, 'kiwi-bye._lekiwi._tcp.local.', port=8765,
                           properties={'robot_id': 'kiwi-bye', 'agent_version': '0.1.0',
                                       'software_version': 'rel-1'},
                           addresses=[bytes([127, 0, 0, 2])], server='kiwi-bye.local.')
        await (await announcer.async_register_service(info))
        await until(lambda: recorder.inventory.get('kiwi-bye'))
        entry = recorder.inventory.get('kiwi-bye')
        # A malformed announcement (no robot id) is not listed.
        await (await announcer.async_register_service(ServiceInfo(
            SERVICE_TYPE, 'junk._lekiwi._tcp.local.', port=1, properties={'x': '1'},
            addresses=[bytes([127, 0, 0, 9])], server='junk.local.')))
        # The robot dies without a goodbye: withdrawn once its 3 s TTL runs out.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, '-c', ANNOUNCER, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b'registered'
        await until(lambda: recorder.inventory.get('kiwi-dies'))
        # Alive, it stays listed past twice its TTL: the browser asks again, it answers.
        await asyncio.sleep(7.0)
        still_listed = recorder.inventory.get('kiwi-dies') is not None
        proc.kill()
        killed_at = time.monotonic()
        await proc.wait()
        await until(lambda: recorder.inventory.get('kiwi-dies') is None)
        expired_after = time.monotonic() - killed_at
        # Goodbye: withdrawn at once.
        await announcer.async_unregister_service(info)
        bye_at = time.monotonic()
        await until(lambda: recorder.inventory.get('kiwi-bye') is None)
        goodbye_after = time.monotonic() - bye_at
        await announcer.async_close()
        runner.cancel()
        try:
            await runner
        except asyncio.CancelledError:
            pass
        return {'entry': entry, 'still_listed': still_listed,
                'expired_after': expired_after, 'goodbye_after': goodbye_after}

    outcome = mcast_lab.run(main)
    entry = outcome['entry']
    seen = entry.sources[Source.MDNS]
    assert (seen.address, seen.port) == ('127.0.0.2', 8765)
    assert seen.details['software_version'] == 'rel-1' and seen.details['status_port'] == 8765
    assert [k for op, k, _ in recorder.log if op == 'observe'].count('junk') == 0
    assert 'junk' not in {e.key for e in recorder.inventory.entries()}
    assert outcome['still_listed']
    assert outcome['expired_after'] < 3.0 + 2.0  # its TTL, plus the browser's 0.5 s check
    assert outcome['goodbye_after'] < 2.0


def test_the_server_browses_mdns_when_configured(mcast_lab: NetnsLab, tmp_path: Any) -> None:
    """The whole app's lifespan in the namespace: LEKIWI_DISCOVERY_MDNS lists announcers."""
    from discovery_app import discovery_settings

    from lekiwi_fleet_server.app import create_app

    settings = discovery_settings(tmp_path, discovery_mdns=True,
                                  discovery_mdns_interfaces=['127.0.0.1'])
    app = create_app(settings)

    async def main() -> dict[str, Any]:
        async with app.router.lifespan_context(app):
            discovery = app.state.services.discovery
            announcer = AsyncZeroconf(interfaces=['127.0.0.1'])
            info = ServiceInfo(SERVICE_TYPE, 'kiwi-app._lekiwi._tcp.local.', port=8765,
                               properties={'robot_id': 'kiwi-app', 'agent_version': '0.2.0'},
                               addresses=[bytes([127, 0, 0, 4])], server='kiwi-app.local.')
            await (await announcer.async_register_service(info))
            await until(lambda: discovery.inventory.get('kiwi-app'))
            view = discovery.entry_view(discovery.inventory.get('kiwi-app'))
            await announcer.async_unregister_service(info)
            await until(lambda: discovery.inventory.get('kiwi-app') is None)
            await announcer.async_close()
            return view

    view = mcast_lab.run(main)
    assert view['status'] == 'discovered' and view['agent_version'] == '0.2.0'
    assert view['sources']['mdns']['address'] == '127.0.0.4'
