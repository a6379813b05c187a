"""Compile a message validator into one straight-line function that only says valid or not.

protocol.py's validators are small closures, one per field, that explain what is wrong; a
heartbeat takes about thirty calls of them, several microseconds, for every frame the writer
decodes. Each closure carries a `spec` of what it checks; `compile_fast` turns a validator's
spec tree into the source of one function without calls or messages, about three times faster.
The gateway runs it first and asks the explaining validator only when it says no: so the two
must accept exactly the same values (tested against each other).

Specs: ('int', lo, hi), ('num',) (number or null), ('bool',), ('str', max_length or None,
pattern or None), ('array', item validator, max_items), ('object', ((name, validator), ...),
optional names).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

FastCheck = Callable[[Any], bool]


def compile_fast(check: Callable[[Any], object]) -> FastCheck:
    """Return a function telling whether `check` would accept a value (check(v) is None)."""
    lines = ['def fast(v):']
    env: dict[str, Any] = {}
    _emit(check, 'v', lines, 1, env, itertools.count())
    lines.append('    return True')
    exec('\n'.join(lines), env)  # noqa: S102 - the source is built here from constants
    fast: FastCheck = env['fast']
    return fast


def _emit(check: Callable[[Any], object], var: str, lines: list[str], depth: int,
          env: dict[str, Any], names: Iterator[int]) -> None:
    pad = '    ' * depth
    spec = check.spec  # type: ignore[attr-defined]
    kind = spec[0]
    if kind == 'int':
        lines.append(f'{pad}if type({var}) is not int or not {spec[1]} <= {var} <= {spec[2]}:'
                     f' return False')
    elif kind == 'num':
        lines.append(f'{pad}if not (type({var}) is float or type({var}) is int'
                     f' or {var} is None): return False')
    elif kind == 'bool':
        lines.append(f'{pad}if type({var}) is not bool: return False')
    elif kind == 'str':
        lines.append(f'{pad}if type({var}) is not str: return False')
        if spec[1] is not None:
            lines.append(f'{pad}if len({var}) > {spec[1]}: return False')
        if spec[2] is not None:
            match = f'_match{next(names)}'
            env[match] = spec[2].fullmatch
            lines.append(f'{pad}if {match}({var}) is None: return False')
    elif kind == 'array':
        item = f'_item{next(names)}'
        lines.append(f'{pad}if type({var}) is not list or len({var}) > {spec[2]}: return False')
        lines.append(f'{pad}for {item} in {var}:')
        _emit(spec[1], item, lines, depth + 1, env, names)
    elif kind == 'object':
        lines.append(f'{pad}if type({var}) is not dict: return False')
        optional = spec[2] if len(spec) > 2 else frozenset()
        for name, field_check in spec[1]:
            value = f'_value{next(names)}'
            if name in optional:
                # Left out is fine; present, it is checked like any other field.
                lines.append(f'{pad}if {name!r} in {var}:')
                lines.append(f'{pad}    {value} = {var}[{name!r}]')
                _emit(field_check, value, lines, depth + 1, env, names)
                continue
            lines.append(f'{pad}if {name!r} not in {var}: return False')
            lines.append(f'{pad}{value} = {var}[{name!r}]')
            _emit(field_check, value, lines, depth, env, names)
    else:  # pragma: no cover - a validator without a known spec is a programming error
        raise ValueError(f'cannot compile validator spec {spec!r}')
