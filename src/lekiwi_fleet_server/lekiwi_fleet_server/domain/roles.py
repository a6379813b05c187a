"""Operator roles and the one check REST, GraphQL and the dashboard stream share.

viewer reads; operator also drives the fleet (deploy, pause, roll back, send commands); admin
also enrols, revokes and admits robots and manages accounts. Each role holds the ones below it.
"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal['viewer', 'operator', 'admin']
ROLES: tuple[Role, ...] = get_args(Role)
_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}


def is_role(value: object) -> bool:
    """Tell whether a value names a role."""
    return isinstance(value, str) and value in _RANK


def role_allows(role: str, required: Role) -> bool:
    """Tell whether a holder of `role` may do what `required` may (unknown roles may not)."""
    rank = _RANK.get(role)
    return rank is not None and rank >= _RANK[required]
