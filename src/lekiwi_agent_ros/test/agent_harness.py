"""Real rclpy plumbing for the agent node tests: a RosHarness on the agent's own executor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ros_harness import RosHarness, wait_for

__all__ = ['AgentHarness', 'agent_harness', 'wait_for']


class AgentHarness(RosHarness):
    """One rclpy context; the executor the agent uses spins in a background thread."""

    def __init__(self) -> None:
        """Spin the agent's executor (the EventsExecutor where rclpy has it)."""
        super().__init__('events')


@contextmanager
def agent_harness() -> Iterator[AgentHarness]:
    """Yield a harness and always tear it down."""
    harness = AgentHarness()
    try:
        yield harness
    finally:
        harness.close()
