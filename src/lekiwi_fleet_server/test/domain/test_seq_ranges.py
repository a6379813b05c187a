"""SeqRanges (pure): ranges, membership, gaps, JSON form, limits; properties against a set."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lekiwi_fleet_server.domain.seq_ranges import MAX_SEQ, SeqRanges, TooManyRanges


def test_in_order_numbers_make_one_range() -> None:
    r = SeqRanges()
    assert r.add(1) and r.add(2) and r.add(3)
    assert r.to_json() == [[1, 3]] and len(r) == 3 and r.range_count == 1 and r.last == 3
    assert r.gaps() == []


def test_out_of_order_numbers_open_and_join_ranges() -> None:
    r = SeqRanges()
    for seq in (5, 1, 3):
        assert r.add(seq)
    assert r.to_json() == [[1, 1], [3, 3], [5, 5]]
    assert r.gaps() == [[2, 2], [4, 4]]
    assert r.add(2)  # joins [1,1] and [3,3]
    assert r.to_json() == [[1, 3], [5, 5]]
    assert r.add(4)
    assert r.to_json() == [[1, 5]] and len(r) == 5
    assert r.add(0)  # joins on the left of the first range
    assert r.add(7) and r.add(6)  # joins the right range on its left side
    assert r.to_json() == [[0, 7]] and len(r) == 8


def test_adding_twice_reports_false_and_changes_nothing() -> None:
    r = SeqRanges.of([1, 2, 3, 10])
    assert not r.add(2) and not r.add(10)
    assert r.to_json() == [[1, 3], [10, 10]] and len(r) == 4


def test_membership() -> None:
    r = SeqRanges.of([2, 3, 4, 9])
    assert [s for s in range(12) if s in r] == [2, 3, 4, 9]
    assert 'x' not in r and 2.0 not in r and True not in r
    assert 1 not in SeqRanges()


def test_gaps_from_one_or_a_given_start() -> None:
    r = SeqRanges.of([3, 4, 8])
    assert r.gaps() == [[1, 2], [5, 7]]
    assert r.gaps(start=4) == [[5, 7]]
    assert r.gaps(start=0) == [[0, 2], [5, 7]]
    assert SeqRanges().gaps() == []


def test_json_round_trip_and_refusals() -> None:
    r = SeqRanges.of([1, 2, 5, 6, 7, 20])
    again = SeqRanges.from_json(r.to_json())
    assert again == r and len(again) == len(r) and again.last == 20
    assert SeqRanges.from_json([]) == SeqRanges()
    for bad in ({'a': 1}, [[1]], [[1, 2, 3]], [['1', 2]], [[1.0, 2]], [[True, 2]], [[3, 2]],
                [[-1, 2]], [[0, MAX_SEQ + 1]], [[5, 6], [1, 2]], [[1, 3], [3, 4]],
                [[1, 3], [4, 6]], None, 'x'):
        with pytest.raises(ValueError):
            SeqRanges.from_json(bad)


def test_copy_is_independent() -> None:
    r = SeqRanges.of([1, 2])
    c = r.copy()
    c.add(3)
    c.add(9)
    assert r.to_json() == [[1, 2]] and len(r) == 2
    assert c.to_json() == [[1, 3], [9, 9]]
    assert r != c and r != [[1, 2]]


def test_range_limit_refuses_only_new_ranges() -> None:
    r = SeqRanges.of([1, 3])
    with pytest.raises(TooManyRanges):
        r.add(10, max_ranges=2)
    assert r.to_json() == [[1, 1], [3, 3]]  # unchanged
    assert r.add(2, max_ranges=2) and r.add(4, max_ranges=1)  # joins need no new range
    assert r.add(10, max_ranges=2)
    assert r.to_json() == [[1, 4], [10, 10]]


def test_bounds() -> None:
    r = SeqRanges()
    assert r.add(MAX_SEQ) and MAX_SEQ in r
    with pytest.raises(ValueError):
        r.add(MAX_SEQ + 1)
    with pytest.raises(ValueError):
        SeqRanges().add(-1)
    assert repr(SeqRanges.of([4])) == 'SeqRanges([[4, 4]])'


seqs = st.lists(st.integers(min_value=0, max_value=200), max_size=120)


@settings(max_examples=300, deadline=None)
@given(seqs)
def test_behaves_like_a_set(numbers: list[int]) -> None:
    r, model = SeqRanges(), set[int]()
    for seq in numbers:
        assert r.add(seq) == (seq not in model)
        model.add(seq)
        assert len(r) == len(model)
    assert {s for s in range(-1, 202) if s in r} == model
    ranges = list(r.ranges())
    # Sorted, disjoint and never adjacent: the representation is canonical.
    for (f1, l1), (f2, _l2) in zip(ranges, ranges[1:], strict=False):
        assert f1 <= l1 < f2 - 1
    assert {s for f, la in ranges for s in range(f, la + 1)} == model
    assert SeqRanges.from_json(r.to_json()) == r == SeqRanges.of(model)


@settings(max_examples=300, deadline=None)
@given(seqs, st.integers(min_value=0, max_value=50))
def test_gaps_are_exactly_the_missing_numbers(numbers: list[int], start: int) -> None:
    r = SeqRanges.of(numbers)
    missing = {s for f, la in r.gaps(start) for s in range(f, la + 1)}
    top = max(numbers, default=-1)
    assert missing == {s for s in range(start, top + 1) if s not in r}


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(1, 60))))
def test_any_order_of_a_full_boot_ends_as_one_range(order: list[int]) -> None:
    r = SeqRanges()
    for seq in order:
        r.add(seq)
    assert r.to_json() == [[1, 59]] and r.gaps() == []
