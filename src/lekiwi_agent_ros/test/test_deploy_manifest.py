"""Manifests: building, canonical JSON, hostile entries refused, the diff by digest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lekiwi_agent_ros.deploy.manifest import (
    ManifestError,
    build_manifest,
    diff,
    manifest_json,
    parse_manifest,
)


def make_tree(root: Path) -> None:
    (root / 'launch').mkdir(parents=True)
    (root / 'launch' / 'robot.launch.py').write_text('print(1)\n')
    (root / 'bin').mkdir()
    (root / 'bin' / 'app').write_text('#!/bin/sh\n')
    os.chmod(root / 'bin' / 'app', 0o755)
    (root / 'same-a').write_text('x' * 10)
    (root / 'same-b').write_text('x' * 10)
    os.symlink('bin/app', root / 'app-link')


def test_build_manifest_lists_files_dirs_and_links_and_round_trips(tmp_path: Path) -> None:
    make_tree(tmp_path)
    manifest = build_manifest(tmp_path, '1.0')
    kinds = {e.path: e.kind for e in manifest.entries}
    assert kinds == {'app-link': 'symlink', 'bin': 'dir', 'bin/app': 'file', 'launch': 'dir',
                     'launch/robot.launch.py': 'file', 'same-a': 'file', 'same-b': 'file'}
    app = next(e for e in manifest.entries if e.path == 'bin/app')
    assert app.mode == 0o755 and app.size == 10
    assert parse_manifest(manifest_json(manifest)) == manifest
    # two files with the same bytes are one blob
    assert len(manifest.digests()) == 3 and manifest.total_bytes() == 39


def test_diff_fetches_only_digests_the_robot_lacks(tmp_path: Path) -> None:
    make_tree(tmp_path / 'v1')
    make_tree(tmp_path / 'v2')
    (tmp_path / 'v2' / 'bin' / 'app').write_text('#!/bin/sh\necho new\n')
    old = build_manifest(tmp_path / 'v1', '1')
    new = build_manifest(tmp_path / 'v2', '2')
    plan = diff(new, old.digests())
    assert list(plan.fetch.values()) == [19]
    assert plan.fetch_bytes == 19 and plan.full_bytes == new.total_bytes()
    assert diff(new, []).fetch_bytes == sum(new.digests().values())


def entry_manifest(*entries: str) -> bytes:
    return ('{"format":1,"version":"1","entries":[' + ','.join(entries) + ']}').encode()


FILE = '"type":"file","sha256":"' + 'a' * 64 + '","size":1,"mode":420'


@pytest.mark.parametrize('body, why', [
    (entry_manifest('{"path":"/etc/passwd",' + FILE + '}'), 'absolute'),
    (entry_manifest('{"path":"../x",' + FILE + '}'), 'inside the release'),
    (entry_manifest('{"path":"a/../../x",' + FILE + '}'), 'inside the release'),
    (entry_manifest('{"path":"x","type":"symlink","target":"../../etc"}'), 'leaves'),
    (entry_manifest('{"path":"x","type":"symlink","target":"/etc"}'), 'leaves'),
    (entry_manifest('{"path":"d/x",' + FILE + '}'), 'parent directory'),
    (entry_manifest('{"path":"x",' + FILE + '}', '{"path":"x",' + FILE + '}'), 'duplicate'),
    (entry_manifest('{"path":"x","type":"file","sha256":"zz","size":1}'), 'sha256'),
    (entry_manifest('{"path":"x","type":"fifo"}'), 'unknown entry type'),
    (b'{"format":1,"version":"../1","entries":[]}', 'version'),
    (b'not json', 'not JSON'),
    (b'{"format":2,"version":"1","entries":[]}', 'format'),
])
def test_hostile_or_malformed_manifests_are_refused(body: bytes, why: str) -> None:
    with pytest.raises(ManifestError, match=why):
        parse_manifest(body)


def test_build_manifest_refuses_a_link_out_of_the_tree(tmp_path: Path) -> None:
    os.symlink('/etc/passwd', tmp_path / 'evil')
    with pytest.raises(ManifestError, match='leaves'):
        build_manifest(tmp_path, '1')
