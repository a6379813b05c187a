"""`lekiwi-fleet-server admission list|accept|reject`: decide admission requests from a shell.

Pending requests live in the running server (each waits on its robot's open connection), so
the CLI asks that server over its REST API rather than the database: `--server` (default
http://<api_host>:<api_port>) with an admin's bearer token (`--token`, else the environment's
LEKIWI_ADMIN_TOKEN, else the bootstrap admin token of the settings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any, TextIO

from lekiwi_fleet_server.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `admission` command to the CLI's subcommands."""
    p = sub.add_parser('admission', help='list, accept or reject robots asking admission')
    p.add_argument('action', choices=('list', 'accept', 'reject'))
    p.add_argument('robot_id', nargs='?', help='the robot to accept or reject')
    p.add_argument('--fingerprint', help='decide only if the request has this key fingerprint')
    p.add_argument('--tag', action='append', default=[], help='a tag of the accepted robot')
    p.add_argument('--server', help='the REST API (default http://<api_host>:<api_port>)')
    p.add_argument('--token', help='an admin bearer token (default $LEKIWI_ADMIN_TOKEN)')
    p.add_argument('--json', action='store_true', help='print JSON instead of a table')


def _call(url: str, token: str, body: dict[str, Any] | None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method='GET' if body is None else 'POST',
                                     headers={'Authorization': f'Bearer {token}',
                                              'Content-Type': 'application/json'})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (http(s) only)
        return json.loads(response.read())


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    """Do the admission action against the running server; return the exit status."""
    out = out or sys.stdout
    server = (args.server or settings.public_url
              or f'http://{settings.api_host}:{settings.api_port}').rstrip('/')
    if not server.startswith(('http://', 'https://')):
        print(f'admission: --server must be an http(s) URL, not {server!r}', file=sys.stderr)
        return 2
    token = args.token or os.environ.get('LEKIWI_ADMIN_TOKEN') or settings.bootstrap_admin_token
    if not token:
        print('admission: an admin token is needed (--token or LEKIWI_ADMIN_TOKEN)',
              file=sys.stderr)
        return 2
    base = f'{server}/api/v1/inventory/admissions'
    if args.action != 'list' and not args.robot_id:
        print(f'admission {args.action}: name the robot', file=sys.stderr)
        return 2
    body: dict[str, Any] = {'fingerprint': args.fingerprint}
    if args.action == 'accept':
        body['tags'] = args.tag
    try:
        if args.action == 'list':
            result = _call(base, token, None)
        else:
            result = _call(f'{base}/{args.robot_id}/{args.action}', token, body)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get('detail', exc.reason)
        except ValueError:
            detail = exc.reason
        print(f'admission {args.action}: {exc.code}: {detail}', file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f'admission: cannot reach {server}: {exc}', file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True), file=out)
    elif args.action == 'list':
        print(f'{"ROBOT":<24} {"FINGERPRINT":<50} {"ADDRESS":<16}', file=out)
        for request in result:
            print(f'{request["robot_id"]:<24} {request["fingerprint"]:<50} '
                  f'{request["address"] or "-":<16}', file=out)
    else:
        print(f'{result["robot_id"]}: {result["status"]} (key {result["fingerprint"]})', file=out)
        if result.get('delivered') is False:  # the accept/disconnect race (gateway/admissions)
            print('  its connection closed as it was accepted: the token waits for the same '
                  'key to ask again', file=out)
    return 0
