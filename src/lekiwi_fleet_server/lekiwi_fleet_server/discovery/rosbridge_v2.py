"""The rosbridge v2 operations discovery and server-dialled ingest use, checked to the spec.

Pure. Field names and types follow ROSBRIDGE_PROTOCOL.md of rosbridge_suite (3.2.3 publish,
3.2.4 subscribe, 3.2.8 call_service, 3.2.9 service_response). A stock `rosbridge_server`
answers a `call_service` with a `service_response` carrying the call's id, `result` false if
the service does not exist: either answer identifies a rosbridge v2 server, which an open
port alone would not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# rosapi ships with rosbridge_server's launch files; the probe does not need it to exist.
PROBE_SERVICE = '/rosapi/get_time'


class RosbridgeError(ValueError):
    """A frame that is not valid rosbridge v2."""


def call_service_frame(call_id: str, service: str = PROBE_SERVICE) -> str:
    """Encode a `call_service` (3.2.8) with no args."""
    return json.dumps({'op': 'call_service', 'id': call_id, 'service': service, 'args': []})


def subscribe_frame(sub_id: str, topic: str, msg_type: str | None = None,
                    queue_length: int = 100) -> str:
    """Encode a `subscribe` (3.2.4)."""
    frame: dict[str, Any] = {'op': 'subscribe', 'id': sub_id, 'topic': topic,
                             'queue_length': queue_length}
    if msg_type is not None:
        frame['type'] = msg_type
    return json.dumps(frame)


def decode(payload: str | bytes) -> dict[str, Any]:
    """Decode a frame into a JSON object with a string `op`, or raise RosbridgeError."""
    try:
        frame = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RosbridgeError(f'not JSON: {exc}') from None
    if not isinstance(frame, dict) or not isinstance(frame.get('op'), str):
        raise RosbridgeError('a rosbridge frame is a JSON object with a string op')
    return frame


def is_service_response_to(frame: Mapping[str, Any], call_id: str) -> bool:
    """Tell whether a frame is a valid `service_response` (3.2.9) to the call `call_id`."""
    return (frame.get('op') == 'service_response' and frame.get('id') == call_id
            and isinstance(frame.get('service'), str) and type(frame.get('result')) is bool)


def published(frame: Mapping[str, Any], topics: Iterable[str]) -> tuple[str, dict[str, Any]]:
    """Return (topic without leading slash, msg) of a `publish` (3.2.3) on one of `topics`."""
    topic, msg = frame.get('topic'), frame.get('msg')
    if frame.get('op') != 'publish' or not isinstance(topic, str):
        raise RosbridgeError("a publish needs op 'publish' and a string topic")
    name = topic.lstrip('/')
    wanted = {t.lstrip('/') for t in topics}
    if name not in wanted:
        raise RosbridgeError(f'not a subscribed topic: {topic!r}')
    if not isinstance(msg, dict):
        raise RosbridgeError(f'{topic}: msg must be a JSON object')
    return name, msg
