"""ROS messages to rosbridge JSON dicts and back, driven by the generated classes' field types.

rosidl_runtime_py (message_to_ordereddict, set_message_fields) is not installable here, so this
module walks `get_fields_and_field_types()` itself. Encoding follows rosbridge v2: field names as
in the .msg file, nested messages as objects, `uint8[]`/`octet[]` as base64 strings, and (JSON
having no NaN) a non-finite float as null. float32 fields are written with the fewest digits that
read back to the same float32 (0.7, not 0.699999988079071): same value, far fewer bytes uplinked.
"""

from __future__ import annotations

import array
import base64
import importlib
import math
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

_F32 = struct.Struct('<f')
_F32_MAX = 3.4028234663852886e38
_INT_RANGES = {
    'int8': (-(2**7), 2**7 - 1),
    'uint8': (0, 2**8 - 1),
    'int16': (-(2**15), 2**15 - 1),
    'uint16': (0, 2**16 - 1),
    'int32': (-(2**31), 2**31 - 1),
    'uint32': (0, 2**32 - 1),
    'int64': (-(2**63), 2**63 - 1),
    'uint64': (0, 2**64 - 1),
}
_BYTE_TYPES = frozenset({'uint8', 'octet'})
_ARRAY = re.compile(r'^(?P<inner>.+)\[(?P<size>\d+)\]$')
# rosidl writes a bounded string as 'string<255>'; IDL spells it 'string<=255>'.
_BOUNDED_STRING = re.compile(r'^(?P<kind>w?string)<=?(?P<bound>\d+)>?$')


class RosJsonError(ValueError):
    """A JSON value does not fit the message field it is meant for."""


@dataclass(frozen=True)
class FieldType:
    """A parsed rosidl field type: a scalar, a message, or a sequence/array of them."""

    base: str  # 'float', 'uint64', 'string', 'boolean', ... or 'pkg/Name' for a message
    container: str = ''  # '', 'sequence' or 'array'
    size: int | None = None  # bound of a sequence or length of an array
    string_bound: int | None = None  # bound of a (w)string<=N base

    @property
    def is_message(self) -> bool:
        """Tell whether the base type is a message type."""
        return '/' in self.base


@cache
def parse_field_type(type_str: str) -> FieldType:
    """Parse a type string of get_fields_and_field_types(), e.g. 'sequence<float, 5>'."""
    if type_str.startswith('sequence<') and type_str.endswith('>'):
        # 'sequence<string<4>, 3>': the bound, if any, follows the last comma
        inner = type_str[len('sequence<') : -1]
        head, comma, tail = inner.rpartition(',')
        bound = None
        if comma and tail.strip().isdigit():
            inner, bound = head, int(tail)
        element = _parse_scalar(inner.strip())
        return FieldType(element.base, 'sequence', bound, element.string_bound)
    match = _ARRAY.match(type_str)
    if match:
        element = _parse_scalar(match['inner'].strip())
        return FieldType(element.base, 'array', int(match['size']), element.string_bound)
    return _parse_scalar(type_str)


def _parse_scalar(type_str: str) -> FieldType:
    match = _BOUNDED_STRING.match(type_str)
    if match:
        return FieldType(match['kind'], string_bound=int(match['bound']))
    return FieldType(type_str)


@cache
def _fields(cls: Any) -> tuple[tuple[str, FieldType], ...]:
    return tuple(
        (name, parse_field_type(type_str))
        for name, type_str in cls.get_fields_and_field_types().items()
    )


def message_class(type_name: str) -> type:
    """Return the class of 'pkg/Name' or 'pkg/msg/Name' (a message type)."""
    parts = type_name.split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3 or not all(parts):
        raise RosJsonError(f'not a message type name: {type_name!r}')
    try:
        return getattr(importlib.import_module(f'{parts[0]}.{parts[1]}'), parts[2])
    except (ImportError, AttributeError) as exc:
        raise RosJsonError(f'unknown message type {type_name!r}') from exc


def shortest_float32(value: float) -> float | None:
    """Return float32 `value` with the fewest decimal digits that keep it; None if not finite."""
    if not math.isfinite(value):
        return None
    for digits in (6, 7, 8):
        candidate = float(f'{value:.{digits}g}')
        if _F32.unpack(_F32.pack(candidate))[0] == value:
            return candidate
    return value


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_json(msg: Any) -> dict[str, Any]:
    """Encode a ROS message as a rosbridge JSON-ready dict."""
    cls: Any = type(msg)
    return {name: _value_to_json(getattr(msg, name), field) for name, field in _fields(cls)}


def _value_to_json(value: Any, field: FieldType) -> Any:
    if field.container:
        if field.base in _BYTE_TYPES:
            raw = b''.join(value) if field.base == 'octet' else bytes(value)
            return base64.b64encode(raw).decode('ascii')
        convert = _scalar_encoder(field.base)
        return [convert(item) for item in value]
    return _scalar_encoder(field.base)(value)


def _scalar_encoder(base: str) -> Callable[[Any], Any]:
    if base == 'float':
        return shortest_float32
    if base in ('double', 'long double'):
        return _finite_or_none
    if '/' in base:
        return to_json
    if base == 'octet':
        return lambda value: value[0] if isinstance(value, bytes | bytearray) else int(value)
    return _identity


def _identity(value: Any) -> Any:
    return value


def from_json(cls: type, data: Any, path: str = '') -> Any:
    """Build a message of class `cls` from a rosbridge JSON dict; raise RosJsonError if bad.

    Fields left out keep their defaults, as in rosbridge; unknown fields are an error.
    """
    where = path or cls.__name__
    if not isinstance(data, Mapping):
        raise RosJsonError(f'{where}: expected an object, got {_kind(data)}')
    fields = dict(_fields(cls))
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RosJsonError(f'{where}: unknown field(s) {", ".join(map(str, unknown))}')
    msg = cls()
    for name, value in data.items():
        field_path = f'{where}.{name}'
        converted = _value_from_json(value, fields[name], field_path)
        try:
            setattr(msg, name, converted)
        except (AssertionError, TypeError, ValueError) as exc:
            raise RosJsonError(f'{field_path}: {exc}') from exc
    return msg


def _value_from_json(value: Any, field: FieldType, path: str) -> Any:
    if not field.container:
        return _scalar_from_json(value, field, path)
    if field.base in _BYTE_TYPES and isinstance(value, str):
        try:
            items: Iterable[Any] = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise RosJsonError(f'{path}: not valid base64') from exc
    elif isinstance(value, list):
        items = value
    else:
        raise RosJsonError(f'{path}: expected an array, got {_kind(value)}')
    items = list(items)
    if field.container == 'array' and len(items) != field.size:
        raise RosJsonError(f'{path}: expected {field.size} items, got {len(items)}')
    if field.container == 'sequence' and field.size is not None and len(items) > field.size:
        raise RosJsonError(f'{path}: at most {field.size} items, got {len(items)}')
    element = FieldType(field.base, string_bound=field.string_bound)
    converted = [_scalar_from_json(item, element, f'{path}[{i}]') for i, item in enumerate(items)]
    if field.base == 'uint8' and field.container == 'sequence':
        return array.array('B', converted)
    return converted


def _scalar_from_json(value: Any, field: FieldType, path: str) -> Any:
    base = field.base
    if field.is_message:
        return from_json(message_class(base), value, path)
    if base in ('float', 'double', 'long double'):
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RosJsonError(f'{path}: expected a number, got {_kind(value)}')
        number = float(value)
        if base == 'float' and math.isfinite(number) and abs(number) > _F32_MAX:
            raise RosJsonError(f'{path}: {value} is out of float32 range')
        return number
    if base in _INT_RANGES or base == 'octet':
        if isinstance(value, bool) or not isinstance(value, int):
            raise RosJsonError(f'{path}: expected an integer, got {_kind(value)}')
        low, high = _INT_RANGES.get(base, (0, 255))
        if not low <= value <= high:
            raise RosJsonError(f'{path}: {value} is out of range {low}..{high} ({base})')
        return bytes([value]) if base == 'octet' else value
    if base == 'boolean':
        if not isinstance(value, bool):
            raise RosJsonError(f'{path}: expected true or false, got {_kind(value)}')
        return value
    if base in ('string', 'wstring'):
        if not isinstance(value, str):
            raise RosJsonError(f'{path}: expected a string, got {_kind(value)}')
        if field.string_bound is not None and len(value) > field.string_bound:
            raise RosJsonError(
                f'{path}: at most {field.string_bound} characters, got {len(value)}'
            )
        return value
    raise RosJsonError(f'{path}: unsupported field type {base!r}')


def _kind(value: Any) -> str:
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'a boolean'
    if isinstance(value, int | float):
        return f'the number {value!r}'
    if isinstance(value, str):
        return 'a string'
    if isinstance(value, list):
        return 'an array'
    if isinstance(value, Mapping):
        return 'an object'
    return type(value).__name__
