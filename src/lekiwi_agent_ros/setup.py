import os
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = 'lekiwi_agent_ros'
here = Path(__file__).resolve().parent
repo = here.parent.parent


def repo_files(pattern: str) -> list[str]:
    """List files of the repository's shared launch/ and config/ folders, relative to here."""
    return sorted(os.path.relpath(p, here) for p in glob(str(repo / pattern)))


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', repo_files('launch/robot*.launch.py')),
        ('share/' + package_name + '/config', repo_files('config/agent*.yaml')),
    ],
    install_requires=['setuptools'],
    extras_require={'test': ['pytest', 'pytest-cov', 'pytest-timeout', 'hypothesis', 'jsonschema']},
    zip_safe=True,
    maintainer='LeKiwi Fleet',
    maintainer_email='fleet@lekiwi.dev',
    description='Robot-side LeKiwi Fleet agent nodes.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'agent = lekiwi_agent_ros.agent:main',
            'heartbeat = lekiwi_agent_ros.telemetry.heartbeat:main',
            'telemetry = lekiwi_agent_ros.telemetry.telemetry:main',
            'teleop_monitor = lekiwi_agent_ros.teleop.teleop_monitor:main',
            'fleet_uplink = lekiwi_agent_ros.uplink.fleet_uplink:main',
            'webrtc_streamer = lekiwi_agent_ros.webrtc.webrtc_streamer:main',
            'sim_lekiwi = lekiwi_agent_ros.sim_lekiwi:main',
            'discovery = lekiwi_agent_ros.discovery.discovery_node:main',
            'deploy_executor = lekiwi_agent_ros.deploy.deploy_executor:main',
            'lekiwi_zmq_bridge = lekiwi_agent_ros.zmq_bridge.lekiwi_zmq_bridge:main',
        ],
    },
)
