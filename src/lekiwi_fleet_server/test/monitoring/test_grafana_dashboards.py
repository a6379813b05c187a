"""Grafana: the provisioned datasource and dashboards. Every panel's query parses (promtool
checks it as a recording rule) and reads only series that exist (the server's metrics, the
recording rules, Prometheus' own and the exporters'); every variable used is defined and every
variable defined is used."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_files import (
    GRAFANA,
    load_yaml,
    recording_names,
    run_promtool,
    server_metric_names,
    unknown_names,
)

DASHBOARDS = sorted((GRAFANA / 'dashboards').glob('*.json'))
REQUIRED = {'lekiwi-fleet-overview', 'lekiwi-ingest-latency', 'lekiwi-deployments',
            'lekiwi-robot'}
# Grafana's own variables: what a query gets for them when checked.
BUILTINS = {'__rate_interval': '1m', '__interval': '1m', '__range': '1h', '__range_s': '3600',
            '__interval_ms': '60000'}
_VARIABLE = re.compile(r'\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]')


def _datasource_uid() -> str:
    provisioned = load_yaml(GRAFANA / 'provisioning' / 'datasources' / 'prometheus.yml')
    (source,) = provisioned['datasources']
    assert source['type'] == 'prometheus' and source['url'] == 'http://prometheus:9090'
    return str(source['uid'])


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard['panels']:
        out.append(panel)
        out.extend(panel.get('panels', []))  # rows hold their panels
    return out


def _variables_in(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(text)}


def _substituted(expr: str, variables: dict[str, dict[str, Any]]) -> str:
    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in BUILTINS:
            return BUILTINS[name]
        return 'kiwi-1' if name in variables else match.group(0)
    return _VARIABLE.sub(value, expr)


@pytest.fixture(scope='module')
def dashboards() -> dict[str, dict[str, Any]]:
    loaded = {}
    for path in DASHBOARDS:
        data = json.loads(path.read_text(encoding='utf-8'))
        loaded[data['uid']] = data
    return loaded


def test_provisioning_points_at_the_dashboards() -> None:
    provider = load_yaml(GRAFANA / 'provisioning' / 'dashboards' / 'lekiwi.yml')
    (entry,) = provider['providers']
    assert entry['type'] == 'file' and entry['options']['path'] == '/var/lib/grafana/dashboards'
    compose = yaml.safe_load((GRAFANA.parent / 'compose.yaml').read_text())
    mounts = compose['services']['grafana']['volumes']
    assert './grafana/dashboards:/var/lib/grafana/dashboards:ro' in mounts
    assert './grafana/provisioning:/etc/grafana/provisioning:ro' in mounts


def test_the_four_dashboards_are_there(dashboards: dict[str, dict[str, Any]]) -> None:
    assert set(dashboards) == REQUIRED and len(DASHBOARDS) == len(REQUIRED)
    for uid, dashboard in dashboards.items():
        assert dashboard['title'] and dashboard['panels'], uid
        ids = [p['id'] for p in _panels(dashboard)]
        assert len(ids) == len(set(ids)), f'{uid}: duplicate panel ids'


def test_panels_use_the_provisioned_datasource(dashboards: dict[str, dict[str, Any]]) -> None:
    uid = _datasource_uid()
    for dashboard in dashboards.values():
        for panel in _panels(dashboard):
            if panel['type'] == 'row':
                continue
            assert panel['datasource']['uid'] == uid, panel['title']
            assert panel['targets'], panel['title']
            for target in panel['targets']:
                assert target['datasource']['uid'] == uid and target['expr'].strip()


def test_no_dangling_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    for uid, dashboard in dashboards.items():
        defined = {v['name'] for v in dashboard['templating']['list']}
        used: set[str] = set()
        for panel in _panels(dashboard):
            used |= _variables_in(panel['title'])
            for target in panel.get('targets', []):
                used |= _variables_in(target['expr']) | _variables_in(
                    target.get('legendFormat', ''))
        assert used - defined - set(BUILTINS) == set(), f'{uid}: undefined variables'
        assert defined - used == set(), f'{uid}: variables no panel uses'
        for variable in dashboard['templating']['list']:
            query = variable['query']['query']
            match = re.fullmatch(r'label_values\((\w+),\s*(\w+)\)', query)
            assert match, f'{uid}: variable {variable["name"]}: {query}'
            assert match.group(1) in server_metric_names(), query


def test_every_query_parses_and_reads_series_that_exist(
        dashboards: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    known = server_metric_names() | recording_names()
    rules = []
    for uid, dashboard in dashboards.items():
        variables = {v['name']: v for v in dashboard['templating']['list']}
        for panel in _panels(dashboard):
            for target in panel.get('targets', []):
                expr = _substituted(target['expr'], variables)
                assert '$' not in expr, f'{uid} / {panel["title"]}: {expr}'
                assert unknown_names(expr, known) == set(), f'{uid} / {panel["title"]}'
                rules.append({'record': f'panel:{uid.replace("-", "_")}_{panel["id"]}'
                                        f'_{target["refId"]}', 'expr': expr})
    checked = tmp_path / 'panels.yml'
    checked.write_text(yaml.safe_dump({'groups': [{'name': 'panels', 'rules': rules}]}))
    done = run_promtool('check', 'rules', str(checked))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'{len(rules)} rules found' in done.stdout


def test_a_broken_query_is_caught(tmp_path: Path) -> None:
    checked = tmp_path / 'broken.yml'
    checked.write_text(yaml.safe_dump({'groups': [{'name': 'p', 'rules': [
        {'record': 'panel:x', 'expr': 'sum by (status (lekiwi_robots)'}]}]}))
    assert run_promtool('check', 'rules', str(checked)).returncode != 0
    assert unknown_names('lekiwi_robots_onlnie', server_metric_names()) == {
        'lekiwi_robots_onlnie'}
