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
    key_fingerprint,
    new_nonce,
    parse_public_key,
    signed_message,
    verify_signature,
)
from lekiwi_fleet_server.domain.admission_grants import UndeliveredGrants
from lekiwi_fleet_server.domain.key_binding import bound_fingerprint
from lekiwi_fleet_server.domain.protocol import AuthRequest, ErrorCode, ProtocolError

if TYPE_CHECKING:
    from lekiwi_fleet_server.gateway.server import RobotGateway
    from lekiwi_fleet_server.gateway.session import RobotSession

log = logging.getLogger(__name__)


def key_fingerprint_of(enrolment: Enrolment) -> str:
    """Return the key an admitted robot's enrolment is bound to (its `key:` tag)."""
    return bound_fingerprint(enrolment.robot.tags) or ''


class AdmissionDesk:
    """Admission requests of the gateway's connections, and the admins' decisions on them."""

    def __init__(self, gateway: RobotGateway) -> None:
        settings = gateway.settings
        self._gw = gateway
        self.book = AdmissionBook(settings.admission_max_pending, settings.admission_rate_per_s,
                                  settings.admission_rate_burst, time.monotonic())
        self._sessions: dict[str, RobotSession] = {}
        # Tokens accepted while their connection closed (the accept/disconnect race), kept for
        # the same key to fetch when it asks again (domain/admission_grants.py).
        self.undelivered: UndeliveredGrants[Enrolment] = UndeliveredGrants(
            settings.admission_timeout_s)

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
            if session.is_closed:
                return None
            grant = self.undelivered.take(robot_id, key_fingerprint(public_key),
                                          now=self._gw.now())
            if grant is not None:
                # Accepted while its earlier connection closed: this connection proved the
                # same key, so the token goes here (once `_request_admission` has made the
                # session wait for it, hence call_soon).
                log.info('robot %s asked again with its key: handing over its accepted token',
                         robot_id)
                asyncio.get_running_loop().call_soon(self._hand_over, robot_id, session, grant)
                return None
            raise ProtocolError(ErrorCode.ADMISSION_REFUSED,
                                f'robot {robot_id!r} is enrolled already: authenticate with '
                                'its token (a token accepted for it that never arrived is '
                                'gone: an admin must rotate its token, or revoke and re-enrol '
                                'it)', 'auth')
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
                     fingerprint: str | None = None
                     ) -> tuple[AdmissionRequest, Enrolment, bool]:
        """Enrol the robot and send its token to the waiting connection; raise if not pending.

        Return the request, the enrolment and whether the token reached the robot.
        """
        request = self.book.begin_decision(robot_id, fingerprint)
        key_tag = f'key:{request.fingerprint}'
        try:
            enrolment = await asyncio.get_running_loop().run_in_executor(
                None, lambda: enrol_robot(self._gw.store, robot_id, [*tags, key_tag],
                                          now=self._gw.now(), actor=actor))
        except BaseException:
            self.book.abandon_decision(robot_id)
            raise
        delivered = self._deliver(request, enrolment)
        if delivered:
            log.info('robot %s admitted by %s (key %s)', robot_id, actor, request.fingerprint)
        else:
            # Closed while the store enrolled it: enrolled all the same; its token waits for
            # the same key to ask again (the agent reconnects and does, within seconds).
            self.undelivered.put(robot_id, request.fingerprint, enrolment, now=self._gw.now())
            log.warning('robot %s accepted by %s, but its connection closed first; its token '
                        'waits %.0f s for key %s to ask again', robot_id, actor,
                        self._gw.settings.admission_timeout_s, request.fingerprint)
        return request, enrolment, delivered

    def _deliver(self, request: AdmissionRequest, enrolment: Enrolment) -> bool:
        """Send the token to the accepted request's connection, or to its same-key successor.

        The store write took a while: the connection may have closed (its request withdrawn)
        and the robot may have asked again on a new one. Only a connection that proved the
        accepted key gets the token; a request of another key is refused (the id is taken).
        """
        robot_id = request.robot_id
        self.book.abandon_decision(robot_id)
        current = self.book.get(robot_id)
        if current is not None:
            self.book.withdraw(robot_id, current.connection)
        waiting = self._sessions.get(robot_id)
        if waiting is not None and waiting in (request.connection,
                                               getattr(current, 'connection', None)):
            del self._sessions[robot_id]
        targets: list[RobotSession] = [request.connection]  # type: ignore[list-item]
        if current is not None and current is not request:
            successor: RobotSession = current.connection  # type: ignore[assignment]
            if current.fingerprint == request.fingerprint:
                targets.append(successor)
            else:
                successor.refuse(ProtocolError(
                    ErrorCode.ADMISSION_REFUSED, f'robot {robot_id!r} was admitted with '
                    f'another key ({request.fingerprint})', 'auth'))
        return any(session.admitted(enrolment) for session in targets)

    def _hand_over(self, robot_id: str, session: RobotSession, grant: Enrolment) -> None:
        # Gone again before it got it: keep it for the next try (a fresh TTL; the robot has
        # proved its key once more).
        if not session.admitted(grant):
            self.undelivered.put(robot_id, key_fingerprint_of(grant), grant, now=self._gw.now())

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
