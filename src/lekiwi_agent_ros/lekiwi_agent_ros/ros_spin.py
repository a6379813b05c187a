"""Spin a standalone node cheaply on every rclpy: the EventsExecutor where it exists."""

from __future__ import annotations

from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node


def make_executor() -> Executor:
    """Return the cheapest executor this rclpy has: the EventsExecutor where it exists."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:  # pragma: no cover - an rclpy without it: the classic one, at more CPU
        return SingleThreadedExecutor()
    return EventsExecutor()


def spin(node: Node, executor: Executor) -> None:
    """Spin until the node's context shuts down, one event at a time.

    A spin_once loop rather than spin(): the Kilted wheel's EventsExecutor.spin() busy-loops
    (ENVIRONMENT.md), while spin_once() waits properly on every executor.
    """
    executor.add_node(node)
    while node.context.ok():
        executor.spin_once(timeout_sec=1.0)
