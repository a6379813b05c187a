import lekiwi_agent_ros


def test_version_is_semver():
    assert lekiwi_agent_ros.__version__.count('.') == 2


def test_package_xml_declares_every_module_the_package_imports() -> None:
    import ast
    import sys
    import xml.etree.ElementTree as ElementTree
    from pathlib import Path

    root = Path(lekiwi_agent_ros.__file__).resolve().parent
    source = Path(__file__).resolve().parents[1]
    declared = {e.text for e in ElementTree.parse(source / 'package.xml').getroot()
                if e.tag in ('depend', 'exec_depend')}
    # Python module -> rosdep key (aioice comes with aiortc).
    keys = {'rclpy': 'rclpy', 'websockets': 'python3-websockets', 'aiortc': 'python3-aiortc',
            'aioice': 'python3-aiortc', 'av': 'python3-av', 'zmq': 'python3-zmq',
            'numpy': 'python3-numpy', 'action_msgs': 'action_msgs',
            'rcl_interfaces': 'rcl_interfaces', 'sensor_msgs': 'sensor_msgs',
            'std_msgs': 'std_msgs', 'builtin_interfaces': 'builtin_interfaces',
            'lekiwi_fleet_msgs': 'lekiwi_fleet_msgs', 'diagnostic_msgs': 'diagnostic_msgs',
            'zeroconf': 'python3-zeroconf', 'ifaddr': 'python3-ifaddr'}
    imported: set[str] = set()
    for path in root.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(a.name.split('.')[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split('.')[0])
    third_party = imported - set(sys.stdlib_module_names) - {'lekiwi_agent_ros'}
    keys['cryptography'] = 'python3-cryptography'  # the admission key (uplink/admission_key)
    keys['httpx'] = 'python3-httpx'  # the uplink's polling fallback (uplink/http_transport)
    assert third_party <= set(keys), f'no rosdep key known for {third_party - set(keys)}'
    missing = {keys[m] for m in third_party} - declared
    assert not missing, f'package.xml lacks {missing}'
