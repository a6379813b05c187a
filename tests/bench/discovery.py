"""Discovery benchmark (issue 18): time to a complete inventory of a /24, parallel vs serial.

In a network namespace the benchmark makes (root needed), 254 addresses 127.0.0.1-254 are
scanned on the agent status port (8765) and the rosbridge port (9090): 508 probes. About 20
hosts are live (`--agents` agent status endpoints and `--rosbridges` rosbridge v2 endpoints,
stand-ins for robots, served from a second event loop in their own thread), the rest drop every
packet (nftables), so their probes run into the per-probe timeout as dead hosts on a real
network do. The parallel scan is the server's own path (`discover`, the REST scan): CIDR
expansion, asyncio probes under a semaphore, merge into the inventory. The serial scan probes
the same set with the same timeout one after another, as the old tooling did.

    python tests/bench/discovery.py                     # timeout 1.0 s: serial about 8 min
    python tests/bench/discovery.py --timeout 0.5       # serial about 4 min
    python tests/bench/discovery.py --skip-serial

Last line: `addresses=… live=… found=… parallel_s=… serial_s=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'src/lekiwi_fleet_server/test/discovery'))
sys.path.insert(0, str(ROOT / 'src/lekiwi_fleet_server'))

from netns_lab import NetnsLab  # noqa: E402
from standins import AgentStatusStandIn, RosbridgeStandIn, agent_status  # noqa: E402

from lekiwi_fleet_server.discovery.cli_discover import inventory_of  # noqa: E402
from lekiwi_fleet_server.discovery.scanner import ScanConfig, scan, scan_serially  # noqa: E402
from lekiwi_fleet_server.discovery.targets import expand_targets, plan_probes  # noqa: E402

AGENT_PORT, ROSBRIDGE_PORT = 8765, 9090


class RobotsThread:
    """The live robots' stand-ins on an event loop of their own, inside the namespace."""

    def __init__(self, lab: NetnsLab, agents: list[str], rosbridges: list[str]) -> None:
        self._lab, self._agents, self._rosbridges = lab, agents, rosbridges
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        self._lab.enter()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        for i, address in enumerate(self._agents):
            body = json.dumps(agent_status(f'kiwi-{i:03d}')).encode()
            await AgentStatusStandIn(address, AGENT_PORT, body).start()
        for address in self._rosbridges:
            await RosbridgeStandIn(address, ROSBRIDGE_PORT).start()

    def __enter__(self) -> RobotsThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError('stand-ins did not start')
        return self

    def __exit__(self, *_exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--timeout', type=float, default=1.0, help='seconds per probe')
    parser.add_argument('--concurrency', type=int, default=512)
    parser.add_argument('--agents', type=int, default=14)
    parser.add_argument('--rosbridges', type=int, default=6)
    parser.add_argument('--runs', type=int, default=3, help='parallel scans (best and median)')
    parser.add_argument('--skip-serial', action='store_true')
    args = parser.parse_args()

    addresses = expand_targets(['127.0.0.0/24'])
    step = len(addresses) // (args.agents + args.rosbridges)
    live = addresses[::step][:args.agents + args.rosbridges]
    agents, rosbridges = live[:args.agents], live[args.agents:]
    silent = [a for a in addresses if a not in live]
    probes = plan_probes(addresses, agent_port=AGENT_PORT, rosbridge_port=ROSBRIDGE_PORT)
    config = ScanConfig(args.concurrency, args.timeout)
    print(f'addresses {len(addresses)} (live {len(live)}: {len(agents)} agents, '
          f'{len(rosbridges)} rosbridge; {len(silent)} dropping packets), {len(probes)} probes, '
          f'timeout {args.timeout} s, concurrency {args.concurrency}')

    lab = NetnsLab.create()
    try:
        lab.drop(silent)
        with RobotsThread(lab, agents, rosbridges):
            def parallel() -> tuple[float, int, int]:
                async def run() -> tuple[float, int, int]:
                    start = time.monotonic()
                    results = await scan(probes, config)
                    inventory = inventory_of(results, time.time())
                    elapsed = time.monotonic() - start
                    timeouts = sum(1 for r in results if r.error == 'timeout')
                    return elapsed, len(inventory), timeouts
                return lab.run(run, timeout_s=600)

            runs = [parallel() for _ in range(args.runs)]
            times = sorted(r[0] for r in runs)
            found = runs[-1][1]
            for i, (elapsed, n, timeouts) in enumerate(runs):
                print(f'parallel run {i + 1}: {elapsed:.3f} s, found {n}, '
                      f'{timeouts} probes timed out')
            parallel_s = times[len(times) // 2]
            print(f'parallel: best {times[0]:.3f} s, median {parallel_s:.3f} s')

            serial_s: Any = 'skipped'
            if not args.skip_serial:
                async def serial() -> tuple[float, int]:
                    start = time.monotonic()
                    results = await scan_serially(probes, config)
                    return time.monotonic() - start, len(inventory_of(results, time.time()))
                elapsed, serial_found = lab.run(serial, timeout_s=7200)
                serial_s = f'{elapsed:.1f}'
                print(f'serial: {elapsed:.1f} s, found {serial_found}')
    finally:
        lab.close()
    print(f'addresses={len(addresses)} live={len(live)} found={found} '
          f'parallel_s={parallel_s:.3f} serial_s={serial_s}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
