"""The poller's configured hosts, kept as a JSON file in the server's data directory.

The file is written whole to a temporary file and renamed over the old one, so a reader (the
running server polls it for changes) sees the old list or the new one, never half of either.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from lekiwi_fleet_server.legacy.inventory import InventoryError, LegacyHost, hosts_from_rows


def load_hosts(path: Path) -> list[LegacyHost]:
    """Return the hosts of the file; none when it does not exist."""
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise InventoryError(f'{path}: unreadable ({exc})') from None
    if not isinstance(data, dict) or not isinstance(data.get('hosts'), list):
        raise InventoryError(f'{path}: expected {{"hosts": [...]}}')
    return hosts_from_rows((f'{path} host #{i + 1}', row)
                           for i, row in enumerate(data['hosts']) if isinstance(row, dict))


def save_hosts(path: Path, hosts: list[LegacyHost]) -> None:
    """Replace the file with these hosts, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({'hosts': [h.as_dict() for h in hosts]}, indent=2, sort_keys=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text + '\n')
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
