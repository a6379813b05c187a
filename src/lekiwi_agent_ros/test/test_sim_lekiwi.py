import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data

from lekiwi_agent_ros.msg_types import BatteryState, CompressedImage, Joy
from lekiwi_agent_ros.sim_lekiwi import SimLekiwiNode, SimulatedBattery, SimulatedOperator


def test_operator_drives_first_half_of_each_period():
    operator = SimulatedOperator(drive_period_s=10.0)
    assert operator.driving(1.0) and operator.driving(14.9)
    assert not operator.driving(6.0) and not operator.driving(19.0)
    assert operator.axes(6.0) == [0.0, 0.0, 0.0]
    assert any(abs(a) > 0.05 for a in operator.axes(1.0))


def test_operator_with_zero_period_always_drives():
    assert SimulatedOperator(0.0).driving(12345.0)


def test_battery_drains_from_full_to_empty():
    battery = SimulatedBattery(12.6, 10.8, 100.0)
    assert battery.state(0.0) == pytest.approx((12.6, 1.0))
    voltage, fraction = battery.state(50.0)
    assert voltage == pytest.approx(11.7) and fraction == pytest.approx(0.5)


@pytest.fixture
def ros_context():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def test_sim_node_publishes_joystick_camera_and_battery(ros_context):
    sim = SimLekiwiNode(
        context=ros_context, namespace='/sim_test',
        parameter_overrides=[Parameter('drive_period_s', value=1.0),
                             Parameter('frame_width', value=160),
                             Parameter('frame_height', value=120)])
    probe = rclpy.create_node('probe', namespace='/sim_test', context=ros_context)
    joys, frames, batteries = [], [], []
    probe.create_subscription(Joy, 'joy', joys.append, qos_profile_sensor_data)
    probe.create_subscription(CompressedImage, sim.config.camera_topic, frames.append,
                              qos_profile_sensor_data)
    probe.create_subscription(BatteryState, 'battery_state', batteries.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(sim)
    executor.add_node(probe)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and not (len(joys) > 45 and frames and batteries):
        executor.spin_once(timeout_sec=0.05)
    executor.shutdown()
    sim.destroy_node()
    probe.destroy_node()

    moving = [j for j in joys if any(abs(a) > 0.05 for a in j.axes)]
    idle = [j for j in joys if all(a == 0.0 for a in j.axes)]
    assert moving and idle, 'the simulated operator both drives and pauses'
    assert bytes(frames[0].data[:2]) == b'\xff\xd8' and frames[0].format == 'jpeg'
    assert 10.8 <= batteries[0].voltage <= 12.6
