"""Headless Chromium for dashboard tests and benchmarks: Debian's chromium driven by Playwright.

Playwright never downloads a browser here: it runs /usr/bin/chromium (scripts/ensure_chromium.sh
installs it) with the flags that work on these machines (see ENVIRONMENT.md).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get('LEKIWI_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-quic', '--no-first-run', '--disable-component-update',
                 '--disable-sync']
DASHBOARD_DIST = ROOT / 'src/lekiwi_fleet_server/lekiwi_fleet_server/dashboard_dist'
ARTIFACTS = Path(os.environ.get('LEKIWI_TEST_ARTIFACTS', ROOT / 'tests/artifacts'))


def missing_browser() -> str | None:
    """Return why no browser test can run here, or None when one can."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return 'playwright is not installed (requirements/dev.txt)'
    if not os.access(CHROMIUM, os.X_OK):
        return f'{CHROMIUM} is missing: scripts/ensure_chromium.sh installs it'
    return None


def build_dashboard() -> Path:
    """Build the dashboard bundle (fast when nothing changed) and return its directory."""
    subprocess.run([str(ROOT / 'scripts/build_dashboard.sh')], check=True, timeout=600)
    return DASHBOARD_DIST


@contextmanager
def chromium(viewport: tuple[int, int] = (1400, 900)) -> Iterator[object]:
    """Yield a new Playwright page of a headless Chromium; close everything afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                    headless=True)
        try:
            context = browser.new_context(viewport={'width': viewport[0],
                                                    'height': viewport[1]})
            yield context.new_page()
        finally:
            browser.close()
