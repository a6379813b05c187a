"""The poller's hosts file: atomic replace, and a clear error for a file it cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from lekiwi_fleet_server.legacy.hosts_file import load_hosts, save_hosts
from lekiwi_fleet_server.legacy.inventory import InventoryError, LegacyHost


def test_saved_hosts_load_back_and_a_missing_file_is_none(tmp_path: Path) -> None:
    path = tmp_path / 'state' / 'legacy-hosts.json'
    assert load_hosts(path) == []
    hosts = [LegacyHost('a', '127.0.0.2', 'root', 2222, ('lab',)), LegacyHost('b', 'h', 'pi')]
    save_hosts(path, hosts)
    assert load_hosts(path) == hosts
    assert [p.name for p in path.parent.iterdir()] == ['legacy-hosts.json']  # no temp left


@pytest.mark.parametrize(('text', 'message'), [
    ('{not json', 'unreadable'),
    ('[]', 'expected {"hosts"'),
    ('{"hosts": [{"robot_id": "a", "host": "h"}]}', 'user is required'),
])
def test_a_bad_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / 'legacy-hosts.json'
    path.write_text(text)
    with pytest.raises(InventoryError, match=None) as info:
        load_hosts(path)
    assert message in str(info.value)


def test_a_failed_save_leaves_the_old_file_and_no_temp(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / 'legacy-hosts.json'
    save_hosts(path, [LegacyHost('a', 'h', 'u')])

    def broken(*_args: object) -> None:
        raise OSError('disk full')

    monkeypatch.setattr('os.replace', broken)
    with pytest.raises(OSError, match='disk full'):
        save_hosts(path, [LegacyHost('b', 'h', 'u')])
    assert load_hosts(path) == [LegacyHost('a', 'h', 'u')]
    assert [p.name for p in tmp_path.iterdir()] == ['legacy-hosts.json']
