"""Releases: upload (tarball), list, show, delete; manifests and blobs for robots.

Robots fetch `GET /api/v1/releases/{version}/manifest` and `GET /api/v1/blobs/{sha256}` with
their own token (`Authorization: Bearer <robot token>`, `X-Robot-Id: <robot id>`) and, for a
robot bound to its admission key, the key's proof (`X-Robot-Key-Proof`, api/robot_auth.py); blob
responses honour Range requests, so an interrupted download resumes.
"""

from __future__ import annotations

import tempfile
from typing import Annotated

from fastapi import (
    APIRouter,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server.api.deps import CurrentOperator, OperatorRole, Services
from lekiwi_fleet_server.api.errors import error_responses
from lekiwi_fleet_server.api.robot_auth import CurrentRobot
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.domain.releases import VERSION_PATTERN, ReleaseRejected
from lekiwi_fleet_server.domain.rollout import ACTIVE_STATUSES
from lekiwi_fleet_server.store.releases import (
    ReleaseExists,
    ReleaseInfo,
    ReleaseInUse,
    ReleaseStore,
    UnknownRelease,
)

# Every error status the routes below can answer, each with the one error body.
# Path parameters as their patterns say, so anything else is a 422 before the store sees it.
Version = Annotated[str, Path(pattern=VERSION_PATTERN.pattern)]

router = APIRouter(prefix='/api/v1', tags=['releases'],
                   responses=error_responses(400, 401, 403, 404, 409, 413, 416, 422, 503))


class ReleaseOut(BaseModel):
    version: str
    manifest_sha256: str
    files: int
    total_bytes: int
    created_by: str
    created_at: float


def _out(info: ReleaseInfo) -> ReleaseOut:
    return ReleaseOut(version=info.version, manifest_sha256=info.manifest_sha256,
                      files=info.files, total_bytes=info.total_bytes,
                      created_by=info.created_by, created_at=info.created_at)


def _releases(services: FleetServices) -> ReleaseStore:
    if services.releases is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, 'no release store')
    return services.releases


@router.post('/releases', response_model=ReleaseOut, status_code=201)
async def upload_release(request: Request, services: Services, operator: OperatorRole,
                         version: Annotated[str, Query(pattern=VERSION_PATTERN.pattern)]
                         ) -> ReleaseOut:
    """Store a release from a tarball body (tar, tar.gz, tar.bz2 or tar.xz)."""
    store = _releases(services)
    limit = store.limits.max_total_bytes * 2 + 1024 * 1024  # compressed or not, plus headers
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as body:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, 'upload too large')
            body.write(chunk)
        body.seek(0)
        try:
            info = await run_in_threadpool(store.push, body, version, by=operator.name,
                                           now=services.now())
        except ReleaseRejected as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        except ReleaseExists as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return _out(info)


@router.get('/releases', response_model=list[ReleaseOut])
def list_releases(services: Services, _who: CurrentOperator) -> list[ReleaseOut]:
    """List the stored releases, oldest first."""
    return [_out(i) for i in _releases(services).list()]


@router.get('/releases/{version}', response_model=ReleaseOut)
def show_release(version: Version, services: Services, _who: CurrentOperator) -> ReleaseOut:
    """Show one release."""
    info = _releases(services).get(version)
    if info is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no release {version}')
    return _out(info)


@router.delete('/releases/{version}', status_code=204)
def delete_release(version: Version, services: Services, _who: OperatorRole) -> Response:
    """Delete a release (refused with 409 while an active deployment uses it)."""
    try:
        _releases(services).delete(version, ACTIVE_STATUSES)
    except UnknownRelease as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ReleaseInUse as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return Response(status_code=204)


@router.get('/releases/{version}/manifest')
def release_manifest(version: Version, services: Services, _robot: CurrentRobot) -> Response:
    """Return a release's manifest JSON (robots)."""
    try:
        data = _releases(services).manifest(version)
    except UnknownRelease as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return Response(data, media_type='application/json')


@router.get('/blobs/{digest}')
def blob(digest: Annotated[str, Path(pattern=r'^[0-9a-f]{64}$')], services: Services,
         _robot: CurrentRobot) -> FileResponse:
    """Return one blob by its sha256 (robots; Range requests resume a download)."""
    store = _releases(services)
    try:
        path = store.blobs.path(digest)
    except KeyError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, 'not a sha256') from None
    if not path.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no blob {digest}')
    return FileResponse(path, media_type='application/octet-stream')
