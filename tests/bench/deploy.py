"""Deploy benchmark: a 20 MB release with 5 % of its files changed, rolled out to 100 robots.

Runs the real fleet server on PostgreSQL (scripts/ensure_postgres.sh), enrols the robots, and
starts them as `deploy_robots.py` processes (threads running the real deploy executor and
transfer code; see that file for what is simulated). Release 1.0 (100 files of 200 KB) is
rolled out first to give every robot a current release; then release 1.1, with 5 files
changed, is rolled out in the default waves (5 / 25 / 50 / 100 %) with parallelism 100. Prints
the per-wave times of the 1.1 rollout, its total time and the bytes the robots downloaded
against a full copy. Last line: robots=... total_s=... transferred_bytes=... full_bytes=...

    source scripts/env.sh && python tests/bench/deploy.py [--robots 100] [--processes 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from system_harness import (  # noqa: E402
    FleetServerProcess,
    ProcessGroup,
    create_database,
    drop_database,
    wait_until,
)

TERMINAL = {'completed', 'paused', 'rolled_back', 'aborted'}


def make_tree(root: Path, files: int, size: int, changed: int, seed: bytes) -> None:
    (root / 'launch').mkdir(parents=True)
    (root / 'launch' / 'robot.launch.py').write_text('# bench release\n')
    for i in range(files):
        data = os.urandom(size) if i < changed else (seed * (size // len(seed) + 1))[:size]
        if i >= changed:
            data = data[:-8] + i.to_bytes(8, 'big')  # distinct files, same in both releases
        (root / f'file{i:03d}.bin').write_bytes(data)


def rollout(server: FleetServerProcess, version: str, robots: list[str]) -> tuple[
        dict[str, Any], float, list[tuple[int, float, float]]]:
    start = time.monotonic()
    deployment_id = server.request('POST', '/api/v1/deployments', {
        'release_version': version, 'robots': robots, 'parallelism': 100,
        'health_timeout_s': 60.0, 'robot_timeout_s': 300.0})['deployment_id']
    wave_started: dict[int, float] = {}
    wave_done: dict[int, float] = {}
    state: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal state
        state = server.request('GET', f'/api/v1/deployments/{deployment_id}')
        now = time.monotonic() - start
        for wave in state['waves']:
            wave_started.setdefault(wave['wave'], now)
            if wave['succeeded'] + wave['failed'] + wave['skipped'] == len(wave['robots']):
                wave_done.setdefault(wave['wave'], now)
        return state['status'] in TERMINAL

    wait_until(finished, 600, interval=0.1, message=f'rollout of {version}')
    total = time.monotonic() - start
    waves = [(w, wave_started[w], wave_done.get(w, total)) for w in sorted(wave_started)]
    return state, total, waves


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--robots', type=int, default=100)
    parser.add_argument('--processes', type=int, default=4)
    parser.add_argument('--files', type=int, default=100)
    parser.add_argument('--file-kb', type=int, default=200)
    parser.add_argument('--changed-percent', type=float, default=5.0)
    args = parser.parse_args()
    base = subprocess.run(['scripts/ensure_postgres.sh'], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[2]).stdout.strip()
    url = create_database(base, f'lekiwi_bench_{uuid.uuid4().hex[:10]}')
    processes = ProcessGroup()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            server = FleetServerProcess(processes, url, tmp / 'server')
            server.start(timeout=60)
            robots = [f'bench-{i:03d}' for i in range(args.robots)]
            tokens = {r: server.enrol(r) for r in robots}
            seed = os.urandom(4096)
            size = args.file_kb * 1024
            changed = max(1, round(args.files * args.changed_percent / 100))
            env = {**os.environ, 'LEKIWI_DATABASE_URL': url,
                   'LEKIWI_DATA_DIR': str(tmp / 'server')}
            for version, n_changed in (('1.0', args.files), ('1.1', changed)):
                tree = tmp / f'tree-{version}'
                if version == '1.0':
                    make_tree(tree, args.files, size, 0, seed)
                else:
                    make_tree(tree, args.files, size, n_changed, seed)
                subprocess.run([sys.executable, '-m', 'lekiwi_fleet_server', 'release', 'push',
                                str(tree), '--version', version], env=env, check=True,
                               capture_output=True)
            per = (len(robots) + args.processes - 1) // args.processes
            for index in range(args.processes):
                share = dict(list(tokens.items())[index * per:(index + 1) * per])
                listing = tmp / f'robots-{index}.json'
                listing.write_text(json.dumps(share))
                processes.start(f'robots-{index}', [
                    sys.executable, str(Path(__file__).with_name('deploy_robots.py')),
                    '--gateway', server.gateway_url, '--api', server.api_url,
                    '--root', str(tmp / 'robots'), '--robots', str(listing)],
                    {'PYTHONUNBUFFERED': '1'})
            wait_until(lambda: sum(1 for r in server.request('GET', '/api/v1/robots')
                                   if r.get('connected')) == len(robots), 120, interval=0.5,
                       message='the robots to connect')
            first, first_s, _ = rollout(server, '1.0', robots)
            print(f'release 1.0 (full copy) to {len(robots)} robots: {first["status"]} in '
                  f'{first_s:.1f} s')
            second, total, waves = rollout(server, '1.1', robots)
            for wave, started, done in waves:
                n = len(second['waves'][wave - 1]['robots'])
                print(f'wave {wave}: {n} robots, started at {started:.1f} s, done at '
                      f'{done:.1f} s ({done - started:.1f} s)')
            ok = sum(r['state'] == 'succeeded' for r in second['robots'])
            transferred = sum(r['transferred_bytes'] for r in second['robots'])
            full = sum(r['full_bytes'] for r in second['robots'])
            print(f'release 1.1 ({changed} of {args.files} files changed): {second["status"]}, '
                  f'{ok}/{len(robots)} updated, {100 * transferred / max(full, 1):.1f} % of a '
                  f'full copy transferred')
            print(f'robots={len(robots)} total_s={total:.1f} transferred_bytes={transferred} '
                  f'full_bytes={full}')
        finally:
            processes.stop_all()
            drop_database(base, url)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
