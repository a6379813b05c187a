"""The gateway's admission desk: challenge, verify, hold the connection, enrol on acceptance.

A thin shell on the gateway's loop around `domain/admission.py`. The exchange, on one
connection (docs/robot-protocol.md, section 1a):

1. `auth` with `admission.public_key` and no token: the server answers `admission_challenge`
   with a nonce of this connection.
2. `auth` with the key and its signature of the nonce: a good signature makes a pending
   request (answered `admission_pending`); the connection stays open, without the auth
   timeout, up to `admission_timeout_s`.
3. An admin accepts (the robot is enrolled, the admin the event's actor, the key's
   fingerprint its tag `key:SHA256:...`): the token goes to this connection, and only to it,
   in `admission_accepted`; the connection is then authenticated as by a token. Rejected, the
   robot gets `admission_refused` and the connection closes.

Pending requests live in memory only: they are lost on a restart, when the robots' uplinks
reconnect and ask again (they keep their keys). A request ends with its connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lekiwi_fleet_server.api.admin import Enrolment, enrol_robot
from lekiwi_fleet_server.domain import protocol
from lekiwi_fleet_server.domain.admission import (
    AdmissionBook,
    AdmissionRefused,
    AdmissionRequest,
    new_nonce,
    parse_public_key,
    signed_message,
    verify_signature,
)
from lekiwi_fleet_server.domain.protocol import AuthRequest, ErrorCode, ProtocolError

if TYPE_CHECKING:
    from lekiwi_fleet_server.gateway.server import RobotGateway
    from lekiwi_fleet_server.gateway.session import RobotSession

log = logging.getLogger(__name__)


class AdmissionDesk:
    """Admission requests of the gateway's connections, and the admins' decisions on them."""

    def __init__(self, gateway: RobotGateway) -> None:
        settings = gateway.settings
        self._gw = gateway
        self.book = AdmissionBook(settings.admission_max_pending, settings.admission_rate_per_s,
                                  settings.admission_rate_burst, time.monotonic())
        self._sessions: dict[str, RobotSession] = {}

    def pending(self) -> list[AdmissionRequest]:
        """Return the waiting requests, oldest first."""
        return self.book.pending()

    # -- the robot's side ---------------------------------------------------------------------
    async def handle(self, session: RobotSession, request: AuthRequest) -> str | None:
        """Challenge or register an admission request; return the nonce sent, if one was."""
        assert request.admission is not None
        if not self._gw.settings.admission_enabled:
            raise ProtocolError(ErrorCode.ADMISSION_REFUSED,
                                'this server does not take admission requests', 'auth')
        try:
            public_key = parse_public_key(request.admission.public_key)
        except ValueError as exc:
            raise ProtocolError(ErrorCode.AUTH_FAILED, str(exc), 'auth') from None
        robot_id = request.robot_id
        if request.admission.signature is None or session.admission_nonce is None:
            nonce = new_nonce()
            session.send(protocol.admission_status_frame('admission_challenge', robot_id,
                                                         nonce=nonce))
            return nonce
        message = signed_message(robot_id, session.admission_nonce)
        if not verify_signature(public_key, message, request.admission.signature):
            raise ProtocolError(ErrorCode.AUTH_FAILED,
                                'the signature does not match the key and nonce', 'auth')
        if await self._gw.robot_known(robot_id):
            raise ProtocolError(ErrorCode.ADMISSION_REFUSED,
                                f'robot {robot_id!r} is enrolled already: authenticate with '
                                'its token', 'auth')
        if session.is_closed:
            return None
        try:
            pending = self.book.request(robot_id, public_key, session, now=self._gw.now(),
                                        address=session.peer_address())
        except AdmissionRefused as exc:
            raise ProtocolError(ErrorCode.ADMISSION_REFUSED, str(exc), 'auth') from None
        self._sessions[robot_id] = session
        log.info('admission requested by %s (key %s) from %s', robot_id, pending.fingerprint,
                 pending.address)
        session.send(protocol.admission_status_frame(
            'admission_pending', robot_id, fingerprint=pending.fingerprint,
            timeout_s=self._gw.settings.admission_timeout_s))
        return None

    def closed(self, robot_id: str, session: RobotSession) -> None:
        """Drop the request of a connection that closed (nothing of it is kept)."""
        if self.book.withdraw(robot_id, session) is not None:
            log.info('admission request of %s withdrawn: its connection closed', robot_id)
        if self._sessions.get(robot_id) is session:
            del self._sessions[robot_id]

    # -- the admin's side ---------------------------------------------------------------------
    async def accept(self, robot_id: str, *, actor: str, tags: Sequence[str] = (),
                     fingerprint: str | None = None) -> tuple[AdmissionRequest, Enrolment]:
        """Enrol the robot and send its token to the waiting connection; raise if not pending."""
        request = self.book.begin_decision(robot_id, fingerprint)
        key_tag = f'key:{request.fingerprint}'
        try:
            enrolment = await asyncio.get_running_loop().run_in_executor(
                None, lambda: enrol_robot(self._gw.store, robot_id, [*tags, key_tag],
                                          now=self._gw.now(), actor=actor))
        except BaseException:
            self.book.abandon_decision(robot_id)
            raise
        self.book.end_decision(robot_id)
        session = self._sessions.pop(robot_id, None)
        if session is None or not session.admitted(enrolment):
            # Closed while the store enrolled it: enrolled all the same, its token never sent.
            log.warning('robot %s accepted by %s, but its connection closed first; rotate its '
                        'token to hand it one', robot_id, actor)
        else:
            log.info('robot %s admitted by %s (key %s)', robot_id, actor, request.fingerprint)
        return request, enrolment

    def reject(self, robot_id: str, *, actor: str, fingerprint: str | None = None
               ) -> AdmissionRequest:
        """Refuse the waiting robot and close its connection; raise if not pending."""
        self.book.begin_decision(robot_id, fingerprint)
        request = self.book.end_decision(robot_id)
        assert request is not None
        session = self._sessions.pop(robot_id, None)
        if session is not None:
            session.refuse(ProtocolError(ErrorCode.ADMISSION_REFUSED,
                                         'admission rejected by an admin', 'auth'))
        log.info('admission of %s (key %s) rejected by %s', robot_id, request.fingerprint, actor)
        return request
