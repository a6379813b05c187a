"""Browse DNS-SD `_lekiwi._tcp` over mDNS (zeroconf) into the inventory.

Runs on the API's event loop with zeroconf's asyncio API. An agent's announcement carries its
robot id, agent and software versions in TXT and its local status port in SRV. A goodbye
withdraws it at once. An announcer that dies without one is withdrawn when its SRV record's
TTL runs out: zeroconf raises the PTR record's TTL to at least 1125 s (against refresh
storms) and reports expiry only at its cache cleanup, so the browser keeps the SRV records
of its names itself, as RFC 6762 5.2 asks of a querier: past half their TTL it asks again
(a live robot answers and the record is renewed), and a record that expired is withdrawn.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zeroconf import (
    DNSOutgoing,
    DNSQuestion,
    InterfaceChoice,
    IPVersion,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf._utils.time import current_time_millis
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf
from zeroconf.const import _CLASS_IN, _FLAGS_QR_QUERY, _TYPE_SRV

from lekiwi_fleet_server.discovery.inventory import Sighting, Source

if TYPE_CHECKING:
    from lekiwi_fleet_server.discovery.service import DiscoveryService

log = logging.getLogger(__name__)

SERVICE_TYPE = '_lekiwi._tcp.local.'
_ROBOT_ID = re.compile(r'[A-Za-z0-9._-]{1,64}')
_TXT_DETAILS = ('agent_version', 'software_version', 'enrolled')


def sighting_of(info: AsyncServiceInfo, now: float) -> Sighting | None:
    """Return the sighting an announcement makes, or None when it is not a valid one."""
    props = {k.decode(errors='replace'): (v or b'').decode(errors='replace')
             for k, v in (info.properties or {}).items()}
    robot_id = props.get('robot_id', '')
    if not _ROBOT_ID.fullmatch(robot_id):
        return None
    addresses = info.parsed_addresses()
    details: dict[str, Any] = {k: props[k] for k in _TXT_DETAILS if k in props}
    details['status_port'] = info.port
    details['instance'] = info.name
    return Sighting(Source.MDNS, now, robot_id, addresses[0] if addresses else None,
                    info.port, details)


class MdnsBrowser:
    """Keep the inventory's mDNS source in step with the `_lekiwi._tcp` announcements."""

    def __init__(self, discovery: DiscoveryService, interfaces: Sequence[str] = (),
                 check_s: float = 1.0) -> None:
        self._discovery = discovery
        self._interfaces: list[str] | InterfaceChoice = list(interfaces) or InterfaceChoice.All
        self._check_s = check_s
        self._names: dict[str, str] = {}  # instance name -> robot id
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open zeroconf and start browsing."""
        self._zc = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, [SERVICE_TYPE],
                                            handlers=[self._on_change])

    async def run(self) -> None:
        """Check the names against the cache until cancelled, then close zeroconf."""
        try:
            while True:
                await asyncio.sleep(self._check_s)
                self._withdraw_expired()
        finally:
            for task in self._tasks:
                task.cancel()
            if self._browser is not None:
                await self._browser.async_cancel()
            if self._zc is not None:
                await self._zc.async_close()

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        # Called on the event loop by zeroconf's asyncio browser.
        if state_change is ServiceStateChange.Removed:
            self._withdraw(name)
            return
        task = asyncio.get_running_loop().create_task(self._resolve(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, name: str) -> None:
        assert self._zc is not None
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(self._zc.zeroconf, 3000):
            log.info('mDNS: %s did not resolve', name)
            return
        sighting = sighting_of(info, time.time())
        if sighting is None:
            log.info('mDNS: %s carries no valid robot_id', name)
            return
        old = self._names.get(name)
        if old is not None and old != sighting.robot_id:
            self._discovery.withdraw(Source.MDNS, old)
        self._names[name] = sighting.robot_id or ''
        self._discovery.observe(sighting)

    def _withdraw(self, name: str) -> None:
        robot_id = self._names.pop(name, None)
        if robot_id is not None:
            self._discovery.withdraw(Source.MDNS, robot_id)

    def _withdraw_expired(self) -> None:
        if self._zc is None or not self._names:
            return
        zc = self._zc.zeroconf
        now_ms = current_time_millis()  # zeroconf's clock (monotonic), not the wall clock
        query = DNSOutgoing(_FLAGS_QR_QUERY)
        for name in list(self._names):
            records = [r for r in zc.cache.async_all_by_details(name, _TYPE_SRV, _CLASS_IN)
                       if not r.is_expired(now_ms)]
            if not records:
                log.info('mDNS: %s expired', name)
                self._withdraw(name)
            elif all(r.is_stale(now_ms) for r in records):
                query.add_question(DNSQuestion(name, _TYPE_SRV, _CLASS_IN))
        if query.questions:
            zc.async_send(query)
