"""`lekiwi-fleet-server serve | migrate | enrol | revoke | rotate-token | create-operator |
create-account | discover | import-legacy | release push | rebuild-projections | verify |
backup | restore`.

Settings come from the environment (`LEKIWI_*`); a few flags override them. Tokens are printed
once, on their own line, and never again: only their hashes are stored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import logging
import os
import resource
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import uvicorn
from pydantic import ValidationError

from lekiwi_fleet_server.settings import Settings

log = logging.getLogger('lekiwi_fleet_server')


def raise_nofile_limit() -> int:
    """Raise the open-file limit to the hard limit (one socket per robot); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='lekiwi-fleet-server', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--database-url', help='overrides LEKIWI_DATABASE_URL')
    sub = parser.add_subparsers(dest='command', required=True)
    serve = sub.add_parser('serve', help='run the REST API and the robot gateway')
    serve.add_argument('--api-host')
    serve.add_argument('--api-port', type=int)
    serve.add_argument('--gateway-host')
    serve.add_argument('--gateway-port', type=int)
    # Roles (issue 17): with LEKIWI_NATS_URL set they may run on different hosts.
    serve.add_argument('--role', choices=('all', 'gateway', 'api', 'writer'), default='all',
                       help='all (default): everything in this process; gateway: robots and '
                            'the API; api: the API without robots; writer: writer shards only '
                            '(gateway, api and writer need LEKIWI_NATS_URL)')
    serve.add_argument('--shard', type=int, action='append', dest='shards',
                       help='with --role writer: a writer shard to run (repeatable; default '
                            'every shard)')
    sub.add_parser('migrate', help='apply database migrations')
    enrol = sub.add_parser('enrol', help='enrol a robot and print its token once')
    enrol.add_argument('robot_id')
    enrol.add_argument('--tag', action='append', default=[], help='repeatable')
    enrol.add_argument('--reenrol', action='store_true',
                       help='enrol a revoked robot again, with a new token')
    revoke = sub.add_parser('revoke', help="revoke a robot's token")
    revoke.add_argument('robot_id')
    rotate = sub.add_parser('rotate-token',
                            help="give a robot a new token, print it once (the old one stops)")
    rotate.add_argument('robot_id')
    operator = sub.add_parser('create-operator', help='create an operator, print its token once')
    operator.add_argument('name')
    operator.add_argument('--role', choices=('admin', 'operator', 'viewer'), required=True)
    account = sub.add_parser('create-account',
                             help='create a password account (the password is read from stdin)')
    account.add_argument('name')
    account.add_argument('--role', choices=('admin', 'operator', 'viewer'), required=True)
    from lekiwi_fleet_server.discovery import cli_admission, cli_discover

    cli_discover.add_parser(sub)
    cli_admission.add_parser(sub)
    legacy = sub.add_parser('import-legacy',
                            help='enrol the robots of a legacy inventory (CSV or YAML) and '
                                 'configure the SSH poller for them; idempotent')
    legacy.add_argument('file', help='inventory: robot_id, host, user[, port, tags]')
    legacy.add_argument('--tokens-out', help="append new robots' tokens (robot_id,token) to "
                                             'this file, created 0600; default: not kept')
    release = sub.add_parser('release', help='manage releases')
    release_sub = release.add_subparsers(dest='release_command', required=True)
    push = release_sub.add_parser('push', help='store a directory tree as a release')
    push.add_argument('directory')
    push.add_argument('--version', required=True)
    _recovery_commands(sub)
    from lekiwi_fleet_server.flags.cli import add_parser as add_flag_commands

    add_flag_commands(sub)  # feature flags (issue 20)
    return parser


def _recovery_commands(sub: Any) -> None:
    sub.add_parser('rebuild-projections',
                   help='replay the event log into emptied read models (stop the server first)')
    sub.add_parser('verify', help='check the read models against a replay (changes nothing), '
                                  'stream versions and sequence coverage; exit 1 on a finding')
    backup = sub.add_parser('backup', help='back the database and blob store up into DIR')
    backup.add_argument('directory', type=Path)
    restore = sub.add_parser('restore', help='restore a backup into an empty database')
    restore.add_argument('directory', type=Path)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ('database_url', 'api_host', 'api_port', 'gateway_host', 'gateway_port'):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f'lekiwi-fleet-server: invalid settings:\n{exc}', file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    if args.command == 'serve':
        if args.role != 'all' and not settings.nats_url:
            print(f'lekiwi-fleet-server: --role {args.role} needs LEKIWI_NATS_URL (a broker '
                  'between the roles)', file=sys.stderr)
            return 2
        if args.role == 'writer':
            return serve_writer(settings, args.shards)
        return serve(settings, args.role)
    if args.command == 'create-account':
        return _account_command(args, settings)
    if args.command == 'admission':
        from lekiwi_fleet_server.discovery import cli_admission

        return cli_admission.run(args, settings)
    if args.command == 'discover':
        from lekiwi_fleet_server.discovery import cli_discover

        return cli_discover.run(args, settings)
    if args.command == 'release':
        from lekiwi_fleet_server.releases_cli import release_command
        return release_command(args, settings)
    if args.command == 'flags':  # feature flags (issue 20)
        from lekiwi_fleet_server.flags.cli import flag_command
        return flag_command(args, settings)
    if args.command in RECOVERY_COMMANDS:
        return _recovery_command(args, settings)
    return _admin_command(args, settings)


def _account_command(args: argparse.Namespace, settings: Settings) -> int:
    from lekiwi_fleet_server.api.accounts import AccountService
    from lekiwi_fleet_server.domain.login_throttle import LoginThrottle
    from lekiwi_fleet_server.store.accounts import SqlAccountStore
    from lekiwi_fleet_server.store.factory import open_store
    from lekiwi_fleet_server.store.interface import StoreError

    password = sys.stdin.readline().rstrip('\n')  # never on the command line: ps shows it
    open_store(settings).close()  # migrates the database first
    store = SqlAccountStore.open(settings.resolved_database_url)
    try:
        service = AccountService(store, session_ttl_s=settings.session_ttl_s,
                                 throttle=LoginThrottle(time.time), now=time.time)
        service.create_account(args.name, args.role, password)
        print(f'created {args.role} account {args.name}')
    except (ValueError, StoreError) as exc:
        print(f'lekiwi-fleet-server create-account: {type(exc).__name__}: {exc}',
              file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


RECOVERY_COMMANDS = ('rebuild-projections', 'verify', 'backup', 'restore')


class _Progress:
    """Print replay progress to stderr at most twice a second, and at the end."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._started = time.monotonic()
        self._next = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now >= self._next or done >= total:
            self._next = now + 0.5
            share = 100.0 * done / total if total else 100.0
            rate = done / max(now - self._started, 1e-9)
            print(f'{self._what}: {done}/{total} events ({share:.0f} %, {rate:,.0f}/s)',
                  file=sys.stderr, flush=True)


def _recovery_command(args: argparse.Namespace, settings: Settings) -> int:
    from lekiwi_fleet_server.backup import BackupError, backup, restore
    from lekiwi_fleet_server.db.engine import make_engine
    from lekiwi_fleet_server.store import recovery
    from lekiwi_fleet_server.store.interface import StoreError
    from lekiwi_fleet_server.store.sql_store import translate_errors

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    try:
        if args.command == 'backup':
            backup(settings, args.directory, say)
            return 0
        if args.command == 'restore':
            restore(settings, args.directory, say)
            return 0
        engine = make_engine(settings.resolved_database_url)
        try:
            with translate_errors(args.command):
                if args.command == 'rebuild-projections':
                    replayed = recovery.rebuild_projections(engine, _Progress('rebuild'))
                    print(f'rebuilt projections from {replayed} events in '
                          f'{time.monotonic() - started:.1f} s')
                    return 0
                report = recovery.verify(engine, _Progress('verify'))
        finally:
            engine.dispose()
    except (BackupError, StoreError, ValueError) as exc:
        print(f'lekiwi-fleet-server {args.command}: {exc}', file=sys.stderr)
        return 1
    print('\n'.join(report.lines()))
    return 0 if report.ok else 1


def _admin_command(args: argparse.Namespace, settings: Settings) -> int:
    from lekiwi_fleet_server.api.admin import (
        create_operator,
        enrol_robot,
        reenrol_robot,
        rotate_token,
    )
    from lekiwi_fleet_server.store.factory import open_store
    from lekiwi_fleet_server.store.interface import StoreError

    if args.command == 'migrate':
        settings = settings.model_copy(update={'migrate_on_start': True})
    # Beside a running server the CLI must not load every robot nor catch projections up (the
    # server's writers do both, and catching up beside them collided with their writes): it
    # reads back only the robot it changes.
    store = open_store(settings, preload=args.command == 'migrate')
    try:
        now = time.time()
        if args.command == 'migrate':
            print('database migrated')
        elif args.command == 'enrol':
            if args.reenrol:
                enrolment = reenrol_robot(store, args.robot_id, args.tag, by=_cli_actor(),
                                          now=now)
            else:
                enrolment = enrol_robot(store, args.robot_id, args.tag, now=now,
                                        actor=_cli_actor())
            print(f'enrolled robot {args.robot_id}; its token (shown once):', file=sys.stderr)
            print(enrolment.token)
        elif args.command == 'rotate-token':
            token = rotate_token(store, args.robot_id, by=_cli_actor(), now=now)
            print(f'new token of robot {args.robot_id} (shown once; the old one is refused '
                  'from now on):', file=sys.stderr)
            print(token)
        elif args.command == 'revoke':
            store.revoke_robot(args.robot_id, now=now, actor=_cli_actor())
            print(f'revoked robot {args.robot_id}')
        elif args.command == 'import-legacy':
            return _import_legacy(store, settings, args, now)
        elif args.command == 'create-operator':
            _operator, token = create_operator(store, args.name, args.role, now=now)
            print(f'created {args.role} {args.name}; its token (shown once):', file=sys.stderr)
            print(token)
    except (ValueError, StoreError) as exc:
        print(f'lekiwi-fleet-server {args.command}: {type(exc).__name__}: {exc}',
              file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _import_legacy(store: Any, settings: Settings, args: argparse.Namespace, now: float
                   ) -> int:
    from pathlib import Path

    from lekiwi_fleet_server.legacy.importer import import_legacy, write_tokens
    from lekiwi_fleet_server.legacy.inventory import InventoryError

    try:
        report = import_legacy(store, Path(args.file), settings.resolved_legacy_hosts_file,
                               now=now)
    except (OSError, InventoryError) as exc:
        print(f'lekiwi-fleet-server import-legacy: {exc}', file=sys.stderr)
        return 1
    if args.tokens_out and report.tokens:
        write_tokens(Path(args.tokens_out), report.tokens)
    print(f'enrolled {len(report.enrolled)}, already enrolled {len(report.already_enrolled)}, '
          f'revoked (not polled) {len(report.revoked)}; poller hosts changed: '
          f'{len(report.hosts_changed)} ({settings.resolved_legacy_hosts_file})')
    for robot_id in report.revoked:
        print(f'  {robot_id}: revoked, left out of the poller', file=sys.stderr)
    if report.enrolled and not args.tokens_out:
        print('  tokens of the new robots were not kept: pass --tokens-out FILE to keep them '
              'for installing the agent later', file=sys.stderr)
    return 0


def _cli_actor() -> str:
    """Name who runs an admin command, for the events it records."""
    try:
        return f'cli:{getpass.getuser()}'
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f'cli:uid-{os.getuid()}'


def tune_runtime() -> None:
    """Tune the interpreter for the server once start-up is done (process-wide)."""
    # Long-lived objects made at start (modules, the store's robot states) leave the
    # collector's view, and collections run 70x less often: with the defaults, collections
    # over a heap of 10,000 robots' state stalled commits by 50-100 ms (p99 of a batch of
    # 300 heartbeats 97 ms -> 68 ms measured). The ingest path makes few reference cycles.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # The writer thread holds the GIL in long stretches of Python; a shorter switch
    # interval lets the event loop (acks, new frames) in sooner.
    sys.setswitchinterval(0.001)


def bind_api_socket(host: str, port: int) -> socket.socket:
    """Bind the API socket without listening on it (port 0 → a free one).

    Until uvicorn listens, which it does once the lifespan has built everything, a client's
    connection is refused at once instead of being queued in the backlog and left hanging
    through the start-up (about 1.7 s with a writer process).
    """
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class ListeningServer(uvicorn.Server):
    """uvicorn's server that calls `on_listening` once its sockets listen, not before."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_listening()


def build_server(settings: Settings, *, nofile: int = 0, tune: bool = True,
                 out: TextIO = sys.stdout, role: str = 'all'
                 ) -> tuple[uvicorn.Server, socket.socket]:
    """Build the uvicorn server of the app and bind its API socket (port 0 → a free one)."""
    from lekiwi_fleet_server.api.services import FleetServices
    from lekiwi_fleet_server.app import create_app

    # Bind the API socket ourselves so the real port is known before serving (port 0).
    api_socket = bind_api_socket(settings.api_host, settings.api_port)
    api_port = api_socket.getsockname()[1]
    ready: list[FleetServices] = []

    def announce() -> None:
        if tune:
            tune_runtime()
        # One machine-readable line, printed once the API listens: tests and the benchmark
        # read the ports from it and connect at once.
        gateway = ready[0].gateway
        where = f'ws://{settings.gateway_host}:{gateway.port}/' if gateway.started else 'none'
        print(f'lekiwi-fleet-server ready api=http://{settings.api_host}:{api_port} '
              f'gateway={where} nofile={nofile}', file=out, flush=True)

    settings = settings.model_copy(update={'api_port': api_port})  # the real one (port 0)
    app = create_app(settings, on_ready=ready.append, role=role)
    config = uvicorn.Config(app, log_level=settings.log_level, access_log=False,
                            lifespan='on', ws_max_size=1024 * 1024, loop='asyncio',
                            backlog=2048,
                            server_header=False)  # issue 20: bytes of every polling answer
    return ListeningServer(config, announce), api_socket


def serve(settings: Settings, role: str = 'all') -> int:
    """Run uvicorn (API) and the gateway on one event loop until SIGINT or SIGTERM."""
    server, api_socket = build_server(settings, nofile=raise_nofile_limit(), role=role)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT after shutdown
        asyncio.run(server.serve(sockets=[api_socket]))
    return 0 if server.started else 1


def serve_writer(settings: Settings, shards: Sequence[int] | None) -> int:
    """Run writer shards behind NATS (`serve --role writer`) until SIGINT or SIGTERM."""
    import signal

    from lekiwi_fleet_server.broker.writers import run_writer_role
    from lekiwi_fleet_server.store.interface import StoreUnavailable

    if settings.writer_priority:
        # The writer is ingest's one serial step: when CPU is short it should wait last.
        try:
            os.nice(-settings.writer_priority)
        except OSError as exc:
            log.info('writer keeps its priority (%s): raising it needs CAP_SYS_NICE', exc)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_writer_role(settings, shards, stop)

    try:
        asyncio.run(run())
    except ValueError as exc:  # a shard that is not one of the settings'
        print(f'lekiwi-fleet-server: {exc}', file=sys.stderr)
        return 2
    except StoreUnavailable as exc:  # NATS (or the database) not there in time
        print(f'lekiwi-fleet-server: {exc}', file=sys.stderr)
        return 1
    return 0
