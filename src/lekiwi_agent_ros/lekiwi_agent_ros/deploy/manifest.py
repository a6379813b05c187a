"""Release manifests: what a release tree holds (path, sha256, size, mode, symlinks) and diffs.

A manifest is JSON: ``{"format": 1, "version": V, "entries": [...]}`` where an entry is a file
(``path``, ``sha256``, ``size``, ``mode``), a directory (``path``, ``mode``) or a symlink
(``path``, ``target``). The server builds the same format from an uploaded tree; the robot
re-validates every path here because a manifest is input, and a hostile one must not make the
robot write outside its release directory. (The rules are repeated rather than shared with the
server package: robots do not install the server.) Pure apart from `build_manifest`'s reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 1
_CHUNK = 1 << 20


class ManifestError(ValueError):
    """A manifest is malformed or names something outside its tree."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of a release: kind 'file', 'dir' or 'symlink'."""

    path: str
    kind: str
    sha256: str = ''
    size: int = 0
    mode: int = 0o644
    target: str = ''


@dataclass(frozen=True, slots=True)
class Manifest:
    """A release version and its entries, sorted by path."""

    version: str
    entries: tuple[Entry, ...]

    def files(self) -> list[Entry]:
        """Return the file entries."""
        return [e for e in self.entries if e.kind == 'file']

    def total_bytes(self) -> int:
        """Return the bytes of all files (a full copy of the release)."""
        return sum(e.size for e in self.files())

    def digests(self) -> dict[str, int]:
        """Return each distinct file digest with its size."""
        return {e.sha256: e.size for e in self.files()}


@dataclass(frozen=True, slots=True)
class Diff:
    """What a robot holding `have` digests must fetch to assemble a manifest."""

    fetch: dict[str, int]  # digest -> size, each once
    reuse: dict[str, int]
    full_bytes: int

    @property
    def fetch_bytes(self) -> int:
        return sum(self.fetch.values())


def check_path(path: str) -> str:
    """Return a release-relative path in normal form, or raise ManifestError."""
    if not isinstance(path, str) or not path or '\x00' in path or '\\' in path:
        raise ManifestError(f'bad path {path!r}')
    if path.startswith('/'):
        raise ManifestError(f'absolute path {path!r}')
    norm = posixpath.normpath(path)
    if norm != path or norm == '.' or norm.split('/')[0] == '..':
        raise ManifestError(f'path {path!r} is not a plain relative path inside the release')
    return norm


def check_link(path: str, target: str) -> None:
    """Raise ManifestError unless a symlink at `path` resolves inside the release."""
    if not target or target.startswith('/') or '\x00' in target:
        raise ManifestError(f'symlink {path!r} -> {target!r} leaves the release')
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == '..' or resolved.startswith('../') or resolved == '.':
        raise ManifestError(f'symlink {path!r} -> {target!r} leaves the release')


def _entry(raw: Mapping[str, Any]) -> Entry:
    path = check_path(raw.get('path', ''))
    kind = raw.get('type')
    if kind == 'file':
        digest, size, mode = raw.get('sha256'), raw.get('size'), raw.get('mode', 0o644)
        if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
            raise ManifestError(f'{path}: sha256 must be 64 hex digits')
        if type(size) is not int or size < 0 or type(mode) is not int:
            raise ManifestError(f'{path}: size and mode must be non-negative integers')
        return Entry(path, 'file', digest, size, mode & 0o7777)
    if kind == 'dir':
        mode = raw.get('mode', 0o755)
        if type(mode) is not int:
            raise ManifestError(f'{path}: mode must be an integer')
        return Entry(path, 'dir', mode=mode & 0o7777)
    if kind == 'symlink':
        target = raw.get('target', '')
        check_link(path, target if isinstance(target, str) else '')
        return Entry(path, 'symlink', target=target)
    raise ManifestError(f'{path}: unknown entry type {kind!r}')


def _is_hex(text: str) -> bool:
    return all(c in '0123456789abcdef' for c in text)


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate manifest JSON bytes."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f'manifest is not JSON: {exc}') from None
    if not isinstance(raw, dict) or raw.get('format') != FORMAT:
        raise ManifestError(f'manifest must be an object of format {FORMAT}')
    version, entries = raw.get('version'), raw.get('entries')
    if not isinstance(version, str) or not version or '/' in version or version.startswith('.'):
        raise ManifestError(f'bad release version {version!r}')
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ManifestError('manifest entries must be a list of objects')
    parsed = sorted((_entry(e) for e in entries), key=lambda e: e.path)
    seen: dict[str, Entry] = {}
    for entry in parsed:
        if entry.path in seen:
            raise ManifestError(f'duplicate path {entry.path!r}')
        parent = posixpath.dirname(entry.path)
        if parent and (parent not in seen or seen[parent].kind != 'dir'):
            raise ManifestError(f'{entry.path}: parent directory {parent!r} is not listed')
        seen[entry.path] = entry
    return Manifest(version, tuple(parsed))


def manifest_json(manifest: Manifest) -> bytes:
    """Return the canonical JSON bytes of a manifest."""
    entries: list[dict[str, Any]] = []
    for e in manifest.entries:
        if e.kind == 'file':
            entries.append({'path': e.path, 'type': 'file', 'sha256': e.sha256,
                            'size': e.size, 'mode': e.mode})
        elif e.kind == 'dir':
            entries.append({'path': e.path, 'type': 'dir', 'mode': e.mode})
        else:
            entries.append({'path': e.path, 'type': 'symlink', 'target': e.target})
    body = {'format': FORMAT, 'version': manifest.version, 'entries': entries}
    return json.dumps(body, sort_keys=True, separators=(',', ':')).encode()


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(root: Path, version: str) -> Manifest:
    """Return the manifest of a directory tree (files, directories, symlinks inside it)."""
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(full)
                check_link(rel, target)
                entries.append(Entry(rel, 'symlink', target=target))
            elif stat.S_ISDIR(info.st_mode):
                entries.append(Entry(rel, 'dir', mode=stat.S_IMODE(info.st_mode)))
            elif stat.S_ISREG(info.st_mode):
                entries.append(Entry(rel, 'file', file_sha256(full), info.st_size,
                                     stat.S_IMODE(info.st_mode)))
            else:
                raise ManifestError(f'{rel}: not a regular file, directory or symlink')
    return Manifest(version, tuple(sorted(entries, key=lambda e: e.path)))


def diff(manifest: Manifest, have: Iterable[str]) -> Diff:
    """Return which of the manifest's blobs must be fetched, given the digests a robot has."""
    held = set(have)
    wanted = manifest.digests()
    fetch = {d: s for d, s in wanted.items() if d not in held}
    reuse = {d: s for d, s in wanted.items() if d in held}
    return Diff(fetch, reuse, manifest.total_bytes())
