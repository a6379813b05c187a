"""Serve the built web dashboard (index.html and its hashed assets) from the server itself.

Robots' and labs' networks are often offline, so nothing comes from a CDN. The bundle is built
from src/lekiwi_fleet_server/web (scripts/build_dashboard.sh, run by the test and demo
commands) into the package's `dashboard_dist/`; without it `/` says how to build it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

DEFAULT_DIR = Path(__file__).resolve().parent.parent / 'dashboard_dist'

# Everything from this origin; the live stream is a WebSocket to the same host.
CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
       "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")


def mount_dashboard(app: FastAPI, directory: Path | None) -> None:
    """Serve the dashboard at /ui/ (and redirect / there)."""
    root = (directory or DEFAULT_DIR).resolve()
    index = root / 'index.html'

    @app.get('/', include_in_schema=False)
    def home() -> Response:
        return RedirectResponse('/ui/')

    @app.get('/ui/', include_in_schema=False)
    def dashboard() -> Response:
        if not index.is_file():
            return PlainTextResponse(
                f'dashboard not built: run scripts/build_dashboard.sh (looked in {root})',
                status_code=503)
        return FileResponse(index, headers={'Content-Security-Policy': CSP,
                                            'Cache-Control': 'no-cache',
                                            'X-Content-Type-Options': 'nosniff'})

    # check_dir=False: the app starts without a built bundle (API-only installs, unit tests).
    app.mount('/ui/assets', StaticFiles(directory=root / 'assets', check_dir=False),
              name='dashboard-assets')
