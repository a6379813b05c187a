"""Admission on the robot: the key pair kept next to the outbox, and the session's exchange."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from protocol_schema import validate_robot_frame
from test_uplink_session import AUTH_OK, Rig

from lekiwi_agent_ros.uplink.admission_key import AdmissionKey, write_private
from lekiwi_agent_ros.uplink.uplink_session import admission_message


def status(msg: str, **fields: object) -> str:
    return json.dumps({'op': 'status', 'level': 'info', 'id': 'admission', 'msg': msg,
                       'robot_id': 'kiwi-001', **fields})


def test_the_key_pair_is_made_once_kept_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / 'lekiwi' / 'admission_key.pem'
    key = AdmissionKey.load_or_create(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = AdmissionKey.load_or_create(str(path))
    assert again.public_key == key.public_key
    raw = base64.b64decode(key.public_key)
    Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(key.sign(b'x')), b'x')
    assert AdmissionKey.load_or_create(str(tmp_path / 'other.pem')).public_key != key.public_key


def test_a_token_file_is_written_0600(tmp_path: Path) -> None:
    path = tmp_path / 'token'
    write_private(str(path), b'lkw_abc\n')
    assert path.read_bytes() == b'lkw_abc\n' and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == ['token']  # no temporary file left


def test_the_session_asks_admission_signs_the_nonce_and_hands_the_token_over(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, auth_timeout_s=3.0)
    key = AdmissionKey.load_or_create(str(tmp_path / 'key.pem'))
    ask = validate_robot_frame(rig.session.connection_opened('', key))
    assert ask['admission'] == {'public_key': key.public_key} and 'token' not in ask
    reaction = rig.session.receive(status('admission_challenge', nonce='n' * 43))
    (signed,) = [validate_robot_frame(f) for f in reaction.frames]
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))
    public.verify(base64.b64decode(signed['admission']['signature']),
                  admission_message('kiwi-001', 'n' * 43))
    assert rig.session.receive(status('admission_pending', fingerprint='SHA256:f',
                                      timeout_s=600)).close_reason is None
    assert rig.session.admission_pending
    rig.clock.t += 60  # far past auth_timeout_s: an admin decides, the server keeps it open
    assert rig.session.expired() is None and rig.session.next_deadline() is None
    accepted = rig.session.receive(status('admission_accepted', token='lkw_granted'))
    assert accepted.token == 'lkw_granted' and not rig.session.admission_pending
    assert rig.session.receive(AUTH_OK).authenticated and rig.session.ready
    assert any('accepted' in text for level, text in rig.logs if level == logging.INFO)


def test_a_token_wins_over_the_key_and_a_refusal_closes(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    key = AdmissionKey.load_or_create(str(tmp_path / 'key.pem'))
    assert json.loads(rig.session.connection_opened('lkw_have', key))['token'] == 'lkw_have'
    # admission frames for a connection that did not ask are ignored, not obeyed
    assert rig.session.receive(status('admission_accepted', token='lkw_x')).token is None
    rig.session.connection_opened('', key)
    refused = rig.session.receive(json.dumps({'op': 'status', 'level': 'error', 'id': 'auth',
                                              'code': 'admission_refused', 'msg': 'rejected'}))
    assert refused.close_reason == 'refused: admission_refused'


@pytest.mark.parametrize('frame', [status('admission_challenge'),
                                   status('admission_accepted'),
                                   status('admission_whatever')])
def test_unusable_admission_answers_are_ignored(tmp_path: Path, frame: str) -> None:
    rig = Rig(tmp_path)
    rig.session.connection_opened('', AdmissionKey.load_or_create(str(tmp_path / 'k.pem')))
    reaction = rig.session.receive(frame)
    assert reaction.frames == [] and reaction.token is None and rig.session.stats.malformed_total
