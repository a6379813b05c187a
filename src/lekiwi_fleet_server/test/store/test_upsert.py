"""Many rows in one statement (store/upsert.py): what goes in comes back, on both databases."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from lekiwi_fleet_server.store import upsert

probe = sa.Table(
    'upsert_probe', sa.MetaData(),
    sa.Column('id', sa.String(16), primary_key=True),
    sa.Column('x', sa.Double, nullable=True),
    sa.Column('n', sa.BigInteger, nullable=False),
    sa.Column('flag', sa.Boolean, nullable=False),
    sa.Column('doc', sa.JSON, nullable=True),
)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url.replace('postgresql://', 'postgresql+psycopg://', 1))
    probe.create(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(pg_url)
    probe.create(engine)
    yield engine
    engine.dispose()


def read(engine: sa.Engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {r.id: (r.x, r.n, r.flag, r.doc) for r in conn.execute(sa.select(probe))}


def row(i: int, **changes: object) -> dict[str, object]:
    return {'id': f'r{i}', 'x': i / 3, 'n': 2**62 + i, 'flag': i % 2 == 0,
            'doc': {'i': i, 'nested': [1.5, None, 'text "quoted" \\ é'], 'none': None},
            **changes}


def test_insert_upsert_and_update_round_trip_every_type(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        upsert.insert(conn, probe, [row(i) for i in range(300)])
    with engine.begin() as conn:
        upsert.upsert(conn, probe, [row(1, x=None, doc=None), row(300)], keys=['id'])
        upsert.insert_ignore(conn, probe, [row(2, n=7), row(301)])
        matched = upsert.update_rows(conn, probe, [{'id': 'r3', 'n': 3, 'flag': True},
                                                   {'id': 'absent', 'n': 4, 'flag': False}],
                                     'id')
    assert matched == 1
    stored = read(engine)
    assert len(stored) == 302
    assert stored['r0'] == (0.0, 2**62, True, row(0)['doc'])
    assert stored['r1'] == (None, 2**62 + 1, False, None)
    assert stored['r2'][1] == 2**62 + 2  # ignored: kept
    assert stored['r3'] == (1.0, 3, True, row(3)['doc'])
    assert stored['r301'] == (301 / 3, 2**62 + 301, False, row(301)['doc'])


def test_a_plain_insert_refuses_a_key_already_present(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        upsert.insert(conn, probe, [row(1)])
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        upsert.insert(conn, probe, [row(2), row(1)])
    assert list(read(engine)) == ['r1']


def test_non_finite_doubles_are_stored_as_such_on_postgresql(pg_engine: sa.Engine) -> None:
    # JSON has no NaN or infinity: orjson would write null, which would be silently wrong.
    with pg_engine.begin() as conn:
        upsert.insert(conn, probe, [row(1, x=math.nan), row(2, x=math.inf), row(3)])
        upsert.update_rows(conn, probe, [{'id': 'r3', 'x': -math.inf}], 'id')
    stored = read(pg_engine)
    assert math.isnan(stored['r1'][0])
    assert stored['r2'][0] == math.inf
    assert stored['r3'][0] == -math.inf


def test_a_nul_in_a_json_column_is_stored_on_postgresql(pg_engine: sa.Engine) -> None:
    # PostgreSQL's JSON parser refuses \u0000 inside the rows document; json columns keep it.
    doc = {'reason': 'odd\x00value'}
    with pg_engine.begin() as conn:
        upsert.insert(conn, probe, [row(1, doc=doc), row(2)])
        upsert.upsert(conn, probe, [row(2, doc={'k': '\x00'})], keys=['id'])
        upsert.update_rows(conn, probe, [{'id': 'r1', 'doc': {'again': '\x00'}}], 'id')
    stored = read(pg_engine)
    assert stored['r1'][3] == {'again': '\x00'}
    assert stored['r2'][3] == {'k': '\x00'}


def test_rows_json_spells_only_what_json_cannot_carry() -> None:
    text, nested = upsert.rows_json(probe, ('id', 'x', 'n', 'flag', 'doc'),
                                    [row(1, x=math.nan), row(2, x=1e308), row(3, x=1e308)])
    assert nested
    assert '"x":"NaN"' in text and '"x":1e+308' in text  # finite values stay numbers
    text, nested = upsert.rows_json(probe, ('id', 'doc'), [{'id': 'a', 'doc': {'s': '\x00'}}])
    assert not nested and text == '[{"id":"a","doc":"{\\"s\\":\\"\\\\u0000\\"}"}]'
