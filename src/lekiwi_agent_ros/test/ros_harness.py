"""Real rclpy plumbing for the node tests: an own context and a spinning executor."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile

from lekiwi_agent_ros.node_runner import make_executor


class RosHarness:
    """One rclpy context whose executor spins in a background thread."""

    def __init__(self, executor: str = 'single') -> None:
        """Spin a 'single' (SingleThreadedExecutor) or the agent's own ('events') executor."""
        self.context = Context()
        rclpy.init(context=self.context)
        # A fresh namespace per test keeps concurrent tests on one DDS domain apart.
        self.namespace = '/t' + uuid.uuid4().hex[:10]
        if executor == 'events':
            # What the one-process agent uses (ENVIRONMENT.md: spin_once in a loop, not spin()).
            self.executor = make_executor(self.context)
        else:
            self.executor = SingleThreadedExecutor(context=self.context)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self._helper: Node | None = None

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def kwargs(self, **parameters: Any) -> dict[str, Any]:
        """Return Node keyword arguments: this harness's context, namespace and parameters."""
        return {
            'context': self.context,
            'namespace': self.namespace,
            'parameter_overrides': [Parameter(k, value=v) for k, v in parameters.items()],
        }

    def add(self, node: Node) -> Node:
        """Spin `node` on the harness executor and return it."""
        self.executor.add_node(node)
        return node

    def remove(self, node: Node) -> None:
        """Stop spinning `node` and destroy it."""
        self.executor.remove_node(node)
        node.destroy_node()

    def node(self, name: str) -> Node:
        """Create and spin a plain helper node in the test namespace."""
        return self.add(Node(name, namespace=self.namespace, context=self.context))

    @property
    def helper(self) -> Node:
        """A plain node for the test's own publishers, subscribers and clients."""
        if self._helper is None:
            self._helper = self.node('test_helper')
        return self._helper

    def collect(self, msg_type: type, topic: str, qos: QoSProfile | int = 10) -> list[Any]:
        """Subscribe with the helper node; return the list the messages are appended to."""
        received: list[Any] = []
        self.helper.create_subscription(msg_type, topic, received.append, qos)
        return received

    def close(self) -> None:
        """Stop spinning, destroy every node and shut the context down."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        for node in list(self.executor.get_nodes()):
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)


@contextmanager
def ros_harness(executor: str = 'single') -> Iterator[RosHarness]:
    """Yield a harness ('single' or 'events' executor) and always tear it down."""
    harness = RosHarness(executor)
    try:
        yield harness
    finally:
        harness.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, period: float = 0.01) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return predicate()
