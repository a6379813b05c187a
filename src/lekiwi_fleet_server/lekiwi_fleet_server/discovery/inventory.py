"""The inventory: every robot found, by any source, merged into one entry per robot.

Pure: sources report sightings with their time; the inventory answers with the entries that
changed, so the shell can publish them. An entry is keyed by robot id; an endpoint seen before
its robot id is known (a rosbridge server found by a scan) is keyed by its address until a
later sighting names the robot, and is then merged into that robot's entry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any


class Source(str, Enum):
    """How a robot was found."""

    UPLINK = 'uplink'  # it dialled in over its uplink WebSocket
    MDNS = 'mdns'  # it announces _lekiwi._tcp over mDNS
    SCAN = 'scan'  # an active scan reached its status endpoint
    ROSBRIDGE = 'rosbridge'  # a stock rosbridge_server answered a rosbridge v2 exchange


@dataclass(frozen=True, slots=True)
class Sighting:
    """One source saw one robot (or one endpoint whose robot is not known yet)."""

    source: Source
    seen_at: float
    robot_id: str | None = None
    address: str | None = None
    port: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # versions, status port, ...

    @property
    def key(self) -> str:
        """Return the inventory key: the robot id, else the endpoint."""
        if self.robot_id is not None:
            return self.robot_id
        return endpoint_key(self.source, self.address, self.port)


def endpoint_key(source: Source, address: str | None, port: int | None) -> str:
    """Return the key of an endpoint whose robot is not known yet."""
    return f'{source.value}@{address}:{port}'


@dataclass(frozen=True, slots=True)
class SourceSeen:
    """When and where one source last saw an entry."""

    last_seen: float
    address: str | None
    port: int | None
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class InventoryEntry:
    """One robot (or not yet identified endpoint) and every source that found it."""

    key: str
    robot_id: str | None
    sources: Mapping[Source, SourceSeen]
    first_seen: float
    enrolled: bool = False
    admission: str | None = None  # 'pending' while an admission request waits

    @property
    def last_seen(self) -> float:
        """Return the newest sighting over all sources."""
        return max(s.last_seen for s in self.sources.values())

    @property
    def address(self) -> str | None:
        """Return the address of the newest sighting that has one."""
        seen = [s for s in self.sources.values() if s.address]
        return max(seen, key=lambda s: s.last_seen).address if seen else None

    @property
    def status(self) -> str:
        """Return 'enrolled', 'pending' (admission asked) or 'discovered' (found, unknown)."""
        if self.enrolled:
            return 'enrolled'
        return 'pending' if self.admission == 'pending' else 'discovered'

    def detail(self, name: str) -> Any:
        """Return a detail (e.g. agent_version) from the newest source that reported it."""
        for seen in sorted(self.sources.values(), key=lambda s: -s.last_seen):
            if name in seen.details:
                return seen.details[name]
        return None


@dataclass(frozen=True, slots=True)
class InventoryChange:
    """An entry added, updated or removed (`entry` None); `merged_from` names a folded key."""

    key: str
    entry: InventoryEntry | None
    merged_from: str | None = None


class Inventory:
    """Merge sightings of every source; withdraw and expire them per source."""

    def __init__(self, ttl_s: Mapping[Source, float | None] | None = None) -> None:
        # A source with a TTL has its sightings expire after it (a scan result, an mDNS
        # record); None keeps them until withdrawn (the uplink withdraws on disconnect).
        self._ttl = dict(ttl_s or {})
        self._entries: dict[str, InventoryEntry] = {}
        self._enrolled: set[str] = set()
        self._pending: set[str] = set()
        # No sighting expires before this (a lower bound: sightings are only ever renewed), so
        # `expire`, called four times a second, skips its pass over every entry until then.
        self._next_expiry = math.inf

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> InventoryEntry | None:
        """Return the entry of a robot id or endpoint key."""
        return self._entries.get(key)

    def entries(self, *, source: Source | None = None, enrolled: bool | None = None
                ) -> list[InventoryEntry]:
        """Return the entries, filtered by a source that saw them and enrolment, by key."""
        out = []
        for key in sorted(self._entries):
            entry = self._entries[key]
            if source is not None and source not in entry.sources:
                continue
            if enrolled is not None and entry.enrolled != enrolled:
                continue
            out.append(entry)
        return out

    def observe(self, sighting: Sighting) -> list[InventoryChange]:
        """Record a sighting; return the changes (a merge yields a removal and an update)."""
        changes: list[InventoryChange] = []
        key = sighting.key
        seen = SourceSeen(sighting.seen_at, sighting.address, sighting.port,
                          dict(sighting.details))
        if (ttl := self._ttl.get(sighting.source)) is not None:
            self._next_expiry = min(self._next_expiry, sighting.seen_at + ttl)
        entry = self._entries.get(key)
        merged_from = None
        if sighting.robot_id is not None:
            # The endpoint may have been listed anonymously before (found by a scan or a
            # browse before its robot id was known): fold it into the robot's entry.
            anon = endpoint_key(sighting.source, sighting.address, sighting.port)
            folded = self._entries.pop(anon, None)
            if folded is not None:
                merged_from = anon
                changes.append(InventoryChange(anon, None))
                entry = _merge(entry, folded)
        if entry is None:
            entry = InventoryEntry(key, sighting.robot_id, {}, sighting.seen_at)
        entry = replace(entry, key=key, robot_id=sighting.robot_id)
        sources = dict(entry.sources)
        sources[sighting.source] = seen
        entry = replace(entry, sources=sources, enrolled=key in self._enrolled,
                        admission='pending' if key in self._pending else None)
        self._entries[key] = entry
        changes.append(InventoryChange(key, entry, merged_from))
        return changes

    def withdraw(self, source: Source, key: str) -> list[InventoryChange]:
        """Forget what one source said of an entry (mDNS goodbye, uplink closed)."""
        entry = self._entries.get(key)
        if entry is None or source not in entry.sources:
            return []
        return [self._drop_sources(entry, {source})]

    def expire(self, now: float) -> list[InventoryChange]:
        """Drop sightings older than their source's TTL; entries left with none go."""
        if now <= self._next_expiry:
            return []
        changes = []
        next_expiry = math.inf
        for entry in list(self._entries.values()):
            old = set()
            for src, seen in entry.sources.items():
                if (ttl := self._ttl.get(src)) is None:
                    continue
                if now - seen.last_seen > ttl:
                    old.add(src)
                else:
                    next_expiry = min(next_expiry, seen.last_seen + ttl)
            if old:
                changes.append(self._drop_sources(entry, old))
        self._next_expiry = next_expiry
        return changes

    def set_enrolled(self, robot_ids: Iterable[str]) -> list[InventoryChange]:
        """Replace the set of enrolled robots (from the store); return entries that changed."""
        self._enrolled = set(robot_ids)
        return self._refresh_flags()

    def mark_enrolled(self, robot_id: str) -> None:
        """Note one robot as enrolled before its next sighting (it authenticated)."""
        self._enrolled.add(robot_id)

    def set_pending(self, robot_ids: Iterable[str]) -> list[InventoryChange]:
        """Replace the set of robots whose admission waits for an admin."""
        self._pending = set(robot_ids)
        return self._refresh_flags()

    def _refresh_flags(self) -> list[InventoryChange]:
        changes = []
        for key, entry in list(self._entries.items()):
            enrolled = key in self._enrolled
            admission = 'pending' if key in self._pending else None
            if entry.enrolled != enrolled or entry.admission != admission:
                entry = replace(entry, enrolled=enrolled, admission=admission)
                self._entries[key] = entry
                changes.append(InventoryChange(key, entry))
        return changes

    def _drop_sources(self, entry: InventoryEntry, sources: set[Source]) -> InventoryChange:
        left = {s: seen for s, seen in entry.sources.items() if s not in sources}
        if not left:
            del self._entries[entry.key]
            return InventoryChange(entry.key, None)
        entry = replace(entry, sources=left)
        self._entries[entry.key] = entry
        return InventoryChange(entry.key, entry)


def _merge(entry: InventoryEntry | None, folded: InventoryEntry) -> InventoryEntry:
    """Merge an anonymous endpoint's sightings into a robot's entry (newest per source)."""
    if entry is None:
        return folded
    sources = dict(folded.sources)
    for src, seen in entry.sources.items():
        other = sources.get(src)
        if other is None or seen.last_seen >= other.last_seen:
            sources[src] = seen
    return replace(entry, sources=sources, first_seen=min(entry.first_seen, folded.first_seen))


def entry_as_dict(entry: InventoryEntry) -> dict[str, Any]:
    """Return the JSON view of an entry (REST, CLI, stream)."""
    return {
        'key': entry.key,
        'robot_id': entry.robot_id,
        'status': entry.status,
        'enrolled': entry.enrolled,
        'address': entry.address,
        'first_seen': entry.first_seen,
        'last_seen': entry.last_seen,
        'agent_version': entry.detail('agent_version'),
        'software_version': entry.detail('software_version'),
        'sources': {src.value: {'last_seen': seen.last_seen, 'address': seen.address,
                                'port': seen.port, **dict(seen.details)}
                    for src, seen in sorted(entry.sources.items(), key=lambda kv: kv[0].value)},
    }
