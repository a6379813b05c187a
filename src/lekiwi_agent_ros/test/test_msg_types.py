"""msg_types: the lean imports keep numpy, yaml and lark out, yet everything still works."""

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from lekiwi_agent_ros import msg_types

PROBE = textwrap.dedent(
    """
    import sys
    from lekiwi_agent_ros import msg_types
    deferred = msg_types.install_lean_imports()
    expected = ['numpy', 'yaml', 'importlib.metadata', 'rosidl_generator_py.generate_py',
                'sensor_msgs.msg', 'std_msgs.msg']
    assert deferred == expected, deferred
    import rclpy
    from rclpy.node import Node
    from lekiwi_agent_ros.msg_types import GetAgentStatus, Joy, RobotHeartbeat

    rclpy.init()
    node = Node('lean_probe')
    node.create_service(GetAgentStatus, 'lean_probe/status', lambda req, res: res)
    node.create_subscription(Joy, 'lean_probe/joy', lambda msg: None, 1)
    pub = node.create_publisher(RobotHeartbeat, 'lean_probe/hb', 1)
    pub.publish(RobotHeartbeat(robot_id='x'))
    rclpy.spin_once(node, timeout_sec=0.05)
    # rclpy's logger inspects every module in sys.modules: that must not load them
    node.get_logger().info('lean probe up')
    import inspect
    inspect.getmodule(compile('x = 1', '/no/such/file.py', 'exec'), '/no/such/file.py')
    import websockets.asyncio.client  # imports importlib.metadata, uses it only in a checkout
    heavy = [m for m in ('numpy._core', 'lark', 'yaml.parser', 'em',
                         'sensor_msgs.msg._camera_info', 'zipfile') if m in sys.modules]
    print('HEAVY', heavy)
    # Deferred modules still work, fully, when something really uses them.
    from service_msgs.msg import ServiceEventInfo
    assert list(ServiceEventInfo().client_gid) == [0] * 16
    from sensor_msgs.msg import CameraInfo
    assert len(CameraInfo().k) == 9
    import numpy, yaml, rosidl_generator_py
    assert numpy.zeros(3).sum() == 0 and yaml.safe_load('a: 1') == {'a': 1}
    import importlib.metadata
    assert importlib.metadata.version('websockets') == websockets.version.version
    from importlib.metadata import version
    assert version('pyzmq')
    assert callable(rosidl_generator_py.generate_py)
    node.destroy_node()
    rclpy.shutdown()
    print('OK')
    """
)


def test_lean_imports_keep_heavy_modules_out_of_a_node_process() -> None:
    env = dict(os.environ, ROS_DOMAIN_ID=os.environ.get('ROS_DOMAIN_ID', '41'))
    result = subprocess.run(
        [sys.executable, '-c', PROBE], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert 'HEAVY []' in result.stdout, result.stdout
    assert result.stdout.rstrip().endswith('OK')


def test_sensor_classes_are_the_generated_ones() -> None:
    from sensor_msgs.msg import BatteryState, CompressedImage, Image, Joy

    assert msg_types.Joy is Joy
    assert msg_types.Image is Image
    assert msg_types.CompressedImage is CompressedImage
    assert msg_types.BatteryState is BatteryState
    with pytest.raises(AttributeError):
        msg_types.NoSuchMessage  # noqa: B018


def test_module_names_follow_rosidl() -> None:
    assert msg_types._module_name('Joy') == '_joy'
    assert msg_types._module_name('BatteryState') == '_battery_state'
    assert msg_types._module_name('MultiDOFJointState') == '_multi_dof_joint_state'


def test_lean_package_falls_back_to_the_real_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / 'leanpkg_probe' / 'msg'
    package.mkdir(parents=True)
    (tmp_path / 'leanpkg_probe' / '__init__.py').write_text('')
    (package / '__init__.py').write_text(
        'from leanpkg_probe.msg._fast_thing import FastThing\nOddName = 42\n'
    )
    (package / '_fast_thing.py').write_text('class FastThing:\n    pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = msg_types._lean_package('leanpkg_probe.msg')
        assert msg_types._lean_package('leanpkg_probe.msg') is module
        assert 'OddName' not in module.__dict__  # __init__ not run yet
        assert module.FastThing.__name__ == 'FastThing'
        assert 'OddName' not in module.__dict__
        assert module.OddName == 42  # not in its own module: the real __init__ ran
        with pytest.raises(AttributeError):
            module.Missing  # noqa: B018
        with pytest.raises(AttributeError):
            module.__wrapped__  # noqa: B018
    finally:
        for name in [n for n in sys.modules if n.startswith('leanpkg_probe')]:
            del sys.modules[name]


def test_lean_package_of_a_plain_module_imports_it_normally() -> None:
    assert msg_types._lean_package('json') is sys.modules['json']
    assert msg_types._lean_package('colorsys').__name__ == 'colorsys'


def test_a_deferred_module_loads_on_first_use_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / 'deferprobe_mod.py').write_text('LOADED = True\nVALUE = 42\n')
    (tmp_path / 'deferprobe_pkg').mkdir()
    (tmp_path / 'deferprobe_pkg' / '__init__.py').write_text('READY = 1\n')
    (tmp_path / 'deferprobe_pkg' / 'sub.py').write_text('X = 7\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert msg_types.defer_module('deferprobe_mod')
        assert not msg_types.defer_module('deferprobe_mod')  # already there
        assert not msg_types.defer_module('no_such_module_anywhere')
        import deferprobe_mod  # the import statement itself does not load it

        assert 'LOADED' not in deferprobe_mod.__dict__
        threads = [threading.Thread(target=lambda: deferprobe_mod.VALUE) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert deferprobe_mod.VALUE == 42
        assert sys.modules['deferprobe_mod'] is not deferprobe_mod  # the real one took over
        assert sys.modules['deferprobe_mod'].LOADED
        # a submodule import through a deferred package loads the package first
        assert msg_types.defer_module('deferprobe_pkg')
        from deferprobe_pkg import sub

        assert sub.X == 7 and sys.modules['deferprobe_pkg'].READY == 1
    finally:
        for name in [n for n in sys.modules if n.startswith('deferprobe_')]:
            del sys.modules[name]


def test_install_lean_imports_leaves_imported_modules_alone() -> None:
    import numpy  # noqa: F401  (imported by the tests already)

    assert 'numpy' not in msg_types.install_lean_imports()
    assert type(sys.modules['numpy']).__name__ == 'module'
