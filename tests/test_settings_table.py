"""The README's settings table is the one scripts/settings_table.py makes from `Settings`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'scripts' / 'settings_table.py'


def test_readme_table_matches_settings() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), '--check'], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_table_names_every_setting_once() -> None:
    from lekiwi_fleet_server.settings import Settings

    table = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                           check=True).stdout
    rows = [line for line in table.splitlines() if line.startswith('| `LEKIWI_')]
    names = [row.split('`')[1] for row in rows]
    assert names == [f'LEKIWI_{n.upper()}' for n in Settings.model_fields]
    assert all(row.rstrip(' |').split('|')[-1].strip() for row in rows), 'a setting lacks a meaning'


def test_check_fails_on_a_stale_table(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / 'scripts'))
    try:
        import settings_table
    finally:
        sys.path.pop(0)
    readme = (ROOT / 'README.md').read_text(encoding='utf-8')
    stale = readme.replace('`LEKIWI_STALE_AFTER_S`', '`LEKIWI_STALE_AFTER`')
    assert stale != readme
    assert settings_table.replaced(stale, settings_table.table()) == readme
