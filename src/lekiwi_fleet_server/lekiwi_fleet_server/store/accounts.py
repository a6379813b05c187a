"""Operator accounts and browser sessions on SQLAlchemy Core (tables `accounts`, `web_sessions`).

Not part of the FleetStore: accounts are no robot state, so they need neither the single
writer nor the event log; this store opens its own small pool on the same database (the fleet
store's migrations create its tables). Thread-safe: every method runs one short transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from lekiwi_fleet_server.db.engine import make_engine, writer
from lekiwi_fleet_server.db.schema import accounts, web_sessions
from lekiwi_fleet_server.domain.roles import Role
from lekiwi_fleet_server.store.interface import StoreError
from lekiwi_fleet_server.store.sql_store import translate_errors


class AccountExists(StoreError):
    """An account with this name exists already."""


class UnknownAccount(StoreError):
    """No account has this name."""


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: Role
    created_at: float
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class WebSession:
    account: Account
    csrf_sha256: str
    created_at: float
    expires_at: float


def _account(row: sa.Row) -> Account:  # type: ignore[type-arg]
    return Account(name=row.name, role=row.role, created_at=row.created_at,
                   disabled=row.disabled)


class SqlAccountStore:
    """Accounts and sessions (see the module docstring)."""

    def __init__(self, engine: Engine, *, owns_engine: bool) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._owns_engine = owns_engine

    @classmethod
    def open(cls, url: str) -> SqlAccountStore:
        """Open a store with a pool of its own on `url`."""
        return cls(make_engine(url, pool_size=2), owns_engine=True)

    def create_account(self, name: str, role: Role, password_hash: str, *, now: float
                       ) -> Account:
        """Create an account; raise AccountExists when the name is taken."""
        with translate_errors('create_account'):
            try:
                with self._writer.begin() as conn:
                    conn.execute(sa.insert(accounts).values(
                        name=name, role=role, password_hash=password_hash, created_at=now,
                        disabled=False))
            except IntegrityError as exc:
                raise AccountExists(f'account {name!r} exists already') from exc
        return Account(name=name, role=role, created_at=now)

    def account_with_hash(self, name: str) -> tuple[Account, str] | None:
        """Return the account and its password hash, None when there is none."""
        with translate_errors('account'), self._engine.connect() as conn:
            row = conn.execute(sa.select(accounts).where(accounts.c.name == name)).first()
        return (_account(row), row.password_hash) if row else None

    def list_accounts(self) -> list[Account]:
        """Return every account by name."""
        with translate_errors('list_accounts'), self._engine.connect() as conn:
            rows = conn.execute(sa.select(accounts).order_by(accounts.c.name)).all()
        return [_account(r) for r in rows]

    def update_account(self, name: str, *, now: float, role: Role | None = None,
                       disabled: bool | None = None, password_hash: str | None = None
                       ) -> Account:
        """Change an account; a disabled account or a new password ends its sessions."""
        values: dict[str, object] = {}
        if role is not None:
            values['role'] = role
        if disabled is not None:
            values['disabled'] = disabled
        if password_hash is not None:
            values['password_hash'] = password_hash
        with translate_errors('update_account'), self._writer.begin() as conn:
            if values:
                changed = conn.execute(sa.update(accounts).where(accounts.c.name == name)
                                       .values(**values)).rowcount
            else:
                changed = conn.execute(sa.select(sa.func.count()).select_from(accounts)
                                       .where(accounts.c.name == name)).scalar_one()
            if not changed:
                raise UnknownAccount(f'no account {name!r}')
            if disabled or password_hash is not None or role is not None:
                conn.execute(sa.update(web_sessions)
                             .where(web_sessions.c.account == name,
                                    web_sessions.c.ended_at.is_(None))
                             .values(ended_at=now))
            row = conn.execute(sa.select(accounts).where(accounts.c.name == name)).one()
        return _account(row)

    def create_session(self, session_sha256: str, account: str, csrf_sha256: str, *,
                       now: float, expires_at: float) -> None:
        """Record a new session of an account."""
        with translate_errors('create_session'), self._writer.begin() as conn:
            conn.execute(sa.insert(web_sessions).values(
                session_sha256=session_sha256, account=account, csrf_sha256=csrf_sha256,
                created_at=now, expires_at=expires_at, ended_at=None))

    def live_session(self, session_sha256: str, *, now: float) -> WebSession | None:
        """Return the session unless it ended, expired or its account is disabled."""
        query = (sa.select(web_sessions.c.csrf_sha256, web_sessions.c.created_at,
                           web_sessions.c.expires_at, accounts.c.name, accounts.c.role,
                           accounts.c.created_at.label('account_created_at'),
                           accounts.c.disabled)
                 .join(accounts, accounts.c.name == web_sessions.c.account)
                 .where(web_sessions.c.session_sha256 == session_sha256,
                        web_sessions.c.ended_at.is_(None),
                        web_sessions.c.expires_at > now,
                        accounts.c.disabled.is_(False)))
        with translate_errors('live_session'), self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return WebSession(Account(row.name, row.role, row.account_created_at, row.disabled),
                          row.csrf_sha256, row.created_at, row.expires_at)

    def end_session(self, session_sha256: str, *, now: float) -> None:
        """End a session (logout); idempotent. Also forgets sessions long expired."""
        with translate_errors('end_session'), self._writer.begin() as conn:
            conn.execute(sa.update(web_sessions)
                         .where(web_sessions.c.session_sha256 == session_sha256,
                                web_sessions.c.ended_at.is_(None))
                         .values(ended_at=now))
            conn.execute(sa.delete(web_sessions).where(
                sa.func.coalesce(web_sessions.c.ended_at, web_sessions.c.expires_at)
                < now - 30 * 86400))

    def close(self) -> None:
        """Release the pool (when this store made it)."""
        if self._owns_engine:
            self._engine.dispose()
