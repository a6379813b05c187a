"""Password accounts and browser sessions: argon2id hashes, throttled logins, expiring sessions.

A login hands the browser two random secrets: the session id (in an HttpOnly cookie) and a
CSRF token (readable by the page, sent back in `X-CSRF-Token` on every state-changing request).
The server keeps only their SHA-256, so a leaked database opens no session. Runs in worker
threads (it hashes and queries): call it from sync routes or through run_in_threadpool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from lekiwi_fleet_server.api.admin import OPERATOR_NAME
from lekiwi_fleet_server.domain.login_throttle import LoginThrottle
from lekiwi_fleet_server.domain.roles import Role, is_role
from lekiwi_fleet_server.domain.tokens import generate_token, hash_token, token_matches
from lekiwi_fleet_server.store.accounts import Account, SqlAccountStore, WebSession

MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class LoginFailed(Exception):
    """Wrong name or password (which of the two is never said)."""


class LoginThrottled(Exception):
    """Too many failed logins for this account or address: wait `retry_after_s`."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f'too many failed logins: retry in {retry_after_s:.0f} s')
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Login:
    account: Account
    session_token: str  # goes into the HttpOnly cookie
    csrf_token: str  # the page sends it back in X-CSRF-Token
    expires_at: float


def check_new_account(name: str, role: str, password: str) -> None:
    """Raise ValueError unless name, role and password are acceptable."""
    if not OPERATOR_NAME.fullmatch(name):
        raise ValueError('account name must be 1-64 characters of [A-Za-z0-9._@-]')
    if not is_role(role):
        raise ValueError("role must be 'viewer', 'operator' or 'admin'")
    check_password(password)


def check_password(password: str) -> None:
    """Raise ValueError unless the password has 8 to 1024 characters."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f'password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters')


class AccountService:
    """Create accounts, log in and out, look sessions up (see the module docstring)."""

    def __init__(self, store: SqlAccountStore, *, session_ttl_s: float,
                 throttle: LoginThrottle, now: Callable[[], float],
                 hasher: PasswordHasher | None = None) -> None:
        self._store = store
        self._ttl = session_ttl_s
        self._throttle = throttle
        self._now = now
        self._hasher = hasher or PasswordHasher()
        # An unknown name still costs one verification, so timing does not tell names apart.
        self._dummy_hash = self._hasher.hash(generate_token())
        self._throttle_lock = threading.Lock()  # the throttle is plain Python, used by threads

    @property
    def store(self) -> SqlAccountStore:
        """The accounts' store."""
        return self._store

    def now(self) -> float:
        """Return the service's clock's time."""
        return self._now()

    def create_account(self, name: str, role: Role, password: str) -> Account:
        """Create an account (ValueError on bad input, AccountExists on a taken name)."""
        check_new_account(name, role, password)
        return self._store.create_account(name, role, self._hasher.hash(password),
                                          now=self._now())

    def set_password(self, name: str, password: str) -> Account:
        """Give an account a new password; its sessions end."""
        check_password(password)
        return self._store.update_account(name, now=self._now(),
                                          password_hash=self._hasher.hash(password))

    def login(self, name: str, password: str, address: str) -> Login:
        """Check a name and password; raise LoginThrottled or LoginFailed, or start a session."""
        with self._throttle_lock:
            wait = self._throttle.retry_after(name, address)
        if wait > 0:
            raise LoginThrottled(wait)
        found = self._store.account_with_hash(name) if len(password) <= MAX_PASSWORD else None
        if not self._verify(found[1] if found else self._dummy_hash, password) \
                or found is None or found[0].disabled:
            with self._throttle_lock:
                self._throttle.failed(name, address)
            raise LoginFailed('wrong account name or password')
        account, stored_hash = found
        with self._throttle_lock:
            self._throttle.succeeded(name)
        if self._hasher.check_needs_rehash(stored_hash):
            self._store.update_account(name, now=self._now(),
                                       password_hash=self._hasher.hash(password))
        session_token, csrf_token = generate_token(), generate_token()
        now = self._now()
        self._store.create_session(hash_token(session_token), account.name,
                                   hash_token(csrf_token), now=now, expires_at=now + self._ttl)
        return Login(account, session_token, csrf_token, now + self._ttl)

    def session(self, session_token: str) -> WebSession | None:
        """Return the live session of a cookie's value, None when it is unknown or over."""
        if not session_token or len(session_token) > 128:
            return None
        return self._store.live_session(hash_token(session_token), now=self._now())

    def logout(self, session_token: str) -> None:
        """End the session of a cookie's value (idempotent)."""
        if session_token and len(session_token) <= 128:
            self._store.end_session(hash_token(session_token), now=self._now())

    @staticmethod
    def csrf_matches(session: WebSession, csrf_token: str | None) -> bool:
        """Tell whether a request's CSRF token is its session's, in constant time."""
        return bool(csrf_token) and len(csrf_token or '') <= 128 \
            and token_matches(csrf_token or '', session.csrf_sha256)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
