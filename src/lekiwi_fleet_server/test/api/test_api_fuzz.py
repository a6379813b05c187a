"""Schemathesis against the published OpenAPI of a real server on loopback with the real store.

Bounded and seeded, so a run takes a known time and a failure reproduces: every operation gets
`MAX_EXAMPLES` generated requests (valid and invalid ones, and the coverage phase's boundary
values) with an admin's token, and the run fails on any 5xx, any response that breaks the
published schema, any status code an operation does not document, and the other checks below.
It is a pytest test, not a step of scripts/test.sh, so that `colcon test` runs it like every
other server test, with the fixtures that give it a throwaway PostgreSQL database.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from api_harness import ADMIN_TOKEN
from live_server import live_server

from lekiwi_fleet_server.api.admin import enrol_robot
from lekiwi_fleet_server.settings import Settings

MAX_EXAMPLES = 30
SEED = 14
# Every check (no 5xx, status codes, response schemas and headers, invalid data refused,
# auth not ignored, unsupported methods answered 405, ...) but two the app cannot meet by its
# schema: positive_data_acceptance (a telemetry range needs end > start and a bounded number
# of buckets, rules across parameters that OpenAPI cannot state) and allow_header_conformance
# (Starlette answers a 405 from the first route of a path, whose Allow lists only its method).
EXCLUDED_CHECKS = ('positive_data_acceptance', 'allow_header_conformance')


def _schemathesis() -> list[str]:
    found = shutil.which('schemathesis', path=str(Path(sys.executable).parent))
    if found is None:
        # A dev dependency (requirements/dev.txt): missing, this run must not pass unseen.
        pytest.fail('schemathesis is not installed: run scripts/bootstrap.sh')
    return [found]


@pytest.fixture
def fuzz_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test PostgreSQL (the production store) when there is one, else an SQLite file."""
    if os.environ.get('LEKIWI_TEST_DATABASE_URL'):  # as pg_url (test/conftest.py) reads it
        return str(request.getfixturevalue('pg_url'))
    return f'sqlite:///{tmp_path / "fleet.db"}'


@pytest.mark.timeout(480)
def test_no_5xx_no_schema_violation_no_undocumented_status(fuzz_database_url: str,
                                                           tmp_path: Path) -> None:
    command = _schemathesis()
    settings = Settings(database_url=fuzz_database_url, data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN,
                        command_timeout_s=0.5)
    with live_server(settings) as server:
        # One robot that exists, so that the 200 paths of /robots/{robot_id}/... are reached.
        enrol_robot(server.services.store, 'kiwi-1', ['lab'], now=time.time())
        started = time.monotonic()
        run = subprocess.run(
            [*command, 'run', f'{server.url}/openapi.json', '--checks', 'all',
             '--exclude-checks', ','.join(EXCLUDED_CHECKS),
             '--header', f'Authorization: Bearer {ADMIN_TOKEN}', '--max-examples',
             str(MAX_EXAMPLES), '--seed', str(SEED), '--workers', '1', '--no-shrink',
             '--phases', 'examples,coverage,fuzzing', '--request-timeout', '10',
             '--suppress-health-check', 'all', '--warnings', 'off'],
            capture_output=True, text=True, timeout=420, cwd=tmp_path,
            env={**os.environ, 'SCHEMATHESIS_TELEMETRY': 'false', 'NO_COLOR': '1'})
        took = time.monotonic() - started
    print(run.stdout[-6000:])
    assert run.returncode == 0, f'schemathesis failed after {took:.0f} s:\n{run.stdout[-20000:]}'
    generated = re.search(r'(\d+) generated, (\d+) passed', run.stdout)
    assert generated and int(generated.group(1)) >= 10 * MAX_EXAMPLES, run.stdout[-3000:]
