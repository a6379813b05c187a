"""Run agent nodes in one executor: the `main()` of every node executable and of the agent.

- The cheapest executor this rclpy has: the EventsExecutor where it exists (Kilted), spun with
  `spin_once(timeout_sec=1.0)` because rclpy 9.1.2's `EventsExecutor.spin()` busy-loops
  (ENVIRONMENT.md); the SingleThreadedExecutor elsewhere (Jazzy).
- A graceful stop on SIGINT and SIGTERM: rclpy's own signal handler would shut the context down
  before any node could say goodbye, so this module handles the signals itself. Nodes are then
  destroyed in the order they were built, and the executor keeps serving the nodes still alive
  for a moment after each one: a node that publishes on its way out (teleop_monitor ends an open
  session) is heard by the uplink, which is built last and stores the message in its outbox.
- A configuration a node refuses (ValueError), a port it cannot bind (OSError) or a Python
  dependency missing or too old (ImportError, with the instruction of dependencies.py) is
  logged and ends the process with exit code 2.
- Once running, an exception escaping one callback is logged with its traceback and the loop
  goes on: in the one-process agent a bug in one node's service or timer must not stop the
  heartbeat, the teleop monitor and the uplink with it.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

NodeFactory = Callable[[], Sequence[Any]]
EXIT_REFUSED = 2
DRAIN_S = 0.3  # how long the remaining nodes are served after one goes away


def make_executor(context: Any = None) -> Any:
    """Return the cheapest executor this rclpy has that runs timers, services and actions."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:  # Jazzy's rclpy has no EventsExecutor
        from rclpy.executors import SingleThreadedExecutor

        return SingleThreadedExecutor(context=context)
    return EventsExecutor(context=context)


class _StopFlag:
    """Remembers a SIGINT or SIGTERM; the spin loop looks at it between waits.

    A flag, not an exception raised from the handler: an exception could cut a callback (an
    outbox write) in half. The loop notices the flag within one spin_once timeout (1 s).
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.signal_name = signal.Signals(signum).name


def run_nodes(factory: NodeFactory, args: Sequence[str] | None, name: str) -> int:
    """Init rclpy, build the nodes, spin them in one executor until stopped; return exit code."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=None if args is None else list(args),
               signal_handler_options=SignalHandlerOptions.NO)
    stop = _StopFlag()
    # Signal handlers can only be set from the main thread (tests run main() in threads).
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    logger = rclpy.logging.get_logger(name)
    nodes: list[Any] = []
    executor = None
    code = 0
    try:
        nodes = list(factory())
        executor = make_executor()
        for node in nodes:
            executor.add_node(node)
        while rclpy.ok() and stop.signal_name is None:
            try:
                executor.spin_once(timeout_sec=1.0)
            except (KeyboardInterrupt, ExternalShutdownException):
                raise
            except Exception as exc:  # noqa: BLE001 - one callback's bug must not stop the rest
                logger.error(
                    f'a callback failed, the other callbacks keep running: {exc!r}\n'
                    f'{traceback.format_exc()}'
                )
        logger.info(f'stopping on {stop.signal_name or "shutdown"}')
    except (KeyboardInterrupt, ExternalShutdownException):
        logger.info('stopping')
    except (ValueError, OSError) as exc:  # a refused parameter or an unusable port: say which
        logger.fatal(str(exc))
        code = EXIT_REFUSED
    except ImportError as exc:  # a dependency missing or too old: say how to install it
        from lekiwi_agent_ros.dependencies import explain

        logger.fatal(explain(exc))
        code = EXIT_REFUSED
    finally:
        try:
            _destroy_draining(nodes, executor)
        finally:
            if executor is not None:
                executor.shutdown()
            rclpy.try_shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return code


def _destroy_draining(nodes: list[Any], executor: Any) -> None:
    """Destroy nodes first to last, serving the rest briefly after each (see module docstring)."""
    import rclpy

    for index, node in enumerate(nodes):
        if executor is not None:
            executor.remove_node(node)
        node.destroy_node()
        if executor is None or index == len(nodes) - 1 or not rclpy.ok():
            continue
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            try:
                executor.spin_once(timeout_sec=0.05)
            except Exception as exc:
                # An event of the node just destroyed may still be queued (the EventsExecutor
                # keeps them): it fails harmlessly and must not stop the others' goodbyes.
                rclpy.logging.get_logger('node_runner').debug(f'during shutdown: {exc}')
