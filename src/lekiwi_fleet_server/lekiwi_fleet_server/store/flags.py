"""Flag streams: append with optimistic concurrency, replay, the read model, deliveries.

As with deployments (store/deployments.py), an append writes the stream's events and, in the
same transaction, the flag's row in `flags` (the fold at the new version): the read model never
disagrees with the log and `rebuild` makes it again from the log alone. Who made a change goes
into each event's `meta` (`{"actor": ...}`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from lekiwi_fleet_server.db.schema import flag_deliveries, flag_events, flags
from lekiwi_fleet_server.domain.events import DomainEvent, decode, encode
from lekiwi_fleet_server.domain.flag_events import (
    FLAG_EVENT_TYPES,
    FlagState,
    flag_to_dict,
    fold,
)
from lekiwi_fleet_server.store.interface import ConcurrencyConflict

_CHUNK = 500  # robots per statement of record_deliveries (bound parameters stay few)


@dataclass(frozen=True, slots=True)
class RecordedFlagEvent:
    """One stored event of a flag's stream, with who made it."""

    version: int
    event: DomainEvent
    actor: str
    recorded_at: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a robot was last sent, and what it reported applying."""

    robot_id: str
    boot_id: str
    revision: str
    flags: dict[str, Any]
    accepted: bool
    applied: list[Any]
    message: str
    delivered_at: float


class FlagStore:
    """The flags' event log, read model and deliveries on one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def append(self, state: FlagState | None, name: str, events: Sequence[DomainEvent], *,
               actor: str, now: float) -> FlagState:
        """Append events to the flag's stream after `state` (None: a new stream); return the fold.

        Raises ConcurrencyConflict when another writer appended first (nothing is stored),
        and FlagError when an event cannot follow the state.
        """
        version = state.version if state is not None else 0
        folded = state
        rows = []
        for offset, event in enumerate(events):
            folded = fold(folded, event, actor)  # FlagError before anything is written
            type_name, schema_version, data = encode(event)
            rows.append({'flag_name': name, 'version': version + offset + 1, 'type': type_name,
                         'schema_version': schema_version, 'data': data,
                         'meta': {'actor': actor}, 'recorded_at': now})
        if folded is None or not rows:
            raise ValueError('nothing to append')
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.insert(flag_events), rows)
                self._write_row(conn, folded, new=version == 0)
        except IntegrityError as exc:
            raise ConcurrencyConflict(
                f'flag {name} moved past version {version}: another writer appended first'
            ) from exc
        return folded

    @staticmethod
    def _write_row(conn: Connection, state: FlagState, *, new: bool) -> None:
        flag = state.flag
        plan = state.plan
        row = {'definition': flag_to_dict(flag), 'step': flag.step,
               'percentage': flag.percentage,
               'tripped': {str(k): v for k, v in flag.tripped.items()},
               'plan': None if plan is None else {'soak_s': plan.soak_s,
                                                  'min_applied': plan.min_applied,
                                                  'paused': plan.paused, 'reason': plan.reason},
               'deleted': state.deleted, 'stream_version': state.version,
               'created_by': state.created_by, 'updated_by': state.updated_by,
               'step_since': state.step_since, 'updated_at': state.updated_at}
        if new:
            conn.execute(sa.insert(flags).values(name=flag.name, **row))
        else:
            conn.execute(sa.update(flags).where(flags.c.name == flag.name).values(**row))

    def events(self, name: str) -> list[RecordedFlagEvent]:
        """Return a flag's events in order, with who made each."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(flag_events).where(flag_events.c.flag_name == name)
                                .order_by(flag_events.c.version)).all()
        return [RecordedFlagEvent(r.version, decode(r.type, r.schema_version, r.data,
                                                    event_types=FLAG_EVENT_TYPES),
                                  str((r.meta or {}).get('actor', '')), r.recorded_at)
                for r in rows]

    def load(self, name: str) -> FlagState | None:
        """Replay a flag's stream; None when there is none."""
        return FlagState.replay((e.event, e.actor) for e in self.events(name))

    def names(self) -> list[str]:
        """Return the names of every stream (deleted flags included)."""
        with self._engine.connect() as conn:
            return list(conn.execute(sa.select(flags.c.name).order_by(flags.c.name)).scalars())

    def versions(self) -> dict[str, int]:
        """Return each flag's stream version as the read model holds it (one query)."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(flags.c.name, flags.c.stream_version)).all()
        return {str(name): int(version) for name, version in rows}

    def load_all(self) -> dict[str, FlagState]:
        """Replay every stream (the engine's start)."""
        found = {}
        for name in self.names():
            state = self.load(name)
            if state is not None:
                found[name] = state
        return found

    def list(self, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Return the read model rows by name."""
        query = sa.select(flags).order_by(flags.c.name)
        if not include_deleted:
            query = query.where(flags.c.deleted.is_(False))
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def rebuild(self) -> int:
        """Rewrite the read model from the log alone; return the flags written."""
        states = self.load_all()
        with self._engine.begin() as conn:
            conn.execute(sa.delete(flags))
            for state in states.values():
                self._write_row(conn, state, new=True)
        return len(states)

    # -- deliveries -----------------------------------------------------------------------
    def record_delivery(self, delivery: Delivery) -> None:
        """Store what a robot was sent and reported (replacing its previous row)."""
        self.record_deliveries([delivery])

    def record_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Store what robots were sent and reported, replacing their rows, in one transaction.

        The flag engine hands over what a tick delivered at once: 10,000 robots connecting
        after a restart are 10,000 deliveries, which one transaction each would make seconds.
        The last delivery of a robot listed twice wins.
        """
        rows = {d.robot_id: {'robot_id': d.robot_id, 'boot_id': d.boot_id,
                             'revision': d.revision, 'flags': d.flags, 'accepted': d.accepted,
                             'applied': d.applied, 'message': d.message[:2000],
                             'delivered_at': d.delivered_at} for d in deliveries}
        if not rows:
            return
        ids = sorted(rows)
        with self._engine.begin() as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                conn.execute(sa.delete(flag_deliveries).where(
                    flag_deliveries.c.robot_id.in_(chunk)))
                conn.execute(sa.insert(flag_deliveries), [rows[r] for r in chunk])

    def deliveries(self) -> dict[str, Delivery]:
        """Return every robot's last delivery."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(flag_deliveries)).all()
        return {r.robot_id: Delivery(r.robot_id, r.boot_id, r.revision, dict(r.flags),
                                     bool(r.accepted), list(r.applied), r.message,
                                     r.delivered_at) for r in rows}

