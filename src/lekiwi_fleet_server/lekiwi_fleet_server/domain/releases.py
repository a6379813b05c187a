"""Releases: the rules an uploaded tarball must meet and the manifest built from it. Pure.

A release is a directory tree with a version. Its manifest lists every path (file: sha256, size,
mode; directory: mode; symlink: target) in the JSON format the robot's deploy executor reads
(lekiwi_agent_ros/deploy/manifest.py). The robot re-checks every path itself; the server refuses
a hostile tarball up front so nothing of it is stored.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

MANIFEST_FORMAT = 1
VERSION_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$')


class ReleaseRejected(ValueError):
    """An uploaded release breaks a rule; nothing of it was stored."""


@dataclass(frozen=True, slots=True)
class ReleaseLimits:
    """Upper bounds of one release."""

    max_total_bytes: int = 2 * 1024**3
    max_files: int = 100_000


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    path: str
    kind: str  # 'file', 'dir', 'symlink'
    sha256: str = ''
    size: int = 0
    mode: int = 0o644
    target: str = ''


def check_version(version: str) -> str:
    """Return the version or raise ReleaseRejected."""
    if not VERSION_PATTERN.match(version or ''):
        raise ReleaseRejected(f'bad version {version!r}: letters, digits and ._+- only, '
                              'at most 64 characters')
    return version


def check_member_path(name: str) -> str:
    """Return a tar member's path relative to the release root, or raise ReleaseRejected."""
    if name.startswith('/') or '\\' in name or '\x00' in name:
        raise ReleaseRejected(f'{name!r}: absolute or unsafe path')
    stripped = name[2:] if name.startswith('./') else name
    norm = posixpath.normpath(stripped) if stripped else '.'
    if norm.split('/')[0] == '..' or '/../' in f'/{stripped}/':
        raise ReleaseRejected(f'{name!r}: path leaves the release')
    return norm.rstrip('/')


def check_link(path: str, target: str) -> None:
    """Raise ReleaseRejected unless a symlink at `path` stays inside the release."""
    if not target or target.startswith('/'):
        raise ReleaseRejected(f'{path!r}: symlink to {target!r} leaves the release')
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved in ('.', '..') or resolved.startswith('../'):
        raise ReleaseRejected(f'{path!r}: symlink to {target!r} leaves the release')


def complete_dirs(entries: dict[str, ManifestEntry]) -> dict[str, ManifestEntry]:
    """Add the parent directories a tarball left implicit (mode 0755)."""
    out = dict(entries)
    for path in list(entries):
        parent = posixpath.dirname(path)
        while parent:
            existing = out.get(parent)
            if existing is not None and existing.kind != 'dir':
                raise ReleaseRejected(f'{path!r}: parent {parent!r} is not a directory')
            out.setdefault(parent, ManifestEntry(parent, 'dir', mode=0o755))
            parent = posixpath.dirname(parent)
    return out


def manifest_bytes(version: str, entries: dict[str, ManifestEntry]) -> bytes:
    """Return the canonical manifest JSON of a release."""
    items: list[dict[str, Any]] = []
    for path in sorted(entries):
        e = entries[path]
        if e.kind == 'file':
            items.append({'path': path, 'type': 'file', 'sha256': e.sha256, 'size': e.size,
                          'mode': e.mode})
        elif e.kind == 'dir':
            items.append({'path': path, 'type': 'dir', 'mode': e.mode})
        else:
            items.append({'path': path, 'type': 'symlink', 'target': e.target})
    body = {'format': MANIFEST_FORMAT, 'version': version, 'entries': items}
    return json.dumps(body, sort_keys=True, separators=(',', ':')).encode()
