"""Writer shards: a robot's shard is stable, in range and spreads a fleet evenly."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from lekiwi_fleet_server.domain.shards import MAX_SHARDS, check_shard, shard_of


def test_one_shard_owns_every_robot() -> None:
    assert {shard_of(f'kiwi-{i}', 1) for i in range(100)} == {0}


def test_the_shard_is_the_crc32_of_the_id_and_the_same_in_another_process() -> None:
    # Python's str hash changes from process to process; the shard must not.
    assert [shard_of(r, 2) for r in ('alpha', 'bravo', 'charlie', 'delta')] == [0, 1, 0, 1]
    assert shard_of('bravo', 4) == 161200265 % 4
    code = ('from lekiwi_fleet_server.domain.shards import shard_of\n'
            'print([shard_of(f"kiwi-{i}", 3) for i in range(20)])')
    other = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert other == str([shard_of(f'kiwi-{i}', 3) for i in range(20)])


@pytest.mark.parametrize('shards', [2, 3, MAX_SHARDS])
def test_a_fleet_spreads_evenly(shards: int) -> None:
    counts = Counter(shard_of(f'lekiwi-{i:05d}', shards) for i in range(10_000))
    assert sorted(counts) == list(range(shards))
    assert max(counts.values()) < 1.1 * 10_000 / shards


@pytest.mark.parametrize(('index', 'shards'), [(0, 0), (0, MAX_SHARDS + 1), (2, 2), (-1, 2)])
def test_a_shard_outside_the_count_is_refused(index: int, shards: int) -> None:
    with pytest.raises(ValueError, match='shard'):
        check_shard(index, shards)
    check_shard(0, 1)
    check_shard(MAX_SHARDS - 1, MAX_SHARDS)
