"""Dashboard updates as deltas: per robot, only what changed since the update before.

A heartbeat changes a few of a robot's summary fields (its time, seq, a couple of resource
readings), yet a whole summary is about 620 bytes: at 10,000 robots, whole summaries made each
dashboard's stream 7.4 MB a second (1.8 MB with deltas, measured by tests/bench/gateway.py).
`SummaryDeltas` remembers, per robot, the summary the updates have carried so far and turns
each new summary into the difference:

- a robot it has not seen comes whole (every field), so a delta always lands on a whole row;
- otherwise `robot_id` and every field whose value changed; in the mapping fields (`resources`,
  `telemetry`), only the entries that changed, and an entry that went away as null;
- a robot whose summary did not change is left out.

A subscriber applies a delta by setting its fields, merging the mapping fields entry by entry,
onto the row it holds from the snapshot it got first. That is exact: the stream subscribes
before it reads the snapshot, and an update is published only after its batch committed, so
every update the subscriber missed is already in its snapshot.

The memory follows only what was published: `remember` after a batch's update went out,
`forget` for robots whose change went out without an update (nobody listened, so a later
subscriber may hold an older snapshot of them). Pure: no I/O, no clock.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from lekiwi_fleet_server.store.interface import RobotSummary

_MAPPINGS = ('resources', 'telemetry')
# The plain fields in two groups, each fetched as a tuple by one C call and compared at once:
# those a heartbeat changes, and those that change rarely (status, versions, tags, ...).
_OFTEN = ('last_heartbeat_at', 'last_seq', 'heartbeat_sequence')
_RARE = tuple(f.name for f in fields(RobotSummary)
              if f.name not in ('robot_id', *_MAPPINGS, *_OFTEN))
_GROUPS = tuple((names, operator.attrgetter(*names)) for names in (_OFTEN, _RARE))
_MISSING = object()

# What an update carries per robot: a whole summary (orjson encodes the dataclass) or a delta.
Row = RobotSummary | dict[str, Any]


def mapping_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Return the entries of `after` that differ from `before`, and removed ones as None."""
    out = {k: v for k, v in after.items()
           if (old := before.get(k, _MISSING)) is not v and old != v}
    for k in before.keys() - after.keys():
        out[k] = None
    return out


def summary_delta(before: RobotSummary, after: RobotSummary) -> dict[str, Any] | None:
    """Return `after` as a delta from `before` (robot_id always), None when nothing changed."""
    delta: dict[str, Any] = {'robot_id': after.robot_id}
    for names, get in _GROUPS:
        new_values, old_values = get(after), get(before)
        if new_values != old_values:
            for name, new, old in zip(names, new_values, old_values, strict=True):
                if new is not old and new != old:
                    delta[name] = new
    for name in _MAPPINGS:
        new_map, old_map = getattr(after, name), getattr(before, name)
        if new_map is not old_map and new_map != old_map:
            part = mapping_delta(old_map, new_map)
            if part:
                delta[name] = part
    return delta if len(delta) > 1 else None


def apply_delta(row: dict[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """Return a subscriber's row with a delta applied (what a dashboard does; tests use it)."""
    out = dict(row)
    for name, value in delta.items():
        if name in _MAPPINGS and isinstance(value, Mapping):
            out[name] = {**(out.get(name) or {}), **value}
        else:
            out[name] = value
    return out


class SummaryDeltas:
    """The summaries the published updates have carried, per robot; deltas against them."""

    def __init__(self) -> None:
        self._sent: dict[str, RobotSummary] = {}

    def __len__(self) -> int:
        return len(self._sent)

    def rows(self, summaries: Sequence[RobotSummary]) -> list[Row]:
        """Return the update rows of changed summaries (does not change the memory)."""
        sent = self._sent
        out: list[Row] = []
        for summary in summaries:
            before = sent.get(summary.robot_id)
            if before is None:
                out.append(summary)
            elif before is not summary:
                delta = summary_delta(before, summary)
                if delta is not None:
                    out.append(delta)
        return out

    def remember(self, summaries: Iterable[RobotSummary]) -> None:
        """Record summaries whose update was published."""
        for summary in summaries:
            self._sent[summary.robot_id] = summary

    def forget(self, robot_ids: Iterable[str]) -> None:
        """Drop robots whose change went out without an update: their next row comes whole."""
        for robot_id in robot_ids:
            self._sent.pop(robot_id, None)
