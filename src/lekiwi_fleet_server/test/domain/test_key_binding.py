"""The key proof of an admitted robot's later logins: binding, challenge, refusals."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lekiwi_fleet_server.domain import admission, protocol
from lekiwi_fleet_server.domain.key_binding import (
    bound_fingerprint,
    check_key_proof,
    key_tag,
    signed_message,
)
from lekiwi_fleet_server.domain.protocol import AdmissionProof, ProtocolError


def _key() -> tuple[Ed25519PrivateKey, str, str]:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return key, base64.b64encode(raw).decode(), admission.key_fingerprint(raw)


def _sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()


def test_the_key_tag_binds_and_other_tags_do_not() -> None:
    _, _, fingerprint = _key()
    assert bound_fingerprint(['lab', key_tag(fingerprint)]) == fingerprint
    assert bound_fingerprint(['lab', 'key:', 'key:md5:abc']) is None
    assert bound_fingerprint([]) is None


def test_a_token_only_robot_passes_with_or_without_a_proof() -> None:
    _, public, _ = _key()
    assert check_key_proof('kiwi', None, None, None)
    assert check_key_proof('kiwi', None, AdmissionProof(public, 'junk'), None)


def test_a_bound_robot_is_challenged_then_proves_with_the_nonce() -> None:
    key, public, fingerprint = _key()
    assert not check_key_proof('kiwi', fingerprint, AdmissionProof(public, None), None)
    nonce = admission.new_nonce()
    # A signature sent before any challenge (nonce None) is challenged, not trusted.
    signed = _sign(key, signed_message('kiwi', nonce))
    assert not check_key_proof('kiwi', fingerprint, AdmissionProof(public, signed), None)
    assert check_key_proof('kiwi', fingerprint, AdmissionProof(public, signed), nonce)


@pytest.mark.parametrize('case', ['missing', 'other_key', 'bad_key', 'other_nonce',
                                  'other_robot', 'admission_signature'])
def test_a_bound_robot_without_a_good_proof_is_refused(case: str) -> None:
    key, public, fingerprint = _key()
    other, other_public, _ = _key()
    nonce = admission.new_nonce()
    proofs = {
        'missing': None,
        'other_key': AdmissionProof(other_public, _sign(other, signed_message('kiwi', nonce))),
        'bad_key': AdmissionProof('not base64!', None),
        'other_nonce': AdmissionProof(public, _sign(key, signed_message('kiwi', 'x' + nonce))),
        'other_robot': AdmissionProof(public, _sign(key, signed_message('kiwi-2', nonce))),
        # A signature made for the admission exchange is no good here (another prefix).
        'admission_signature': AdmissionProof(
            public, _sign(key, admission.signed_message('kiwi', nonce))),
    }
    with pytest.raises(ProtocolError) as refused:
        check_key_proof('kiwi', fingerprint, proofs[case], nonce)
    assert refused.value.code is protocol.ErrorCode.AUTH_FAILED
    assert refused.value.close_code == 4401
    if case == 'missing':
        assert f'bound to key {fingerprint}' in refused.value.message


def test_parse_auth_reads_a_key_proof_and_refuses_a_malformed_one() -> None:
    frame = {'op': 'auth', 'robot_id': 'kiwi', 'token': 't', 'protocol': ['lekiwi-fleet/1']}
    assert protocol.parse_auth(frame).key_proof is None
    parsed = protocol.parse_auth({**frame, 'key_proof': {'public_key': 'abc', 'signature': 's'}})
    assert parsed.key_proof == AdmissionProof('abc', 's') and parsed.token == 't'
    for bad in ('text', {'public_key': 7}, {'public_key': 'a', 'signature': 7}):
        with pytest.raises(ProtocolError, match='key_proof'):
            protocol.parse_auth({**frame, 'key_proof': bad})


def test_key_proof_frames_match_the_protocol_schema() -> None:
    import json
    from pathlib import Path

    import jsonschema
    import orjson

    path = Path(__file__).resolve().parents[3].parent / 'docs' / 'robot-protocol-v1.schema.json'
    if not path.exists():
        pytest.skip('protocol schema not found: run from the repository checkout')
    schema = json.loads(path.read_text())

    def valid(definition: str, frame: object) -> bool:
        return jsonschema.Draft202012Validator(
            {**schema, '$ref': f'#/$defs/{definition}'}).is_valid(frame)

    challenge = orjson.loads(protocol.key_challenge_frame('kiwi-1', admission.new_nonce()))
    assert valid('KeyChallengeFrame', challenge)
    assert not valid('KeyChallengeFrame', {**challenge, 'nonce': ''})
    login = {'op': 'auth', 'robot_id': 'kiwi-1', 'token': 't', 'protocol': ['lekiwi-fleet/1'],
             'key_proof': {'public_key': 'AAAA', 'signature': 'BBBB'}}
    assert valid('AuthFrame', login)
    assert not valid('AuthFrame', {**login, 'key_proof': {'signature': 'BBBB'}})
