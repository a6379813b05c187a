"""Where the monitoring files live and how the tests reach promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
PROMETHEUS = ROOT / 'docker' / 'prometheus'
GRAFANA = ROOT / 'docker' / 'grafana'
RULE_FILES = sorted((PROMETHEUS / 'rules').glob('*.yml'))
RULE_TESTS = sorted((PROMETHEUS / 'tests').glob('*.test.yml'))


def promtool() -> str:
    """Return promtool's path, or skip (scripts/ensure_prometheus.sh installs it)."""
    tool = shutil.which('promtool')
    if tool is None:
        pytest.skip("promtool is missing: scripts/ensure_prometheus.sh installs Debian's "
                    'prometheus package (the test command runs it)')
    return tool


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool; the result holds its output."""
    return subprocess.run([promtool(), *args], capture_output=True, text=True, check=False,
                          timeout=120)


def load_yaml(path: Path) -> dict:
    """Return a YAML file's mapping."""
    with path.open(encoding='utf-8') as stream:
        data = yaml.safe_load(stream)
    assert isinstance(data, dict), path
    return data


def rules() -> list[dict]:
    """Return every rule (recording and alerting) of the rule files."""
    return [rule for path in RULE_FILES for group in load_yaml(path)['groups']
            for rule in group['rules']]
