"""Teleoperation seen end to end: a person driving a (simulated) LeKiwi shows at the server.

The simulated robot's operator drives all the time; the real agent's teleop_monitor detects it
and reports a session, the server lists the robot as teleoperated. When the agent is stopped
(SIGINT, as `ros2 launch` does), it ends the open session on its way out and the uplink keeps
that event in its outbox, so the server records the session's end once the agent is back.
"""

from __future__ import annotations

import signal
import sys

from system_harness import ros_env, start_agent, wait_until

ROBOT = 'kiwi-driven'


def sessions(server) -> list[dict]:
    return server.request('GET', f'/api/v1/robots/{ROBOT}/teleop-sessions')


def test_a_driven_robot_shows_a_session_that_ends_when_the_agent_stops(
        fleet_server, processes, ros_domain, tmp_path):
    token_file = tmp_path / 'robot-token'
    token_file.write_text(fleet_server.enrol(ROBOT))
    sim = processes.start('sim', [sys.executable, '-m', 'lekiwi_agent_ros.sim_lekiwi',
                                  '--ros-args', '-p', 'drive_period_s:=0.0',
                                  '-p', 'frame_width:=160', '-p', 'frame_height:=120'],
                          ros_env(ros_domain))
    agent_args = dict(robot_id=ROBOT, server_url=fleet_server.gateway_url,
                      token_file=token_file, outbox_path=tmp_path / 'outbox.db')
    agent = start_agent(processes, ros_domain, **agent_args)

    robot = wait_until(lambda: (r := fleet_server.robot(ROBOT)) and r['teleop_active']
                       and r['state'] == 'teleop' and r, 30,
                       message=f'the robot teleoperated at the server\n{processes.dump()}')
    assert robot['teleop_score'] >= 0.35
    open_session = wait_until(lambda: [s for s in sessions(fleet_server)
                                       if s['ended_at'] is None], 10,
                              message='an open teleop session')[0]

    sim.stop()
    agent.kill(signal.SIGINT)
    assert agent.popen.wait(timeout=20) == 0, agent.output()
    start_agent(processes, ros_domain, **agent_args)

    ended = wait_until(lambda: [s for s in sessions(fleet_server)
                                if s['session_id'] == open_session['session_id']
                                and s['ended_at'] is not None], 30,
                       message=f'the session ended at the server\n{processes.dump()}')[0]
    assert ended['end_reason'] == 'shutdown'
    assert ended['duration_s'] > 0
    wait_until(lambda: (r := fleet_server.robot(ROBOT)) and r['status'] == 'online'
               and not r['teleop_active'] and r['state'] in ('booting', 'idle'), 20,
               message='the robot no longer teleoperated')
