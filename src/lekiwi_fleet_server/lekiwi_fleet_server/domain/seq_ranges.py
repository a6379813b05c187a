"""A compact set of sequence numbers: sorted, disjoint, non-adjacent inclusive ranges.

The store records every committed (boot_id, seq) of a robot with one `SeqRanges` per boot. A
robot's uplink numbers messages 1, 2, 3, ... without gaps and sends them nearly in order, so a
boot's set is almost always one range, and adding the next number (seq == last + 1) is O(1).
Out-of-order numbers (state messages go before a history backlog) cost a binary search and,
when they open a new range, a list insert. Pure: no I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

MAX_SEQ = 2**63 - 1  # seq is a signed 64-bit integer in the database


class TooManyRanges(ValueError):
    """Adding the number would open a range beyond the set's limit (a set full of holes)."""


class SeqRanges:
    """A set of non-negative integers held as inclusive [first, last] ranges."""

    __slots__ = ('_firsts', '_lasts', '_count')

    def __init__(self) -> None:
        # Parallel lists: _firsts[i].._lasts[i] is range i; ranges sorted, with gaps between.
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        self._count = 0

    @classmethod
    def of(cls, seqs: Any) -> SeqRanges:
        """Return the set of the given numbers (any iterable of ints)."""
        out = cls()
        for seq in sorted(set(seqs)):
            out.add(seq)
        return out

    @classmethod
    def from_json(cls, value: Any) -> SeqRanges:
        """Return the set `to_json` wrote; raise ValueError unless `value` is that shape."""
        if not isinstance(value, list):
            raise ValueError('sequence ranges must be a list of [first, last] pairs')
        out = cls()
        previous = -2
        for item in value:
            if (not isinstance(item, list | tuple) or len(item) != 2
                    or not all(type(x) is int for x in item)):
                raise ValueError(f'sequence range {item!r} is not a [first, last] pair')
            first, last = item
            if not 0 <= first <= last <= MAX_SEQ:
                raise ValueError(f'sequence range {item!r} needs 0 <= first <= last < 2^63')
            if first <= previous + 1:
                raise ValueError('sequence ranges must be sorted, disjoint and not adjacent')
            out._firsts.append(first)
            out._lasts.append(last)
            out._count += last - first + 1
            previous = last
        return out

    def to_json(self) -> list[list[int]]:
        """Return the ranges as a JSON-ready list of [first, last] pairs."""
        return [[f, la] for f, la in zip(self._firsts, self._lasts, strict=True)]

    def copy(self) -> SeqRanges:
        """Return an independent copy."""
        out = SeqRanges()
        out._firsts = self._firsts.copy()
        out._lasts = self._lasts.copy()
        out._count = self._count
        return out

    def __len__(self) -> int:
        """Return how many numbers the set holds (not how many ranges)."""
        return self._count

    @property
    def range_count(self) -> int:
        """Return how many ranges hold the numbers."""
        return len(self._firsts)

    @property
    def last(self) -> int | None:
        """Return the largest number, None when empty."""
        return self._lasts[-1] if self._lasts else None

    def ranges(self) -> Iterator[tuple[int, int]]:
        """Yield the (first, last) ranges in order."""
        return zip(self._firsts, self._lasts, strict=True)

    def __contains__(self, seq: object) -> bool:
        """Tell whether the set holds `seq`."""
        if type(seq) is not int:
            return False
        lasts = self._lasts
        if not lasts or seq > lasts[-1]:
            return False  # the common case: a number past everything seen
        i = bisect_right(self._firsts, seq) - 1
        return i >= 0 and seq <= lasts[i]

    def add(self, seq: int, max_ranges: int | None = None) -> bool:
        """Add `seq`; return False when it was there already.

        Raise TooManyRanges, changing nothing, when `seq` would open a new range while the
        set already holds `max_ranges` ranges.
        """
        firsts, lasts = self._firsts, self._lasts
        if lasts and seq == lasts[-1] + 1 and seq <= MAX_SEQ:  # in order: O(1)
            lasts[-1] = seq
            self._count += 1
            return True
        if not 0 <= seq <= MAX_SEQ:
            raise ValueError(f'seq must be 0..2^63-1, not {seq}')
        i = bisect_right(firsts, seq) - 1  # the range starting at or before seq, or -1
        if i >= 0 and seq <= lasts[i]:
            return False
        joins_left = i >= 0 and lasts[i] == seq - 1
        joins_right = i + 1 < len(firsts) and firsts[i + 1] == seq + 1
        if joins_left and joins_right:
            lasts[i] = lasts[i + 1]
            del firsts[i + 1], lasts[i + 1]
        elif joins_left:
            lasts[i] = seq
        elif joins_right:
            firsts[i + 1] = seq
        else:
            if max_ranges is not None and len(firsts) >= max_ranges:
                raise TooManyRanges(f'more than {max_ranges} separate sequence ranges')
            firsts.insert(i + 1, seq)
            lasts.insert(i + 1, seq)
        self._count += 1
        return True

    def gaps(self, start: int = 1) -> list[list[int]]:
        """Return the [first, last] ranges missing between `start` and the largest number."""
        out: list[list[int]] = []
        expected = start
        for first, last in zip(self._firsts, self._lasts, strict=True):
            if first > expected:
                out.append([expected, first - 1])
            expected = max(expected, last + 1)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeqRanges):
            return NotImplemented
        return self._firsts == other._firsts and self._lasts == other._lasts

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f'SeqRanges({self.to_json()})'
