"""Outbox write cost (issue 15): a history put with synchronous=FULL (an fsync of the WAL per
commit, what the outbox does for events, deployment status and telemetry) against NORMAL.

Puts `--count` fleet/events messages of ~300 bytes into a fresh outbox in a directory of the
disk under test (default: a temporary directory), once as the outbox does (FULL) and once with
the history commits forced to NORMAL, and prints the time per put. The last line sums up.

    python tests/bench/outbox_sync.py [--count 500] [--dir /var/lib/lekiwi]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'src' / 'lekiwi_agent_ros'))

from lekiwi_agent_ros.uplink.outbox import Outbox, TopicPolicy  # noqa: E402


def run(directory: str, count: int, full: bool) -> float:
    path = Path(tempfile.mkdtemp(dir=directory)) / 'outbox.sqlite3'
    outbox = Outbox(str(path), 'bench-boot', {'fleet/events': TopicPolicy(state=False)})
    if not full:
        outbox._sync = lambda full: None  # type: ignore[method-assign]  # stays NORMAL
    message = {'event_type': 'bench.tick', 'payload_json': 'x' * 250}
    start = time.perf_counter()
    for n in range(count):
        outbox.put('fleet/events', {**message, 'sequence': n})
    elapsed = time.perf_counter() - start
    outbox.close()
    return elapsed / count * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--count', type=int, default=500)
    parser.add_argument('--dir', default=tempfile.gettempdir())
    args = parser.parse_args()
    normal = run(args.dir, args.count, full=False)
    full = run(args.dir, args.count, full=True)
    print(f'{args.count} history puts in {args.dir}: NORMAL {normal:.3f} ms each, '
          f'FULL {full:.3f} ms each ({full / normal:.1f}x)')
    print(f'put_normal_ms={normal:.3f} put_full_ms={full:.3f} count={args.count}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
