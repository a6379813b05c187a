"""`import-legacy`: enrol an inventory's robots and configure the poller, idempotently."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lekiwi_fleet_server.api.admin import enrol_robot
from lekiwi_fleet_server.legacy.hosts_file import load_hosts, save_hosts
from lekiwi_fleet_server.legacy.inventory import format_of, merge_hosts, parse_inventory
from lekiwi_fleet_server.store.interface import FleetStore


@dataclass(slots=True)
class ImportReport:
    """What an import did; an import run twice reports nothing enrolled or changed."""

    enrolled: list[str] = field(default_factory=list)
    already_enrolled: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)  # listed, but revoked: not polled
    hosts_changed: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # of the robots enrolled now


def import_legacy(store: FleetStore, inventory: Path, hosts_file: Path, *, now: float
                  ) -> ImportReport:
    """Enrol the inventory's new robots and merge its hosts into the poller's file."""
    hosts = parse_inventory(inventory.read_text(encoding='utf-8'), format_of(inventory.name))
    report = ImportReport()
    polled = []
    for host in hosts:
        credentials = store.robot_credentials(host.robot_id)
        if credentials is None:
            enrolment = enrol_robot(store, host.robot_id, host.tags, now=now)
            report.enrolled.append(host.robot_id)
            report.tokens[host.robot_id] = enrolment.token
        elif credentials.revoked:
            report.revoked.append(host.robot_id)
            continue
        else:
            report.already_enrolled.append(host.robot_id)
        polled.append(host)
    merged, report.hosts_changed = merge_hosts(load_hosts(hosts_file), polled)
    if report.hosts_changed:
        save_hosts(hosts_file, merged)
    return report


def write_tokens(path: Path, tokens: dict[str, str]) -> None:
    """Append `robot_id,token` lines to a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, 'a', encoding='utf-8') as handle:
        for robot_id, token in tokens.items():
            handle.write(f'{robot_id},{token}\n')
