"""`lekiwi-fleet-server flags list | show | set | step | delete | events | plan`.

The same changes as the REST API, checked by the same models, appended as events with the
actor `cli:<user>`; a running server picks them up at its next flag tick (it replays a flag
whose stream version moved).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from lekiwi_fleet_server.settings import Settings


def add_parser(sub: Any) -> None:
    """Add the `flags` command and its sub-commands."""
    flags = sub.add_parser('flags', help='feature flags and migration plans')
    cmd = flags.add_subparsers(dest='flags_command', required=True)
    cmd.add_parser('list', help='list the flags')
    show = cmd.add_parser('show', help="show a flag and its events (who changed what)")
    show.add_argument('name')
    set_ = cmd.add_parser('set', help='create a flag or replace its definition (JSON as the '
                          'REST body: kind, default, variants, rules, steps, guards, '
                          'parameters)')
    set_.add_argument('name')
    source = set_.add_mutually_exclusive_group(required=True)
    source.add_argument('--json', help='the definition')
    source.add_argument('--file', help='a file holding it (- for stdin)')
    set_.add_argument('--step', type=int, default=0, help='a new flag starts at this step '
                      '(index into steps; -1 off)')
    step = cmd.add_parser('step', help='advance, step back or set the step (percentage)')
    step.add_argument('name')
    step.add_argument('action', choices=('advance', 'back', 'set'))
    step.add_argument('--percentage', type=float, help="for 'set': one of the steps, or 0")
    delete = cmd.add_parser('delete', help='delete a flag')
    delete.add_argument('name')
    plan = cmd.add_parser('plan', help="give a flag a migration plan, pause or resume it")
    plan.add_argument('name')
    plan.add_argument('action', choices=('set', 'pause', 'resume'))
    plan.add_argument('--soak-s', type=float, default=600.0)
    plan.add_argument('--min-applied', type=float, default=0.8)


def flag_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run a `flags` sub-command; return the exit status."""
    from pydantic import ValidationError

    from lekiwi_fleet_server.api.routes.flags import FlagBody, PlanIn, flag_out
    from lekiwi_fleet_server.cli import _cli_actor
    from lekiwi_fleet_server.domain.flags import FlagError
    from lekiwi_fleet_server.flags.engine import FlagEngine, FlagRefused, UnknownFlag
    from lekiwi_fleet_server.releases_cli import open_release_store
    from lekiwi_fleet_server.store.factory import open_store
    from lekiwi_fleet_server.store.flags import FlagStore
    from lekiwi_fleet_server.store.interface import ConcurrencyConflict

    open_store(settings).close()  # migrates the database when the settings ask for it
    releases = open_release_store(settings)
    store = FlagStore(releases.engine)
    engine = FlagEngine(store, None, None, now=time.time)
    by = _cli_actor()
    say = sys.stdout.write

    async def run() -> int:
        await engine.load()
        command = args.flags_command
        if command == 'list':
            for state in engine.live():
                flag = state.flag
                plan = '' if state.plan is None else (
                    ' plan ' + ('paused' if state.plan.paused else f'soak {state.plan.soak_s:g} s'))
                say(f'{flag.name}\t{flag.kind}\t{flag.percentage:g} %\tdefault '
                    f'{json.dumps(flag.default)}\t{len(flag.rules)} rules\t'
                    f'{len(flag.guards)} guards{plan}\n')
            return 0
        if command == 'show':
            say(json.dumps(flag_out(engine.get(args.name)), indent=2) + '\n')
            for event in await asyncio.to_thread(store.events, args.name):
                say(f'{event.version}\t{event.recorded_at:.0f}\t{event.actor}\t'
                    f'{event.event.summary()}\n')
            return 0
        if command == 'set':
            text = args.json if args.json is not None else (
                sys.stdin.read() if args.file == '-' else Path(args.file).read_text())
            body = FlagBody.model_validate_json(text).model_dump()
            known = {s.flag.name for s in engine.live()}
            if args.name in known:
                state = await engine.change(args.name, body, by=by)
            else:
                state = await engine.create({**body, 'name': args.name}, step=args.step, by=by)
        elif command == 'step':
            state = await engine.step(args.name, args.action, by=by, to=args.percentage)
        elif command == 'delete':
            state = await engine.delete(args.name, by=by)
        else:
            plan = PlanIn(soak_s=args.soak_s, min_applied=args.min_applied)
            state = await engine.plan(args.name, args.action, by=by, soak_s=plan.soak_s,
                                      min_applied=plan.min_applied)
        say(f'flag {state.flag.name}: {state.flag.percentage:g} % (step {state.flag.step}), '
            f'version {state.version}{" deleted" if state.deleted else ""}\n')
        return 0

    try:
        return asyncio.run(run())
    except UnknownFlag as exc:
        print(f'lekiwi-fleet-server flags: no flag {exc.args[0]}', file=sys.stderr)
    except (FlagRefused, FlagError, ConcurrencyConflict, ValidationError, OSError) as exc:
        print(f'lekiwi-fleet-server flags: {exc}', file=sys.stderr)
    finally:
        releases.engine.dispose()
    return 1
