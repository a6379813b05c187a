"""Admission requests of robots without a token: list them, accept or reject one (admins)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from lekiwi_fleet_server.api.admin import InvalidInput
from lekiwi_fleet_server.api.deps import AdminOperator, CurrentOperator, RobotId, Services
from lekiwi_fleet_server.api.errors import error_responses
from lekiwi_fleet_server.domain.admission import AdmissionRefused
from lekiwi_fleet_server.store.interface import RobotAlreadyEnrolled

router = APIRouter(prefix='/api/v1/inventory/admissions', tags=['inventory'],
                   responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503))


class AdmissionDecision(BaseModel):
    fingerprint: str | None = Field(
        None, max_length=64,
        description="The key fingerprint the admin checked; refused (409) if the request's differs")
    tags: list[str] = Field(default_factory=list, max_length=32,
                            description='Tags of the robot once enrolled (accept only)')


@router.get('')
async def list_admissions(services: Services, _operator: CurrentOperator
                          ) -> list[dict[str, Any]]:
    """List the admission requests waiting for an admin, oldest first."""
    return [r.as_dict() for r in services.gateway.admissions.pending()]


def _not_pending(robot_id: str, exc: AdmissionRefused) -> HTTPException:
    pending = 'no admission request' not in str(exc)
    return HTTPException(status.HTTP_409_CONFLICT if pending else status.HTTP_404_NOT_FOUND,
                         str(exc))


@router.post('/{robot_id}/accept')
async def accept_admission(robot_id: RobotId, body: AdmissionDecision, services: Services,
                           admin: AdminOperator) -> dict[str, Any]:
    """Enrol the robot and send its token to its waiting connection (not to the caller)."""
    try:
        request, enrolment, delivered = await services.gateway.admissions.accept(
            robot_id, actor=admin.name, tags=body.tags, fingerprint=body.fingerprint)
    except AdmissionRefused as exc:
        raise _not_pending(robot_id, exc) from None
    except InvalidInput as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except RobotAlreadyEnrolled:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f'robot {robot_id!r} is enrolled already') from None
    if services.discovery is not None:
        await services.discovery.refresh_enrolled()
    return {**request.as_dict(), 'status': 'accepted', 'accepted_by': admin.name,
            'tags': list(enrolment.robot.tags),
            # False: its connection closed as it was accepted; the token waits for the same
            # key to ask again (admission_timeout_s), else re-enrol it (gateway/admissions.py).
            'delivered': delivered}


@router.post('/{robot_id}/reject')
async def reject_admission(robot_id: RobotId, body: AdmissionDecision, services: Services,
                           admin: AdminOperator) -> dict[str, Any]:
    """Refuse the robot's request and close its connection; nothing of it is kept."""
    try:
        request = services.gateway.admissions.reject(robot_id, actor=admin.name,
                                                     fingerprint=body.fingerprint)
    except AdmissionRefused as exc:
        raise _not_pending(robot_id, exc) from None
    return {**request.as_dict(), 'status': 'rejected', 'rejected_by': admin.name}
