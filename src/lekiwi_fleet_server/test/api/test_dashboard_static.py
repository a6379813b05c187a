"""The server serves the built dashboard itself: /ui/ with a strict CSP, assets, and a clear
answer when the bundle is not built; the GraphQL schema export writes the SDL."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from lekiwi_fleet_server.api.dashboard import mount_dashboard
from lekiwi_fleet_server.graphql.export import main as export_main
from lekiwi_fleet_server.graphql.export import schema_sdl


def client_for(directory: Path) -> TestClient:
    app = FastAPI()
    mount_dashboard(app, directory)
    return TestClient(app)


def test_serves_index_and_assets_with_a_strict_csp(tmp_path: Path) -> None:
    (tmp_path / 'assets').mkdir()
    (tmp_path / 'index.html').write_text('<!doctype html><div id="app"></div>')
    (tmp_path / 'assets' / 'index-abc.js').write_text('console.log(1)')
    client = client_for(tmp_path)
    home = client.get('/', follow_redirects=False)
    assert home.status_code == 307 and home.headers['location'] == '/ui/'
    page = client.get('/ui/')
    assert page.status_code == 200 and 'id="app"' in page.text
    assert "default-src 'self'" in page.headers['content-security-policy']
    assert "frame-ancestors 'none'" in page.headers['content-security-policy']
    asset = client.get('/ui/assets/index-abc.js')
    assert asset.status_code == 200 and asset.text == 'console.log(1)'
    assert client.get('/ui/assets/../index.html').status_code in (404, 200)
    assert client.get('/ui/assets/missing.js').status_code == 404


def test_says_how_to_build_when_the_bundle_is_missing(tmp_path: Path) -> None:
    page = client_for(tmp_path / 'nothing').get('/ui/')
    assert page.status_code == 503 and 'scripts/build_dashboard.sh' in page.text


def test_export_writes_the_schema(tmp_path: Path) -> None:
    target = tmp_path / 'schema.graphql'
    assert export_main([str(target)]) == 0
    assert target.read_text() == schema_sdl()
    assert 'robotChanges' in target.read_text()
