"""`lekiwi-fleet-server discover [CIDR...]`: scan now and print what answered (table or JSON)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TextIO

from lekiwi_fleet_server.discovery.inventory import Inventory, Sighting, Source, entry_as_dict
from lekiwi_fleet_server.discovery.scanner import ProbeResult, ScanConfig, scan
from lekiwi_fleet_server.discovery.targets import (
    ProbeKind,
    TargetError,
    expand_targets,
    plan_probes,
)
from lekiwi_fleet_server.settings import Settings

_SOURCE_OF = {ProbeKind.AGENT: Source.SCAN, ProbeKind.ROSBRIDGE: Source.ROSBRIDGE}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `discover` command to the CLI's subcommands."""
    p = sub.add_parser('discover', help='scan hosts and CIDR ranges for robots and print them')
    p.add_argument('targets', nargs='*', metavar='CIDR',
                   help='addresses or ranges (default: LEKIWI_DISCOVERY_TARGETS)')
    p.add_argument('--json', action='store_true', help='print JSON instead of a table')
    p.add_argument('--timeout', type=float, help='seconds per probe')
    p.add_argument('--concurrency', type=int, help='probes at once')
    p.add_argument('--agent-port', type=int)
    p.add_argument('--rosbridge-port', type=int)


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    """Scan, merge the answers into an inventory and print it; return the exit status."""
    out = out or sys.stdout  # looked up at call time: tests and callers may swap sys.stdout
    specs = args.targets or settings.discovery_targets
    if not specs:
        print('discover: give addresses or CIDR ranges (or set LEKIWI_DISCOVERY_TARGETS)',
              file=sys.stderr)
        return 2
    try:
        config = ScanConfig(args.concurrency or settings.discovery_concurrency,
                            args.timeout or settings.discovery_probe_timeout_s)
        probes = plan_probes(expand_targets(specs),
                             agent_port=args.agent_port or settings.discovery_agent_port,
                             rosbridge_port=args.rosbridge_port
                             or settings.discovery_rosbridge_port)
    except (TargetError, ValueError) as exc:
        print(f'discover: {exc}', file=sys.stderr)
        return 2
    start = time.monotonic()
    results = asyncio.run(scan(probes, config))
    elapsed = time.monotonic() - start
    inventory = inventory_of(results, time.time())
    entries = [entry_as_dict(e) for e in inventory.entries()]
    if args.json:
        json.dump({'probes': len(probes), 'duration_s': round(elapsed, 3), 'entries': entries},
                  out, indent=2)
        out.write('\n')
        return 0
    rows = [(e['robot_id'] or '-', e['address'] or '-', ','.join(e['sources']),
             ' '.join(f'{s}:{v["port"]}' for s, v in e['sources'].items()),
             e['agent_version'] or '-', e['software_version'] or '-') for e in entries]
    header = ('ROBOT', 'ADDRESS', 'FOUND BY', 'PORTS', 'AGENT', 'SOFTWARE')
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print('  '.join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(),
              file=out)
    hosts = len({p.address for p in probes})
    print(f'{len(entries)} found; {len(probes)} probes of {hosts} addresses in '
          f'{elapsed:.2f} s', file=out)
    return 0


def inventory_of(results: list[ProbeResult], now: float) -> Inventory:
    """Merge a scan's answers into an inventory of their own."""
    inventory = Inventory()
    for r in results:
        if r.found:
            inventory.observe(Sighting(_SOURCE_OF[r.probe.kind], now, r.robot_id,
                                       r.probe.address, r.probe.port, r.details))
    return inventory
