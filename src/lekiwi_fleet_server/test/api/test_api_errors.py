"""Inputs that once answered 500 or broke the schema: each is refused in the one error format."""

from __future__ import annotations

from typing import Any

import pytest
from api_harness import Api

ERROR_KEYS = {'code', 'detail', 'errors'}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_KEYS and body['code'] == code, body
    assert isinstance(body['detail'], str) and isinstance(body['errors'], list)
    return body


@pytest.mark.parametrize('path', ['/api/v1/timeline?after=9223372036854775808',
                                  '/api/v1/robots/kiwi-e/events?after=99999999999999999999'])
def test_positions_beyond_64_bits_are_invalid(api: Api, path: str) -> None:
    api.enrol('kiwi-e')
    body = assert_error(api.client.get(path, headers=api.viewer), 422, 'invalid_request')
    assert body['errors'][0]['loc'] == ['query', 'after']
    # The largest position is still a valid question.
    ok = api.client.get(path.split('?')[0] + '?after=9223372036854775807', headers=api.viewer)
    assert ok.status_code == 200 and ok.json()['next_after'] is None


@pytest.mark.parametrize('query', ['start=1e300&end=2e300', 'start=0&end=1e300&bucket_s=1e300',
                                   'start=0&end=10&bucket_s=1e300', 'start=nan&end=1',
                                   'start=0&end=inf', 'start=-1e300&end=0'])
def test_telemetry_times_out_of_range_are_invalid(api: Api, query: str) -> None:
    api.enrol('kiwi-t')
    assert_error(api.client.get(f'/api/v1/robots/kiwi-t/telemetry?{query}', headers=api.viewer),
                 422, 'invalid_request')


@pytest.mark.parametrize('payload', [
    '{"n": 18446744073709551616}',        # beyond 64 bits
    '{"s": "\\ud800"}',                    # a lone surrogate
    '{"\\udfff": 1}',                      # one in a key
    '{"a": ' + '[' * 40 + ']' * 40 + '}',  # too deep
    '{"a": "' + 'x' * 20000 + '"}',        # too large
    '{"f": [1.5, NaN]}',                   # not JSON, though Python's parser takes it
])
def test_command_payloads_the_robot_cannot_carry_are_invalid(api: Api, payload: str) -> None:
    api.enrol('kiwi-c')
    response = api.client.post('/api/v1/robots/kiwi-c/commands', headers={
        **api.admin, 'Content-Type': 'application/json'},
        content=f'{{"command_type": "ping", "payload": {payload}}}')
    body = assert_error(response, 422, 'invalid_request')
    assert body['errors'][0]['loc'] == ['body', 'payload']
    assert len(response.content) < 2000  # the refused input is not echoed back whole


def test_a_body_that_is_not_json_is_a_400_in_the_error_format(api: Api) -> None:
    response = api.client.post('/api/v1/robots', headers={
        **api.admin, 'Content-Type': 'application/json'}, content=b'[' * 100_000)
    assert_error(response, 400, 'malformed_body')


def test_a_body_over_the_limit_is_refused_before_it_is_read_whole(api: Api) -> None:
    from lekiwi_fleet_server.api.body_limit import MAX_BODY_BYTES

    big = b'{"robot_id": "' + b'x' * MAX_BODY_BYTES + b'"}'
    headers = {**api.admin, 'Content-Type': 'application/json'}
    # Declared by its Content-Length, and sent in chunks without one.
    assert_error(api.client.post('/api/v1/robots', headers=headers, content=big), 413,
                 'payload_too_large')
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))
    response = api.client.post('/api/v1/robots', headers=headers, content=chunks)
    assert 'content-length' not in response.request.headers
    assert_error(response, 413, 'payload_too_large')


def test_validation_errors_use_the_error_format(api: Api) -> None:
    body = assert_error(api.client.get('/api/v1/timeline?limit=5000', headers=api.viewer),
                        422, 'invalid_request')
    assert body['errors'] == [{'loc': ['query', 'limit'], 'msg': body['errors'][0]['msg'],
                               'type': 'less_than_equal'}]
    assert body['detail'].startswith('query.limit: ')


def test_every_status_the_routes_answer_is_in_the_error_format(api: Api) -> None:
    api.enrol('kiwi-s')
    assert_error(api.client.get('/api/v1/robots'), 401, 'unauthorized')
    assert_error(api.client.post('/api/v1/robots/kiwi-s/revoke', headers=api.viewer), 403,
                 'forbidden')
    assert_error(api.client.get('/api/v1/robots/ghost', headers=api.viewer), 404, 'not_found')
    assert_error(api.client.post('/api/v1/robots/ghost/revoke', headers=api.admin), 404,
                 'not_found')
    assert_error(api.client.post('/api/v1/robots', headers=api.admin,
                                 json={'robot_id': 'kiwi-s'}), 409, 'conflict')
    assert_error(api.client.post('/api/v1/robots', headers=api.admin,
                                 json={'robot_id': 'kiwi-z', 'tags': ['no spaces']}),
                 422, 'invalid_request')
    assert_error(api.client.post('/api/v1/robots/kiwi-s/commands', headers=api.admin,
                                 json={'command_type': 'ping'}), 409, 'robot_not_connected')
    assert_error(api.client.get('/api/v1/nowhere', headers=api.viewer), 404, 'not_found')


def test_tag_filter_matches_the_schema(api: Api) -> None:
    api.enrol('kiwi-a', ['lab'])
    api.enrol('kiwi-b', ['field'])
    tagged = api.client.get('/api/v1/robots?tag=lab', headers=api.viewer)
    assert [r['robot_id'] for r in tagged.json()] == ['kiwi-a']
    # The schema says what a tag is (the same pattern enrolment checks), an empty one is not.
    parameter = next(p for p in api.client.get('/openapi.json').json()['paths'][
        '/api/v1/robots']['get']['parameters'] if p['name'] == 'tag')
    pattern = parameter['schema']['anyOf'][0]['pattern']
    assert pattern == '^[A-Za-z0-9._:/-]{1,64}$'
    assert_error(api.client.get('/api/v1/robots?tag=', headers=api.viewer), 422,
                 'invalid_request')
    # Enrolment's tags too: the schema refuses what the API would refuse.
    enrol = api.client.get('/openapi.json').json()['components']['schemas']['EnrolRequest']
    assert enrol['properties']['tags']['items']['pattern'] == pattern


def test_openapi_declares_the_error_format_for_every_error_status(api: Api) -> None:
    schema = api.client.get('/openapi.json').json()
    assert 'HTTPValidationError' not in schema['components']['schemas']
    for path, operations in schema['paths'].items():
        for method, operation in operations.items():
            errors = {s: r for s, r in operation['responses'].items() if s[0] in '45'}
            for status, response in errors.items():
                ref = response['content']['application/json']['schema']['$ref']
                assert ref == '#/components/schemas/ErrorOut', (method, path, status)
            if operation.get('security'):
                assert {'401', '503'} <= set(errors), (method, path)


def test_an_unexpected_error_is_a_500_in_the_error_format_without_its_text(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    def broken(**_kwargs: Any) -> Any:
        raise RuntimeError('secret internals')

    monkeypatch.setattr(api.services.store, 'fleet_summary', broken)
    client = TestClient(api.client.app, raise_server_exceptions=False)
    response = client.get('/api/v1/fleet/summary', headers=api.viewer)
    body = assert_error(response, 500, 'server_error')
    assert 'secret' not in response.text and body['detail'] == 'internal error'
