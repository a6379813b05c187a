"""Packaging: pins agree, Docker files are sound, the server installs without ROS."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pins(path: Path) -> dict[str, str]:
    """Return name -> exact version of a requirements file's pinned lines."""
    result = {}
    for line in path.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            name, version = line.split('==')
            result[re.sub(r'\[.*\]', '', name).lower()] = version
    return result


@pytest.mark.parametrize('name', ['ros-kilted.txt', 'server.txt', 'agent.txt', 'dev.txt'])
def test_every_requirement_is_pinned_exactly(name):
    for line in (ROOT / 'requirements' / name).read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            assert re.fullmatch(r'[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+\-]*', line), line


def test_server_setup_pins_match_requirements():
    setup_py = (ROOT / 'src/lekiwi_fleet_server/setup.py').read_text()
    block = setup_py.split('install_requires = [', 1)[1].split(']\n', 1)[0]
    in_setup = {re.sub(r'\[.*\]', '', n).lower(): v
                for n, v in re.findall(r"'([^'=]+)==([^']+)'", block)}
    assert in_setup == pins(ROOT / 'requirements/server.txt')


def test_server_wheel_builds_without_ros(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('AMENT_', 'COLCON_', 'ROS_'))}
    # Build from a copy: setuptools writes build/ and egg-info next to the sources.
    source = shutil.copytree(ROOT / 'src/lekiwi_fleet_server', tmp_path / 'src',
                             ignore=shutil.ignore_patterns('build', '*.egg-info', 'test',
                                                           'node_modules'))
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', str(tmp_path), str(source)],
                   check=True, env=env, cwd=tmp_path)
    wheel = next(tmp_path.glob('lekiwi_fleet_server-*.whl'))
    names = zipfile.ZipFile(wheel).namelist()
    assert 'lekiwi_fleet_server/app.py' in names
    assert any(n.startswith('lekiwi_fleet_server/migrations/') for n in names)
    metadata = next(n for n in names if n.endswith('METADATA'))
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith('Requires-Dist:')]
    assert any('fastapi==' in r for r in requires) and not any('rclpy' in r for r in requires)


@pytest.mark.parametrize('dockerfile', ['agent.Dockerfile', 'server.Dockerfile'])
def test_dockerfile_copies_only_what_exists(dockerfile):
    text = (ROOT / 'docker' / dockerfile).read_text()
    assert text.splitlines()[[i for i, line in enumerate(text.splitlines())
                              if line.startswith('FROM ')][0]].split()[1] in (
        'ros:jazzy-ros-base', 'python:3.11-slim')
    for source in re.findall(r'^COPY\s+(\S+)\s+\S+', text, flags=re.M):
        assert (ROOT / source).exists(), f'{dockerfile} copies missing {source}'


def test_agent_image_launches_the_robot_launch_file():
    text = (ROOT / 'docker/agent.Dockerfile').read_text()
    assert 'ros2 launch lekiwi_agent_ros robot.launch.py' in text
    assert (ROOT / 'launch/robot.launch.py').exists()


@pytest.mark.skipif(shutil.which('docker-compose') is None,
                    reason="Debian's docker-compose is not installed: compose file not validated")
def test_compose_file_validates_and_demands_its_secrets():
    compose = ['docker-compose', '-f', str(ROOT / 'docker/compose.yaml'), 'config']
    secrets = {'POSTGRES_PASSWORD': 'pw-for-validation', 'LEKIWI_BOOTSTRAP_ADMIN_TOKEN': 'tok',
               'GRAFANA_ADMIN_PASSWORD': 'gf-for-validation'}
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    ok = subprocess.run(compose, env={**env, **secrets}, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert 'postgres:15' in ok.stdout and 'LEKIWI_DATABASE_URL' in ok.stdout
    missing = subprocess.run(compose, env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and 'POSTGRES_PASSWORD' in missing.stderr
