"""Where the monitoring files live and how the tests reach promtool."""

from __future__ import annotations

import re
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


# Names Prometheus itself or the exporters of prometheus.yml provide.
BUILTIN_METRICS = frozenset({'up', 'ALERTS', 'ALERTS_FOR_STATE', 'scrape_duration_seconds'})
EXPORTER_PREFIXES = ('node_', 'pg_', 'nats_', 'redis_', 'prometheus_')
_NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
_PROMQL_WORDS = frozenset({
    'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless',
    'bool', 'offset', 'inf', 'nan', 'e',
})


def server_metric_names() -> set[str]:
    """Return every series name the fleet server and its writers expose."""
    from prometheus_client import CollectorRegistry

    from lekiwi_fleet_server.deployments.collector import DeploymentCollector
    from lekiwi_fleet_server.domain import events as ev
    from lekiwi_fleet_server.domain.rollout import Rollout
    from lekiwi_fleet_server.fleet_collector import FleetStateCollector
    from lekiwi_fleet_server.gateway.writer_metrics import WriterMetrics
    from lekiwi_fleet_server.metrics import FleetMetrics
    from lekiwi_fleet_server.settings import Settings
    from lekiwi_fleet_server.store.interface import RobotSummary

    class OneRobot:
        def list_robots(self, _filter: object, *, now: float) -> list[RobotSummary]:
            return [RobotSummary('r', (), 'online', 0.0, False, last_heartbeat_at=now,
                                 resources={'battery_percent': 1.0, 'cpu_percent': 1.0,
                                            'temperature_c': 1.0})]

        def undelivered_messages(self) -> dict[str, int]:
            return {'r': 1}

    metrics = FleetMetrics()
    metrics.add_collector(FleetStateCollector(Settings(data_dir=Path('/')), OneRobot(),  # type: ignore[arg-type]
                                              lambda: 0.0))
    rollout = Rollout.replay([ev.DeploymentCreated(
        '', deployment_id='dep-1', release_version='2', manifest_sha256='0' * 64,
        robots=('r',), waves=(1.0,), parallelism=1, success_gate=0.8, rollback_gate=0.2,
        deadline_s=60.0, robot_timeout_s=60.0, health_timeout_s=60.0, force=False,
        created_by='ops', at=0.0)])
    metrics.add_collector(DeploymentCollector(lambda: {'running': 1}, lambda: [rollout]))
    writer = WriterMetrics(CollectorRegistry(), shard=0)
    names: set[str] = set()
    for registry in (metrics.registry, writer.registry):
        for family in registry.collect():
            if family.type == 'counter':
                names |= {f'{family.name}_total', f'{family.name}_created'}
            elif family.type == 'histogram':
                names |= {f'{family.name}_{s}' for s in ('bucket', 'count', 'sum', 'created')}
            else:
                names.add(family.name)
    return names


def metric_names_in(expr: str) -> set[str]:
    """Return the series names a PromQL expression reads (functions and keywords left out)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    bare = re.sub(r'\{[^}]*\}', '', bare)  # label matchers
    bare = re.sub(r'\[[^\]]*\]', '', bare)  # ranges
    bare = re.sub(r'(?<![\w:])\d+(?:\.\d*)?(?:[eE][-+]?\d+|ms|[smhdwy])?', '0', bare)  # numbers
    bare = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', '', bare)
    names = set()
    for match in _NAME.finditer(bare):
        word = match.group(0)
        rest = bare[match.end():].lstrip()
        if rest.startswith('(') or word.lower() in _PROMQL_WORDS:
            continue  # a function call or a keyword
        names.add(word)
    return names


def recording_names() -> set[str]:
    """Return the names the recording rules record."""
    return {rule['record'] for rule in rules() if 'record' in rule}


def unknown_names(expr: str, known: set[str]) -> set[str]:
    """Return the series an expression reads that nothing provides."""
    return {name for name in metric_names_in(expr)
            if name not in known and name not in BUILTIN_METRICS
            and not name.startswith(EXPORTER_PREFIXES)}
