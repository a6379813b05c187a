"""DiagnosticsPublisher: a node's statuses (diagnostics.py) on /diagnostics once a second."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lekiwi_agent_ros.diagnostics import Status

# diagnostic_updater's topic: absolute on purpose, the aggregator and tools read /diagnostics.
DIAGNOSTICS_TOPIC = '/diagnostics'


class DiagnosticsPublisher:
    """Publish what `statuses()` returns as one DiagnosticArray every `period_s`."""

    def __init__(self, node: Any, statuses: Callable[[], Sequence[Status]],
                 period_s: float = 1.0) -> None:
        """Create the publisher and its timer on `node`."""
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        self._classes = DiagnosticArray, DiagnosticStatus, KeyValue
        self._node = node
        self._statuses = statuses
        self._publisher = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 1)
        self._timer = node.create_timer(period_s, self.publish)

    def publish(self) -> None:
        """Publish the statuses now."""
        array_type, status_type, key_value = self._classes
        array = array_type()
        array.header.stamp = self._node.get_clock().now().to_msg()
        for status in self._statuses():
            array.status.append(status_type(
                level=bytes([status.level]), name=status.name, message=status.message,
                hardware_id=status.hardware_id,
                values=[key_value(key=k, value=v) for k, v in status.values]))
        self._publisher.publish(array)
