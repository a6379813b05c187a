"""Prometheus: the scrape configuration, the rules and their unit tests, checked by promtool."""

from __future__ import annotations

import shutil
from pathlib import Path

from monitoring_files import (
    PROMETHEUS,
    RULE_FILES,
    RULE_TESTS,
    load_yaml,
    metric_names_in,
    recording_names,
    rules,
    run_promtool,
    server_metric_names,
    unknown_names,
)

# What the issue asks an alert for.
REQUIRED_ALERTS = {
    'LekiwiRobotOffline', 'LekiwiRobotOutboxGrowing', 'LekiwiFleetOfflineShare',
    'LekiwiAckLatencyHigh',
    'LekiwiWriterBacklogGrowing', 'LekiwiDeploymentRolledBack', 'LekiwiServerDiskNearlyFull',
    'LekiwiDatabaseDiskNearlyFull', 'LekiwiRolloutPaused', 'LekiwiRolloutRolledBack',
}


def test_scrape_configuration_is_valid() -> None:
    done = run_promtool('check', 'config', str(PROMETHEUS / 'prometheus.yml'))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'{len(RULE_FILES)} rule files found' in done.stdout


def test_rules_are_valid() -> None:
    done = run_promtool('check', 'rules', *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    done = run_promtool('test', 'rules', *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_runbook_and_is_tested_firing_and_not() -> None:
    alerts = {r['alert']: r for r in rules() if 'alert' in r}
    assert REQUIRED_ALERTS <= set(alerts)
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for test in load_yaml(path)['tests']:
            for case in test.get('alert_rule_test', []):
                (firing if case.get('exp_alerts') else quiet).add(case['alertname'])
    for name, rule in alerts.items():
        assert rule['annotations'].get('runbook'), f'{name} has no runbook'
        assert rule['annotations'].get('summary'), f'{name} has no summary'
        assert rule['labels']['severity'] in ('warning', 'critical'), name
    assert set(alerts) - firing == set(), 'alerts never tested firing'
    assert set(alerts) - quiet == set(), 'alerts never tested quiet'


def test_a_broken_threshold_fails_the_rule_tests(tmp_path: Path) -> None:
    # The unit tests can fail: with the robot-offline alert's `for` doubled, they do.
    copy = tmp_path / 'prometheus'
    shutil.copytree(PROMETHEUS, copy)
    alerts = copy / 'rules' / 'lekiwi-alerts.yml'
    text = alerts.read_text()
    assert text.count('for: 10m') >= 1
    alerts.write_text(text.replace('for: 10m', 'for: 20m', 1))
    done = run_promtool('test', 'rules', str(copy / 'tests' / 'lekiwi-alerts.test.yml'))
    assert done.returncode != 0 and 'LekiwiRobotOffline' in done.stdout + done.stderr


def test_rules_read_only_series_that_exist() -> None:
    known = server_metric_names() | recording_names()
    for rule in rules():
        name = rule.get('record') or rule.get('alert')
        assert unknown_names(rule['expr'], known) == set(), name


def test_metric_names_in_finds_series_not_functions() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(lekiwi_x_bucket{le="1"}[5m]))) '
            '/ on(shard) group_left lekiwi:y and time() - z_total > 5e3')
    assert metric_names_in(expr) == {'lekiwi_x_bucket', 'lekiwi:y', 'z_total'}
    assert unknown_names('lekiwi_gateway_nope + up + node_load1', {'a'}) == {
        'lekiwi_gateway_nope'}
