"""The application supervisor with real processes; the health rules' parsing and verdicts."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from lekiwi_agent_ros.deploy.health import (
    HealthReading,
    HealthRules,
    TopicRule,
    parse_topic_rule,
    problems,
)
from lekiwi_agent_ros.deploy.supervisor import AppSupervisor

SLEEPER = [sys.executable, '-c', 'import time; time.sleep(60)', '{release}']


def test_start_sample_stop_and_a_successor_takes_over_an_orphan(tmp_path: Path) -> None:
    pid_file = tmp_path / 'app.pid'
    first = AppSupervisor(SLEEPER, pid_file, stop_timeout_s=2.0)
    assert first.command_for(tmp_path)[-1] == str(tmp_path)
    pid = first.start('1', tmp_path)
    deadline = time.monotonic() + 10
    while first.sample().rss_bytes < 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)  # the interpreter is still starting (or re-executing itself)
    sample = first.sample()
    assert sample.alive and sample.rss_bytes > 1_000_000
    # A new supervisor (an executor restarted after SIGKILL) finds the app by its pid file.
    second = AppSupervisor(SLEEPER, pid_file, stop_timeout_s=2.0)
    assert second.pid() == pid and second.alive()
    assert not second.adopt('2') and second.adopt('1') and second.release == '1'
    second.stop()
    deadline = time.monotonic() + 5
    while first.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not first.alive() and not pid_file.exists()
    assert not second.sample().alive and second.pid() is None


def test_a_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = [sys.executable, '-c',
                'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); '
                'print("ready", flush=True); time.sleep(60)']
    supervisor = AppSupervisor(stubborn, tmp_path / 'app.pid', stop_timeout_s=0.5)
    supervisor.start('1', tmp_path)
    time.sleep(0.5)
    supervisor.stop()
    assert not supervisor.alive()


def test_health_rules() -> None:
    rule = parse_topic_rule('app/alive:std_msgs/msg/String:5')
    assert rule == TopicRule('app/alive', 'std_msgs/msg/String', 5.0)
    for bad in ('app/alive', 'x:std_msgs/String:1', 'x:std_msgs/msg/String:fast'):
        with pytest.raises(ValueError):
            parse_topic_rule(bad)
    rules = HealthRules((rule,), max_rss_bytes=100 << 20, max_cpu_percent=50, settle_s=1.0)
    healthy = HealthReading(True, 2.0, {'app/alive': 10.0}, 50 << 20, 10.0, None)
    assert problems(rules, healthy) == []
    assert problems(rules, HealthReading(False, 2.0)) == ['the application exited']
    sick = HealthReading(True, 0.5, {'app/alive': 1.0}, 200 << 20, 90.0, False)
    found = problems(rules, sick)
    assert len(found) == 5 and any('app/alive at 1.0 Hz' in f for f in found)
