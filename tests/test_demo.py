"""The README's demo command: server on the embedded database plus one simulated robot."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_lists_the_simulated_robot_within_five_seconds(tmp_path, ros_domain):
    env = {**os.environ, 'LEKIWI_DEMO_ONCE': '1', 'LEKIWI_DEMO_DIR': str(tmp_path / 'demo'),
           'LEKIWI_API_PORT': '0', 'LEKIWI_GATEWAY_PORT': '0', 'ROS_DOMAIN_ID': ros_domain}
    result = subprocess.run([str(ROOT / 'scripts' / 'demo.sh')], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = re.search(r'robot kiwi-sim-1 is listed after ([\d.]+) s', result.stdout)
    assert listed, result.stdout
    assert float(listed.group(1)) < 5.0
    api = re.search(r'API and its docs:\s+(http://127\.0\.0\.1:\d+)/docs', result.stdout)
    assert api, result.stdout
    # The demo keeps its state: the embedded database, the tokens (owner-only) and logs.
    demo = tmp_path / 'demo'
    assert (demo / 'fleet.db').exists()
    assert (demo / 'robot-token').stat().st_mode & 0o077 == 0
    assert (demo / 'admin-token').stat().st_mode & 0o077 == 0
    # The dashboard's URL and a demo login (its password kept owner-only beside the tokens).
    password = (demo / 'demo-password').read_text()
    assert (demo / 'demo-password').stat().st_mode & 0o077 == 0
    assert re.search(r'dashboard:\s+http://127\.0\.0\.1:\d+/ui/\s+\(log in as demo / '
                     + re.escape(password) + r'\)', result.stdout), result.stdout
    # A second run reuses that state (idempotent) and the robot is listed again.
    again = subprocess.run([str(ROOT / 'scripts' / 'demo.sh')], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert 'is listed after' in again.stdout
