"""Deployment streams: append with optimistic concurrency, read back, and the read model row.

Each append writes the stream's events and, in the same transaction, the deployment's row in
`deployments` (status, robots, the stream version it reflects): the read model never disagrees
with the log, and is rebuildable by replaying the stream (`Rollout.replay`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from lekiwi_fleet_server.db.schema import deployment_events, deployments
from lekiwi_fleet_server.domain.events import DomainEvent, decode, encode
from lekiwi_fleet_server.domain.rollout import ACTIVE_STATUSES, Rollout
from lekiwi_fleet_server.store.interface import ConcurrencyConflict


class DeploymentStore:
    """The deployments' event log and read model on one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def append(self, rollout: Rollout, events: Sequence[DomainEvent], *, now: float) -> None:
        """Append events to the rollout's stream at its version, then apply them to it."""
        if not events:
            return
        version = rollout.version
        rows = []
        for offset, event in enumerate(events):
            type_name, schema_version, data = encode(event)
            rows.append({'deployment_id': rollout.deployment_id or _id_of(event),
                         'version': version + offset + 1, 'type': type_name,
                         'schema_version': schema_version, 'data': data, 'recorded_at': now})
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.insert(deployment_events), rows)
                for event in events:
                    rollout.apply(event)
                row = {'release_version': rollout.release_version, 'status': rollout.status,
                       'robots': sorted(rollout.robots), 'stream_version': rollout.version,
                       'updated_at': now}
                if version == 0:
                    conn.execute(sa.insert(deployments).values(
                        deployment_id=rollout.deployment_id, created_at=now, **row))
                else:
                    conn.execute(sa.update(deployments).where(
                        deployments.c.deployment_id == rollout.deployment_id).values(**row))
        except BaseException as exc:
            # The transaction rolled back: rebuild the fold from what is stored.
            self._reload(rollout, _id_of(events[0]))
            if isinstance(exc, IntegrityError):
                raise ConcurrencyConflict(
                    f'deployment {_id_of(events[0])} moved past version {version}: another '
                    'writer appended first') from exc
            raise

    def _reload(self, rollout: Rollout, deployment_id: str) -> None:
        fresh = self.load(deployment_id) or Rollout()
        for name in Rollout.__dataclass_fields__:
            setattr(rollout, name, getattr(fresh, name))

    def load(self, deployment_id: str) -> Rollout | None:
        """Replay a deployment's stream; None when there is none."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(deployment_events).where(
                deployment_events.c.deployment_id == deployment_id)
                .order_by(deployment_events.c.version)).all()
        if not rows:
            return None
        return Rollout.replay([decode(r.type, r.schema_version, r.data) for r in rows])

    def events(self, deployment_id: str) -> list[DomainEvent]:
        """Return a deployment's events in order."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(deployment_events).where(
                deployment_events.c.deployment_id == deployment_id)
                .order_by(deployment_events.c.version)).all()
        return [decode(r.type, r.schema_version, r.data) for r in rows]

    def list(self, limit: int = 100) -> list[dict[str, object]]:
        """Return the read model rows, newest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(deployments).order_by(
                deployments.c.created_at.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def count_by_status(self) -> dict[str, int]:
        """Return how many deployments the read model holds in each status."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(deployments.c.status, sa.func.count())
                                .group_by(deployments.c.status)).all()
        return {str(status): int(count) for status, count in rows}

    def active_ids(self) -> list[str]:
        """Return the ids of deployments still in progress (to resume after a restart)."""
        with self._engine.connect() as conn:
            return list(conn.execute(sa.select(deployments.c.deployment_id).where(
                deployments.c.status.in_(sorted(ACTIVE_STATUSES)))
                .order_by(deployments.c.created_at)).scalars())


def _id_of(event: DomainEvent) -> str:
    return str(getattr(event, 'deployment_id', ''))
