"""Differential transfer: fetch only the blobs a robot lacks, resume by range, verify, assemble.

Blobs land in a content-addressed cache (`<cache>/<sha256>`); a partial download stays as
`<sha256>.part` so an interrupted transfer resumes with an HTTP Range request. A release is
assembled beside the current one in a temporary directory with hard links to the cached or
already-installed files (no second copy on disk), then renamed into place in one step.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lekiwi_agent_ros.deploy.manifest import Manifest, file_sha256
from lekiwi_agent_ros.deploy.request_proof import RequestProofError

_CHUNK = 64 * 1024


class TransferError(Exception):
    """A blob could not be fetched or did not match its digest."""


class TransferCancelled(TransferError):
    """The transfer was cancelled."""


@dataclass(frozen=True, slots=True)
class TransferStats:
    """What one release's transfer moved."""

    blobs: int
    transferred_bytes: int
    full_bytes: int
    seconds: float


class RateLimiter:
    """Token bucket capping bytes per second; 0 means no cap."""

    def __init__(self, bytes_per_s: float, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._rate = bytes_per_s
        self._now = now
        self._sleep = sleep
        self._start = now()
        self._sent = 0

    def take(self, n: int) -> None:
        """Account for n bytes, sleeping as long as the cap requires."""
        if self._rate <= 0:
            return
        self._sent += n
        ahead = self._sent / self._rate - (self._now() - self._start)
        if ahead > 0:
            self._sleep(ahead)


class BlobFetcher:
    """Download blobs by digest from `<base_url>/<sha256>` with a bearer token."""

    def __init__(self, base_url: str, token: str, cache: Path, *, rate: RateLimiter,
                 timeout_s: float = 30.0, cancelled: Callable[[], bool] = lambda: False,
                 robot_id: str = '',
                 proof: Callable[[str, str], Mapping[str, str]] | None = None) -> None:
        self._base = base_url.rstrip('/')
        self._proof = proof  # a key-bound robot's per-request key proof (request_proof.py)
        self._robot_id = robot_id
        self._token = token
        self._cache = cache
        self._rate = rate
        self._timeout = timeout_s
        self._cancelled = cancelled
        cache.mkdir(parents=True, exist_ok=True)

    def cached(self, digest: str) -> Path | None:
        """Return the cached blob of a digest, if present."""
        path = self._cache / digest
        return path if path.exists() else None

    def fetch(self, digest: str, size: int) -> int:
        """Fetch one blob into the cache (resuming a partial one); return bytes transferred."""
        final = self._cache / digest
        if final.exists():
            return 0
        part = self._cache / f'{digest}.part'
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        moved = 0
        if have < size or size == 0:
            moved = self._download(digest, part, have)
        got = part.stat().st_size if part.exists() else 0
        if got < size:  # cut short: keep the part, the next attempt resumes from here
            raise TransferError(f'blob {digest[:12]}: interrupted at {got} of {size} bytes')
        if file_sha256(part) != digest:
            part.unlink()
            raise TransferError(f'blob {digest[:12]} does not match its digest')
        os.replace(part, final)
        return moved

    def _download(self, digest: str, part: Path, have: int) -> int:
        url = f'{self._base}/{digest}'
        request = urllib.request.Request(url)
        request.add_header('Authorization', f'Bearer {self._token}')
        if self._robot_id:
            request.add_header('X-Robot-Id', self._robot_id)
        if self._proof is not None:
            try:
                for name, value in self._proof('GET', url).items():
                    request.add_header(name, value)
            except RequestProofError as exc:
                raise TransferError(f'blob {digest[:12]}: {exc}') from None
        if have:
            request.add_header('Range', f'bytes={have}-')
        try:
            response = urllib.request.urlopen(request, timeout=self._timeout)  # noqa: S310
        except urllib.error.HTTPError as exc:
            raise TransferError(f'blob {digest[:12]}: HTTP {exc.code} {exc.reason}') from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransferError(f'blob {digest[:12]}: {exc}') from None
        moved = 0
        with response:
            # A server that ignores Range answers 200 with the whole blob: start over.
            mode = 'ab' if have and response.status == 206 else 'wb'
            with open(part, mode) as out:
                try:
                    while chunk := response.read(_CHUNK):
                        if self._cancelled():
                            raise TransferCancelled('cancelled during download')
                        out.write(chunk)
                        moved += len(chunk)
                        self._rate.take(len(chunk))
                except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                    raise TransferError(f'blob {digest[:12]}: {exc}') from None
        return moved


def installed_blobs(manifest: Manifest | None, release_dir: Path | None) -> dict[str, Path]:
    """Map the digests of an installed release to its files (the robot's reusable blobs)."""
    if manifest is None or release_dir is None:
        return {}
    found: dict[str, Path] = {}
    for entry in manifest.files():
        path = release_dir / entry.path
        try:
            if path.stat().st_size == entry.size:  # size only: rehashing every file costs more
                found.setdefault(entry.sha256, path)
        except OSError:
            continue
    return found


def assemble(manifest: Manifest, target: Path, sources: Mapping[str, Path],
             *, verify_reused: bool = False) -> None:
    """Build the release tree at `target` from blobs by digest (hard links), atomically."""
    tmp = target.with_name(target.name + '.assembling')
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for entry in manifest.entries:
        path = tmp / entry.path
        if entry.kind == 'dir':
            path.mkdir(exist_ok=True)
            continue
        if entry.kind == 'symlink':
            os.symlink(entry.target, path)
            continue
        source = sources.get(entry.sha256)
        if source is None:
            raise TransferError(f'{entry.path}: blob {entry.sha256[:12]} is missing')
        if verify_reused and file_sha256(source) != entry.sha256:
            raise TransferError(f'{entry.path}: blob {entry.sha256[:12]} is corrupt')
        _link_or_copy(source, path, entry.mode)
    for entry in reversed(manifest.entries):
        if entry.kind == 'dir':
            os.chmod(tmp / entry.path, entry.mode)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def _link_or_copy(source: Path, path: Path, mode: int) -> None:
    # A hard link shares the inode's mode: link only when the mode already matches.
    if (source.stat().st_mode & 0o7777) == mode:
        try:
            os.link(source, path)
            return
        except OSError:
            pass  # another filesystem: copy
    shutil.copyfile(source, path)
    os.chmod(path, mode)


def blob_digest_of_bytes(data: bytes) -> str:
    """Return the hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()
