"""The one-process agent: all nodes in one executor, end to end to the stand-in gateway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_harness import agent_harness, wait_for
from uplink_server import UplinkTestServer

from lekiwi_agent_ros import agent, node_runner

ROBOT = 'kiwi-agent'
TOKEN = 'lkw_agent_token'


@pytest.fixture
def server(make_uplink_server: Callable[[str, str], UplinkTestServer]) -> UplinkTestServer:
    return make_uplink_server(ROBOT, TOKEN)

def test_agent_nodes_share_one_boot_and_reach_the_server(
    server: UplinkTestServer, tmp_path: Path
) -> None:
    with agent_harness() as harness:
        kwargs = harness.kwargs(
            robot_id=ROBOT,
            server_url=server.url,
            token=TOKEN,
            outbox_path=str(tmp_path / 'outbox.sqlite3'),
            rate_hz=10.0,
            period_s=0.2,
        )
        nodes = agent.agent_nodes(boot_id='b00700000000agen', **kwargs)
        for node in nodes:
            harness.add(node)
        names = [node.get_name() for node in nodes]
        expected = ['heartbeat', 'telemetry', 'fleet_uplink']
        if agent.teleop_monitor_class() is not None:
            expected.insert(2, 'teleop_monitor')
        assert names == expected
        assert wait_for(
            lambda: len(server.messages('fleet/heartbeat')) >= 3
            and server.messages('fleet/telemetry')
            and (len(expected) == 3 or server.messages('teleop/status')),
            timeout=10.0,
        )
        heartbeat = server.messages('fleet/heartbeat')[-1]
        assert heartbeat.boot_id == heartbeat.msg['boot_id'] == 'b00700000000agen'
        assert heartbeat.msg['robot_id'] == ROBOT
        telemetry = server.messages('fleet/telemetry')[0]
        assert telemetry.msg['full_snapshot'] and telemetry.msg['boot_id'] == 'b00700000000agen'


def test_a_node_that_fails_to_start_takes_the_others_down_cleanly(tmp_path: Path) -> None:
    with agent_harness() as harness:
        kwargs = harness.kwargs(server_url='not-a-url', outbox_path=str(tmp_path / 'o.sqlite3'))
        with pytest.raises(ValueError, match='server_url'):
            agent.agent_nodes(**kwargs)

        def ours() -> list[str]:
            return sorted(
                name
                for name, namespace in harness.helper.get_node_names_and_namespaces()
                if namespace == harness.namespace
            )

        assert wait_for(lambda: ours() == ['test_helper'])


def test_python_m_agent_runs_logs_and_stops_on_sigint(
    server: UplinkTestServer, tmp_path: Path
) -> None:
    token_file = tmp_path / 'token'
    token_file.write_text(TOKEN)
    command = [
        sys.executable, '-m', 'lekiwi_agent_ros.agent', '--ros-args',
        '-r', '__ns:=/agentprobe',
        '-p', f'robot_id:={ROBOT}',
        '-p', f'server_url:={server.url}',
        '-p', f'token_file:={token_file}',
        '-p', f'outbox_path:={tmp_path / "outbox.sqlite3"}',
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ)
    )
    try:
        assert server.wait_for(lambda: len(server.messages('fleet/heartbeat')) >= 2, 20.0)
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=15)
    assert process.returncode == 0, out
    assert 'deferred imports: numpy, yaml' in out, out
    assert 'authenticated with' in out and f'uplink for robot {ROBOT}' in out
    assert server.messages('fleet/telemetry')


def test_the_shipped_parameter_file_loads(server: UplinkTestServer, tmp_path: Path) -> None:
    import yaml

    shipped = Path(__file__).resolve().parents[3] / 'config' / 'agent.yaml'
    params = yaml.safe_load(shipped.read_text())
    # node-specific entries of a file win over -p: point the uplink at the test server here
    params['/**/fleet_uplink']['ros__parameters'].update(
        server_url=server.url, token=TOKEN, outbox_path=str(tmp_path / 'o.sqlite3')
    )
    params_file = tmp_path / 'agent.yaml'
    params_file.write_text(yaml.safe_dump(params))
    server.tokens['kiwi-001'] = TOKEN
    process = subprocess.Popen(
        [sys.executable, '-m', 'lekiwi_agent_ros.agent', '--ros-args',
         '--params-file', str(params_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        assert server.wait_for(lambda: server.messages('fleet/heartbeat'), 20.0)
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=15)
    assert process.returncode == 0, out
    assert server.messages('fleet/heartbeat')[0].msg['robot_id'] == 'kiwi-001'


def test_main_reports_a_refused_parameter_with_exit_code_2(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, '-m', 'lekiwi_agent_ros.agent', '--ros-args', '-r', '__ns:=/agentbad',
         '-p', 'window:=0', '-p', f'outbox_path:={tmp_path / "o.sqlite3"}'],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'window must be >= 1' in result.stdout + result.stderr
    assert time.monotonic() - started < 30


def test_make_executor_prefers_the_events_executor() -> None:
    executor = node_runner.make_executor()
    try:
        import rclpy.experimental  # noqa: F401
    except ImportError:  # Jazzy
        expected = 'SingleThreadedExecutor'
    else:
        expected = 'EventsExecutor'
    try:
        assert type(executor).__name__ == expected
    finally:
        executor.shutdown()


def test_without_teleop_monitor_the_agent_still_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(agent, 'teleop_monitor_class', lambda: None)
    with agent_harness() as harness:
        nodes = agent.agent_nodes(
            **harness.kwargs(server_url='ws://127.0.0.1:9/', outbox_path=str(tmp_path / 'o.db'))
        )
        try:
            assert [n.get_name() for n in nodes] == ['heartbeat', 'telemetry', 'fleet_uplink']
        finally:
            for node in nodes:
                node.destroy_node()


def test_sigterm_also_stops_the_agent(server: UplinkTestServer, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, '-m', 'lekiwi_agent_ros.agent', '--ros-args', '-r', '__ns:=/agentterm',
         '-p', f'server_url:={server.url}', '-p', f'outbox_path:={tmp_path / "o.sqlite3"}'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
    )  # fmt: skip
    time.sleep(3.0)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=15)
    assert process.returncode in (0, -signal.SIGTERM), out
    assert 'no robot token' in out


def stop_default_context_after(seconds: float) -> threading.Timer:
    """Shut rclpy's default context down from another thread, as Ctrl-C would."""
    import rclpy

    timer = threading.Timer(seconds, rclpy.try_shutdown)
    timer.start()
    return timer


def test_main_in_process_spins_until_shutdown(server: UplinkTestServer, tmp_path: Path) -> None:
    stop_default_context_after(2.0)
    code = agent.main(
        ['--ros-args', '-r', '__ns:=/agentinproc', '-p', f'robot_id:={ROBOT}',
         '-p', f'server_url:={server.url}', '-p', f'token:={TOKEN}',
         '-p', f'outbox_path:={tmp_path / "o.sqlite3"}', '-p', 'rate_hz:=10.0']
    )  # fmt: skip
    assert code == 0
    assert server.messages('fleet/heartbeat')


def test_run_nodes_reports_a_refused_configuration() -> None:
    def refuse() -> list:
        raise ValueError('rate_hz must be > 0, got 0')

    assert node_runner.run_nodes(refuse, [], 'refusing') == 2


def test_run_nodes_names_a_missing_dependency() -> None:
    def missing() -> list:
        raise ImportError("No module named 'aiortc'", name='aiortc')

    assert node_runner.run_nodes(missing, [], 'missing') == 2


def test_sigterm_stops_the_loop_and_the_nodes_go_first_to_last() -> None:
    import signal

    from rclpy.node import Node

    nodes: list = []
    destroyed: list[str] = []

    def build() -> list:
        for name in ('runner_first', 'runner_second'):
            node = Node(name, namespace='/agentsigterm')
            original = node.destroy_node
            node.destroy_node = lambda n=name, d=original: (destroyed.append(n), d())[1]
            nodes.append(node)
        # As systemd or `ros2 launch` stops the agent: a SIGTERM to the process.
        nodes[0].create_timer(0.3, lambda: signal.raise_signal(signal.SIGTERM))
        return nodes

    before, started = signal.getsignal(signal.SIGTERM), time.monotonic()
    assert node_runner.run_nodes(build, [], 'sigterm') == 0
    assert destroyed == ['runner_first', 'runner_second']
    assert time.monotonic() - started < 5.0  # within a spin timeout, plus the drain
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back


def test_a_failing_callback_does_not_stop_the_other_nodes() -> None:
    import rclpy
    from rclpy.node import Node

    ticks: list[float] = []

    def build() -> list:
        node = Node('callback_failure_probe', namespace='/agentcallback')

        def fail() -> None:
            raise RuntimeError('a bug in one callback')

        node.create_timer(0.1, fail)
        node.create_timer(0.1, lambda: ticks.append(time.monotonic()))
        return [node]

    timer = threading.Timer(2.0, rclpy.try_shutdown)
    timer.start()
    try:
        code = node_runner.run_nodes(build, [], 'callback_failure')
    finally:
        timer.cancel()
    assert code == 0
    # Every failure went by the runner and the healthy timer kept ticking through them.
    assert len(ticks) >= 5


def test_a_second_agent_on_the_default_outbox_exits_saying_why(
    server: UplinkTestServer, tmp_path: Path
) -> None:
    env = dict(os.environ, ROS_HOME=str(tmp_path / 'ros_home'))  # the default outbox lives here

    def agent_process(namespace: str, robot_id: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, '-m', 'lekiwi_agent_ros.agent', '--ros-args',
             '-r', f'__ns:=/{namespace}', '-p', f'robot_id:={robot_id}',
             '-p', f'server_url:={server.url}', '-p', f'token:={TOKEN}'],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip

    first = agent_process('agentfirst', ROBOT)
    try:
        assert server.wait_for(lambda: len(server.messages('fleet/heartbeat')) >= 1, 30.0)
        second = agent_process('agentsecond', 'kiwi-second')
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 2, out
        assert 'in use by another agent' in out and 'outbox_path' in out, out
        before = len(server.messages('fleet/heartbeat'))
        assert server.wait_for(lambda: len(server.messages('fleet/heartbeat')) > before + 1, 20.0)
        assert first.poll() is None
        assert {m.msg['robot_id'] for m in server.messages('fleet/heartbeat')} == {ROBOT}
    finally:
        first.send_signal(signal.SIGINT)
        out, _ = first.communicate(timeout=30)
    assert first.returncode == 0, out


def test_a_websockets_too_old_stops_the_agent_with_the_instruction(tmp_path: Path) -> None:
    # What Ubuntu 24.04's python3-websockets 10.4 looks like to the agent: no asyncio client.
    old = tmp_path / 'site' / 'websockets'
    old.mkdir(parents=True)
    (old / '__init__.py').write_text("__version__ = '10.4'\n")
    (old / 'exceptions.py').write_text(
        'class WebSocketException(Exception): pass\n'
        'class ConnectionClosed(WebSocketException): pass\n')
    env = dict(os.environ)
    env['PYTHONPATH'] = f'{tmp_path / "site"}{os.pathsep}{env.get("PYTHONPATH", "")}'
    result = subprocess.run(
        [sys.executable, '-m', 'lekiwi_agent_ros.agent', '--ros-args', '-r', '__ns:=/agentold',
         '-p', f'outbox_path:={tmp_path / "o.sqlite3"}'],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "missing or too old Python module 'websockets'" in out, out
    assert 'pip install -r requirements/agent.txt' in out and 'Traceback' not in out, out
