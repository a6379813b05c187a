"""A robot's committed sequence numbers per boot: the proof that nothing it sent was lost."""

from __future__ import annotations

from fastapi import APIRouter

from lekiwi_fleet_server.api.deps import CurrentOperator, RobotId, Services
from lekiwi_fleet_server.api.errors import AUTHENTICATED, error_responses
from lekiwi_fleet_server.api.routes.robots import get_robot_or_404
from lekiwi_fleet_server.api.schemas import BootSequencesOut, RobotSequencesOut

router = APIRouter(prefix='/api/v1', tags=['robots'])


@router.get('/robots/{robot_id}/sequences', response_model=RobotSequencesOut,
            responses=error_responses(*AUTHENTICATED, 404, 422))
def robot_sequences(robot_id: RobotId, services: Services,
                    _operator: CurrentOperator) -> RobotSequencesOut:
    """Return, per boot (oldest first), the ranges of seqs committed and the gaps between."""
    get_robot_or_404(services, robot_id)
    boots = services.store.robot_sequences(robot_id)
    return RobotSequencesOut(robot_id=robot_id, boots=[
        BootSequencesOut(boot_id=boot_id, ranges=[list(r) for r in c.ranges], count=c.count,
                         gaps=[list(g) for g in c.gaps], first_seen_at=c.first_seen_at,
                         updated_at=c.updated_at)
        for boot_id, c in boots.items()])
