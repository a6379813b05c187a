"""The release store: blobs by digest on disk, manifests and release metadata in the database.

An upload is checked whole before anything is kept: members are streamed into a staging
directory (hashing as they go), the tarball's rules are checked (domain/releases.py), and only
then are the blobs moved into the blob store (`<data_dir>/blobs/<aa>/<sha256>`, each once) and
the release row inserted. A refused tarball leaves no blob and no row behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from lekiwi_fleet_server.db.schema import deployments, releases
from lekiwi_fleet_server.domain.releases import (
    ManifestEntry,
    ReleaseLimits,
    ReleaseRejected,
    check_link,
    check_member_path,
    check_version,
    complete_dirs,
    manifest_bytes,
)

_CHUNK = 1 << 20


class ReleaseExists(Exception):
    """A release of that version is already stored."""


class ReleaseInUse(Exception):
    """A release an active deployment uses cannot be deleted."""


class UnknownRelease(Exception):
    """No release of that version."""


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    version: str
    manifest_sha256: str
    files: int
    total_bytes: int
    created_by: str
    created_at: float


class BlobStore:
    """Content-addressed files under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / 'staging').mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Return where the blob of a digest lives (whether or not it exists)."""
        if len(digest) != 64 or any(c not in '0123456789abcdef' for c in digest):
            raise KeyError(digest)
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        try:
            return self.path(digest).exists()
        except KeyError:
            return False

    def staging_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.root / 'staging'))

    def adopt(self, staged: Path, digest: str) -> None:
        """Move a staged, verified file into the store (a no-op when the blob exists)."""
        final = self.path(digest)
        if final.exists():
            return
        final.parent.mkdir(exist_ok=True)
        os.replace(staged, final)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, out: Path,
                 budget: int) -> tuple[str, int]:
    source = tar.extractfile(member)
    assert source is not None
    digest = hashlib.sha256()
    size = 0
    with source, open(out, 'wb') as f:
        while chunk := source.read(_CHUNK):
            size += len(chunk)
            if size > budget:
                raise ReleaseRejected('release exceeds the size limit')
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest(), size


def stage_tarball(fileobj: IO[bytes], version: str, blobs: BlobStore, limits: ReleaseLimits
                  ) -> tuple[bytes, dict[str, Path], int, int, Path]:
    """Check and stage a release tarball; return (manifest, staged blobs, files, bytes, dir)."""
    check_version(version)
    staging = blobs.staging_dir()
    entries: dict[str, ManifestEntry] = {}
    staged: dict[str, Path] = {}
    total = 0
    try:
        try:
            tar = tarfile.open(fileobj=fileobj, mode='r|*')
        except tarfile.TarError as exc:
            raise ReleaseRejected(f'not a tar archive: {exc}') from None
        with tar:
            try:
                for member in tar:
                    path = check_member_path(member.name)
                    if path == '.':
                        continue
                    if path in entries:
                        raise ReleaseRejected(f'{path!r} appears twice')
                    if len(entries) >= limits.max_files:
                        raise ReleaseRejected(f'more than {limits.max_files} entries')
                    mode = member.mode & 0o7777
                    if member.isdir():
                        entries[path] = ManifestEntry(path, 'dir', mode=mode)
                    elif member.issym():
                        check_link(path, member.linkname)
                        entries[path] = ManifestEntry(path, 'symlink', target=member.linkname)
                    elif member.isreg():
                        out = staging / f'{len(entries)}'
                        digest, size = _read_member(tar, member, out,
                                                    limits.max_total_bytes - total)
                        total += size
                        if digest in staged:
                            out.unlink()
                        else:
                            staged[digest] = out
                        entries[path] = ManifestEntry(path, 'file', digest, size, mode)
                    else:
                        kind = 'hard link' if member.islnk() else 'device or special file'
                        raise ReleaseRejected(f'{path!r}: {kind} not allowed in a release')
            except tarfile.TarError as exc:
                raise ReleaseRejected(f'broken tar archive: {exc}') from None
        if not any(e.kind == 'file' for e in entries.values()):
            raise ReleaseRejected('the release holds no files')
        entries = complete_dirs(entries)
        files = sum(e.kind == 'file' for e in entries.values())
        return manifest_bytes(version, entries), staged, files, total, staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class ReleaseStore:
    """Releases in the database, their files in a BlobStore."""

    def __init__(self, engine: Engine, blobs: BlobStore,
                 limits: ReleaseLimits | None = None) -> None:
        self._engine = engine
        self.engine = engine  # the deployment store shares it
        self.blobs = blobs
        self.limits = limits or ReleaseLimits()

    def push(self, fileobj: IO[bytes], version: str, *, by: str, now: float) -> ReleaseInfo:
        """Store a release tarball; raise ReleaseRejected or ReleaseExists, storing nothing."""
        if self.get(version) is not None:
            raise ReleaseExists(f'release {version} already exists')
        manifest, staged, files, total, staging = stage_tarball(
            fileobj, version, self.blobs, self.limits)
        try:
            for digest, path in staged.items():
                self.blobs.adopt(path, digest)
            info = ReleaseInfo(version, hashlib.sha256(manifest).hexdigest(), files, total, by,
                               now)
            with self._engine.begin() as conn:
                conn.execute(sa.insert(releases).values(
                    version=version, manifest_sha256=info.manifest_sha256, manifest=manifest,
                    files=files, total_bytes=total, created_by=by, created_at=now))
            return info
        except IntegrityError:
            raise ReleaseExists(f'release {version} already exists') from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _info(row: Any) -> ReleaseInfo:
        return ReleaseInfo(row.version, row.manifest_sha256, row.files, row.total_bytes,
                           row.created_by, row.created_at)

    def list(self) -> list[ReleaseInfo]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(releases).order_by(releases.c.created_at)).all()
        return [self._info(r) for r in rows]

    def get(self, version: str) -> ReleaseInfo | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(releases).where(releases.c.version == version)).first()
        return self._info(row) if row is not None else None

    def manifest(self, version: str) -> bytes:
        """Return a release's manifest bytes; raise UnknownRelease."""
        with self._engine.connect() as conn:
            data = conn.execute(sa.select(releases.c.manifest)
                                .where(releases.c.version == version)).scalar()
        if data is None:
            raise UnknownRelease(f'no release {version}')
        return bytes(data)

    def delete(self, version: str, active_statuses: frozenset[str]) -> None:
        """Delete a release's row (blobs stay: other releases may share them)."""
        with self._engine.begin() as conn:
            in_use = conn.execute(sa.select(deployments.c.deployment_id).where(
                deployments.c.release_version == version,
                deployments.c.status.in_(sorted(active_statuses))).limit(1)).first()
            if in_use is not None:
                raise ReleaseInUse(f'release {version} is used by deployment {in_use[0]}')
            deleted = conn.execute(sa.delete(releases).where(releases.c.version == version))
            if deleted.rowcount == 0:
                raise UnknownRelease(f'no release {version}')
