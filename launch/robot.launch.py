"""Start the LeKiwi Fleet agent on a robot: `ros2 launch lekiwi_agent_ros robot.launch.py`.

By default the agent nodes (heartbeat, telemetry, teleop_monitor, fleet_uplink) share one
process and one executor, so the interpreter and the DDS participant are paid once; the WebRTC
streamer runs in its own process. Parameters come from config/agent.yaml; the launch arguments
below override the ones a robot always sets.
"""

import os
import secrets

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushRosNamespace

AGENT_NODES = ('heartbeat', 'telemetry', 'teleop_monitor', 'fleet_uplink')


def generate_launch_description() -> LaunchDescription:
    """Declare the robot's launch arguments and the agent processes."""
    share = get_package_share_directory('lekiwi_agent_ros')
    robot_id = LaunchConfiguration('robot_id')
    server_url = LaunchConfiguration('server_url')
    token_file = LaunchConfiguration('token_file')
    params_file = LaunchConfiguration('params_file')
    one_process = LaunchConfiguration('one_process')
    boot_id = LaunchConfiguration('boot_id')
    # One boot id per `ros2 launch`, given to every agent node: with one_process:=false the
    # nodes are separate processes and must still agree on it (lekiwi_agent_ros/boot_id.py).
    overrides = {'robot_id': robot_id, 'boot_id': boot_id}
    uplink_overrides = {'robot_id': robot_id, 'server_url': server_url,
                        'token_file': token_file, 'boot_id': boot_id}

    arguments = [
        DeclareLaunchArgument('robot_id', description='Fleet id of this robot, as enrolled'),
        DeclareLaunchArgument('server_url', default_value='ws://127.0.0.1:9090/',
                              description='Robot gateway of the fleet server'),
        DeclareLaunchArgument('token_file', default_value='/etc/lekiwi/robot-token',
                              description='File holding the robot token given at enrolment'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'agent.yaml'),
                              description='Parameters of the agent nodes'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='ROS namespace of this robot'),
        DeclareLaunchArgument('one_process', default_value='true',
                              description='Host the agent nodes in one process'),
        DeclareLaunchArgument('boot_id', default_value=secrets.token_hex(8),
                              description="The agent's boot id, shared by all its nodes "
                                          '(default: a fresh one per launch)'),
        DeclareLaunchArgument('webrtc', default_value='true',
                              description='Start the WebRTC streamer'),
        DeclareLaunchArgument('zmq_bridge', default_value='false',
                              description='Relay a stock LeRobot LeKiwi host (ZeroMQ) and publish '
                                          'its operators and commands (move the host to ports '
                                          '15555/15556 first)'),
        DeclareLaunchArgument('operator_token_file', default_value='/etc/lekiwi/operator-token',
                              description='File holding the bearer token operators present to '
                                          "the WebRTC streamer's signalling endpoint"),
    ]

    one_process_agent = Node(
        package='lekiwi_agent_ros', executable='agent', output='screen',
        parameters=[params_file, overrides, uplink_overrides],
        condition=IfCondition(one_process))
    separate_nodes = [
        Node(package='lekiwi_agent_ros', executable=name, name=name, output='screen',
             parameters=[params_file, uplink_overrides if name == 'fleet_uplink' else overrides],
             condition=UnlessCondition(one_process))
        for name in AGENT_NODES
    ]
    streamer = Node(
        package='lekiwi_agent_ros', executable='webrtc_streamer', name='webrtc_streamer',
        output='screen',
        parameters=[params_file, {
            'robot_id': robot_id,
            'operator_token_file': LaunchConfiguration('operator_token_file')}],
        condition=IfCondition(LaunchConfiguration('webrtc')))

    zmq_bridge = Node(
        package='lekiwi_agent_ros', executable='lekiwi_zmq_bridge', name='lekiwi_zmq_bridge',
        output='screen', parameters=[params_file, overrides],
        condition=IfCondition(LaunchConfiguration('zmq_bridge')))

    robot = GroupAction([
        PushRosNamespace(LaunchConfiguration('namespace')),
        one_process_agent,
        *separate_nodes,
        streamer,
        zmq_bridge,
    ])
    return LaunchDescription([*arguments, robot])
