"""Admin operations shared by the REST API and the CLI: enrol, revoke, operators."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lekiwi_fleet_server.domain.tokens import generate_token, hash_token
from lekiwi_fleet_server.store.interface import (
    FleetStore,
    Operator,
    OperatorRole,
    RobotSummary,
)

ROBOT_ID = re.compile(r'[A-Za-z0-9._-]{1,64}')
TAG = re.compile(r'[A-Za-z0-9._:/-]{1,64}')
OPERATOR_NAME = re.compile(r'[A-Za-z0-9._@-]{1,64}')
BOOTSTRAP_ADMIN = 'bootstrap-admin'


@dataclass(frozen=True, slots=True)
class Enrolment:
    robot: RobotSummary
    token: str  # shown once; only its hash is stored


def validate_robot_id(robot_id: str) -> str:
    """Return the robot id, or raise ValueError unless it is 1-64 of [A-Za-z0-9._-]."""
    if not ROBOT_ID.fullmatch(robot_id):
        raise ValueError('robot id must be 1-64 characters of [A-Za-z0-9._-]')
    return robot_id


def enrol_robot(store: FleetStore, robot_id: str, tags: Sequence[str], *, now: float
                ) -> Enrolment:
    """Enrol a robot with a new token; raise ValueError on a bad id or tag."""
    validate_robot_id(robot_id)
    bad = [t for t in tags if not TAG.fullmatch(t)]
    if bad:
        raise ValueError(f'tags must be 1-64 characters of [A-Za-z0-9._:/-]: {bad}')
    token = generate_token()
    robot = store.enrol_robot(robot_id, hash_token(token), tuple(dict.fromkeys(tags)), now=now)
    return Enrolment(robot, token)


def create_operator(store: FleetStore, name: str, role: OperatorRole, *, now: float
                    ) -> tuple[Operator, str]:
    """Create an operator with a new token; return it and the token (shown once)."""
    if not OPERATOR_NAME.fullmatch(name):
        raise ValueError('operator name must be 1-64 characters of [A-Za-z0-9._@-]')
    if role not in ('admin', 'operator', 'viewer'):
        raise ValueError("role must be 'admin', 'operator' or 'viewer'")
    token = generate_token()
    return store.create_operator(name, role, hash_token(token), now=now), token


def ensure_bootstrap_admin(store: FleetStore, token: str, *, now: float) -> bool:
    """Make sure an admin with this token exists; return True if it had to be created."""
    existing = store.operator_by_token(hash_token(token))
    if existing is not None:
        if existing.role != 'admin' or existing.revoked:
            raise ValueError('the bootstrap admin token belongs to a viewer or revoked operator')
        return False
    store.create_operator(f'{BOOTSTRAP_ADMIN}-{hash_token(token)[:8]}', 'admin',
                          hash_token(token), now=now)
    return True
