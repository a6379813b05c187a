"""The admission core: key and signature checks, the bounded book of pending requests."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lekiwi_fleet_server.domain import protocol
from lekiwi_fleet_server.domain.admission import (
    AdmissionBook,
    AdmissionRefused,
    key_fingerprint,
    new_nonce,
    parse_public_key,
    signed_message,
    verify_signature,
)
from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError


def _key() -> tuple[Ed25519PrivateKey, bytes]:
    private = Ed25519PrivateKey.generate()
    return private, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_a_signature_of_this_robot_and_nonce_verifies_and_nothing_else_does() -> None:
    private, public = _key()
    nonce = new_nonce()
    good = _b64(private.sign(signed_message('kiwi-1', nonce)))
    assert verify_signature(public, signed_message('kiwi-1', nonce), good)
    assert not verify_signature(public, signed_message('kiwi-1', new_nonce()), good)  # replay
    assert not verify_signature(public, signed_message('kiwi-2', nonce), good)  # other robot
    _, other_public = _key()
    assert not verify_signature(other_public, signed_message('kiwi-1', nonce), good)
    for bad in (None, 7, '', 'not base64!', _b64(b'x' * 63), 'A' * 1000):
        assert not verify_signature(public, signed_message('kiwi-1', nonce), bad)


def test_public_keys_must_be_32_bytes_of_base64() -> None:
    _, public = _key()
    assert parse_public_key(_b64(public)) == public
    for bad in (None, 3, '', '***', _b64(public[:31]), _b64(public + b'x'), 'A' * 500):
        with pytest.raises(ValueError):
            parse_public_key(bad)


def test_the_fingerprint_is_stable_distinct_and_a_valid_tag() -> None:
    _, a = _key()
    _, b = _key()
    assert key_fingerprint(a) == key_fingerprint(a) != key_fingerprint(b)
    assert key_fingerprint(a).startswith('SHA256:') and len(key_fingerprint(a)) == 50
    from lekiwi_fleet_server.api.admin import TAG
    assert TAG.fullmatch(f'key:{key_fingerprint(a)}')


def test_the_book_holds_one_request_per_robot_first_come() -> None:
    book = AdmissionBook(10, rate_per_s=100, burst=100, now=0.0)
    _, key = _key()
    request = book.request('kiwi-1', key, 'conn-1', now=1.0, address='10.0.0.7')
    assert request.fingerprint == key_fingerprint(key)
    assert request.as_dict()['status'] == 'pending' and request.as_dict()['address'] == '10.0.0.7'
    with pytest.raises(AdmissionRefused, match='pending already'):
        book.request('kiwi-1', _key()[1], 'conn-2', now=2.0)
    assert [r.connection for r in book.pending()] == ['conn-1']


def test_the_book_caps_pending_requests_and_their_rate() -> None:
    book = AdmissionBook(2, rate_per_s=100, burst=100, now=0.0)
    book.request('a', _key()[1], 1, now=0.0)
    book.request('b', _key()[1], 2, now=0.0)
    with pytest.raises(AdmissionRefused, match='2 admission requests are pending'):
        book.request('c', _key()[1], 3, now=0.0)
    assert len(book) == 2
    slow = AdmissionBook(100, rate_per_s=1.0, burst=2, now=0.0)
    slow.request('a', _key()[1], 1, now=0.0)
    slow.request('b', _key()[1], 2, now=0.0)
    with pytest.raises(AdmissionRefused, match='too many admission requests'):
        slow.request('c', _key()[1], 3, now=0.1)
    slow.request('c', _key()[1], 3, now=1.2)  # the bucket refilled
    assert [r.robot_id for r in slow.pending()] == ['a', 'b', 'c']


def test_a_decision_is_taken_once_and_only_for_the_key_the_admin_saw() -> None:
    book = AdmissionBook(10, rate_per_s=100, burst=100, now=0.0)
    _, key = _key()
    book.request('kiwi-1', key, 'conn', now=0.0)
    with pytest.raises(AdmissionRefused, match='no admission request'):
        book.begin_decision('kiwi-9')
    with pytest.raises(AdmissionRefused, match='has key'):
        book.begin_decision('kiwi-1', 'SHA256:someone-else')
    book.begin_decision('kiwi-1', key_fingerprint(key))
    with pytest.raises(AdmissionRefused, match='being decided'):
        book.begin_decision('kiwi-1')
    book.abandon_decision('kiwi-1')  # e.g. the store was down: it can be decided again
    book.begin_decision('kiwi-1')
    assert book.end_decision('kiwi-1') is not None
    assert book.pending() == [] and book.get('kiwi-1') is None


def test_a_request_ends_with_its_connection_only() -> None:
    book = AdmissionBook(10, rate_per_s=100, burst=100, now=0.0)
    book.request('kiwi-1', _key()[1], 'conn-1', now=0.0)
    assert book.withdraw('kiwi-1', 'conn-2') is None  # another connection's close
    assert book.withdraw('kiwi-1', 'conn-1') is not None
    assert len(book) == 0


def test_parse_auth_reads_an_admission_request() -> None:
    frame = {'op': 'auth', 'robot_id': 'kiwi-1', 'protocol': ['lekiwi-fleet/1'],
             'admission': {'public_key': 'AAAA'}}
    request = protocol.parse_auth(frame)
    assert request.admission is not None and request.admission.signature is None
    assert request.token == ''
    signed = protocol.parse_auth({**frame, 'admission': {'public_key': 'AAAA',
                                                          'signature': 'BBBB'}})
    assert signed.admission is not None and signed.admission.signature == 'BBBB'
    for bad in ({'public_key': 3}, 'key', {'public_key': 'A', 'signature': 5}, {}):
        with pytest.raises(ProtocolError) as caught:
            protocol.parse_auth({**frame, 'admission': bad})
        assert caught.value.code is ErrorCode.AUTH_FAILED
    with pytest.raises(ProtocolError):  # a token and no admission: the token shape's checks
        protocol.parse_auth({**frame, 'admission': None, 'token': ''})


def test_admission_frames_match_the_protocol_schema() -> None:
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

    ask = {'op': 'auth', 'robot_id': 'kiwi-1', 'protocol': ['lekiwi-fleet/1'],
           'admission': {'public_key': 'AAAA'}}
    assert valid('AuthFrame', ask)
    assert valid('AuthFrame', {**ask, 'admission': {'public_key': 'AAAA', 'signature': 'BB'}})
    assert not valid('AuthFrame', {**ask, 'token': 'lkw_x'})  # a token or a key, not both
    assert not valid('AuthFrame', {**ask, 'admission': {}})
    for msg, fields in (('admission_challenge', {'nonce': new_nonce()}),
                        ('admission_pending', {'fingerprint': 'SHA256:x', 'timeout_s': 600.0}),
                        ('admission_accepted', {'token': 'lkw_abc'})):
        assert valid('AdmissionStatusFrame',
                     orjson.loads(protocol.admission_status_frame(msg, 'kiwi-1', **fields)))
        assert not valid('AdmissionStatusFrame',
                         orjson.loads(protocol.admission_status_frame(msg, 'kiwi-1')))
    refused = protocol.error_frame(ProtocolError(ErrorCode.ADMISSION_REFUSED, 'rejected', 'auth'))
    assert valid('ErrorFrame', orjson.loads(refused))
    assert ProtocolError(ErrorCode.ADMISSION_REFUSED, 'x').close_code == 4403
