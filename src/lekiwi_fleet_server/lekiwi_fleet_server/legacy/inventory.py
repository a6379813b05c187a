"""Legacy inventory files (CSV or YAML): which robots are polled over SSH, and how.

A row names a robot id, its SSH host and user, and optionally a port and tags:

    robot_id,host,user,port,tags
    kiwi-001,10.0.4.21,lekiwi,22,lab;arm-v2

or, in YAML, a list of mappings (or a mapping with a `robots` list) of the same keys, `tags`
a list. Parsing is pure: the CLI reads the file, the server stores what this returns.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROBOT_ID = re.compile(r'^[A-Za-z0-9._-]{1,64}$')
TAG = re.compile(r'^[A-Za-z0-9._:/-]{1,64}$')  # as api/admin.py's
# A host name or an IPv4/IPv6 literal: no spaces, no option-looking leading dash.
HOST = re.compile(r'^[A-Za-z0-9_.:\[\]%-]{1,253}$')
USER = re.compile(r'^[a-z_][a-z0-9_.-]{0,31}$')
KEYS = ('robot_id', 'host', 'user', 'port', 'tags')
MAX_HOSTS = 100_000


class InventoryError(ValueError):
    """The inventory cannot be used; the message names the row and the field."""


@dataclass(frozen=True, slots=True)
class LegacyHost:
    """One robot polled the old way."""

    robot_id: str
    host: str
    user: str
    port: int = 22
    tags: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Return the host as plain JSON-able values."""
        return {'robot_id': self.robot_id, 'host': self.host, 'user': self.user,
                'port': self.port, 'tags': list(self.tags)}


def parse_inventory(text: str, fmt: str) -> list[LegacyHost]:
    """Parse an inventory of format 'csv' or 'yaml'; raise InventoryError on any bad row."""
    if fmt == 'csv':
        rows = _csv_rows(text)
    elif fmt == 'yaml':
        rows = _yaml_rows(text)
    else:
        raise InventoryError(f'unknown inventory format {fmt!r} (csv or yaml)')
    return hosts_from_rows(rows)


def format_of(filename: str) -> str:
    """Return the inventory format a file name says ('csv' or 'yaml')."""
    lower = filename.lower()
    if lower.endswith('.csv'):
        return 'csv'
    if lower.endswith(('.yaml', '.yml')):
        return 'yaml'
    raise InventoryError(f'{filename}: name the file .csv, .yaml or .yml')


def hosts_from_rows(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> list[LegacyHost]:
    """Validate (where, row) pairs into hosts; robot ids must be unique."""
    hosts: list[LegacyHost] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        host = _host_of(where, row)
        if host.robot_id in seen:
            raise InventoryError(f'{where}: robot {host.robot_id!r} is listed twice '
                                 f'(first at {seen[host.robot_id]})')
        seen[host.robot_id] = where
        hosts.append(host)
        if len(hosts) > MAX_HOSTS:
            raise InventoryError(f'more than {MAX_HOSTS} robots in one inventory')
    return hosts


def _csv_rows(text: str) -> list[tuple[str, Mapping[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise InventoryError('empty inventory')
    fields = [f.strip() for f in reader.fieldnames]
    missing = [k for k in ('robot_id', 'host', 'user') if k not in fields]
    if missing:
        raise InventoryError(f'header: missing column(s) {", ".join(missing)}')
    unknown = [f for f in fields if f not in KEYS]
    if unknown:
        raise InventoryError(f'header: unknown column(s) {", ".join(unknown)}')
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for number, raw in enumerate(reader, start=2):
        if None in raw:
            raise InventoryError(f'line {number}: more values than columns')
        row = {k.strip(): (v or '').strip() for k, v in raw.items()}
        if not any(row.values()):
            continue  # a blank line
        tags = row.get('tags', '')
        row['tags'] = [t for t in (s.strip() for s in tags.split(';')) if t] if tags else []
        if row.get('port', '') == '':
            row.pop('port', None)
        rows.append((f'line {number}', row))
    return rows


def _yaml_rows(text: str) -> list[tuple[str, Mapping[str, Any]]]:
    import yaml  # deferred: only the import command reads YAML

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InventoryError(f'not valid YAML: {exc}') from None
    if isinstance(data, Mapping):
        data = data.get('robots')
    if not isinstance(data, list):
        raise InventoryError('YAML inventory must be a list of robots (or {robots: [...]})')
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for index, item in enumerate(data):
        if not isinstance(item, Mapping):
            raise InventoryError(f'robot #{index + 1}: must be a mapping')
        rows.append((f'robot #{index + 1}', item))
    return rows


def _host_of(where: str, row: Mapping[str, Any]) -> LegacyHost:
    unknown = sorted(str(k) for k in row if k not in KEYS)
    if unknown:
        raise InventoryError(f'{where}: unknown field(s) {", ".join(unknown)}')
    robot_id = _text(where, row, 'robot_id', ROBOT_ID)
    host = _text(where, row, 'host', HOST)
    if host.startswith('-'):
        raise InventoryError(f'{where}: host must not start with "-"')
    user = _text(where, row, 'user', USER)
    port_value = row.get('port', 22)
    try:
        if isinstance(port_value, bool):
            raise ValueError
        port = int(port_value)
    except (TypeError, ValueError):
        raise InventoryError(f'{where}: port must be an integer, not {port_value!r}') from None
    if not 1 <= port <= 65535:
        raise InventoryError(f'{where}: port must be 1..65535, not {port}')
    tags_value = row.get('tags', [])
    if isinstance(tags_value, str):
        tags_value = [tags_value]
    if not isinstance(tags_value, list):
        raise InventoryError(f'{where}: tags must be a list')
    tags: list[str] = []
    for tag in tags_value:
        if not isinstance(tag, str) or not TAG.match(tag):
            raise InventoryError(f'{where}: tag {tag!r} must be 1-64 of [A-Za-z0-9._:/-]')
        if tag not in tags:
            tags.append(tag)
    return LegacyHost(robot_id, host, user, port, tuple(sorted(tags)))


def _text(where: str, row: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise InventoryError(f'{where}: {key} is required')
    if not pattern.match(value):
        raise InventoryError(f'{where}: {key} {value[:80]!r} is not valid')
    return value


def merge_hosts(existing: Sequence[LegacyHost], imported: Sequence[LegacyHost]
                ) -> tuple[list[LegacyHost], list[str]]:
    """Return the poller's hosts after an import, and the robot ids it added or changed."""
    merged = {h.robot_id: h for h in existing}
    changed = [h.robot_id for h in imported if merged.get(h.robot_id) != h]
    for host in imported:
        merged[host.robot_id] = host
    return sorted(merged.values(), key=lambda h: h.robot_id), changed
