"""Python `logging` records into a node's ROS logger, so they reach the console and /rosout.

`webrtc_streamer` runs aiortc, aioice and its own asyncio side on a thread of its process;
they log through Python's `logging`, which ROS does not see. `forward_python_logging(node)`
attaches a handler that hands each record to the node's rcutils logger (thread-safe), so a
peer that connects or an ICE failure shows in `ros2 topic echo /rosout` and `rqt_console`
like the node's own lines. Noisy libraries (aiortc, aioice: every packet at DEBUG, every
state change at INFO) forward WARNING and up; the project's own modules INFO and up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from rclpy.node import Node

DEFAULT_LEVELS: Mapping[str, int] = {
    'lekiwi_agent_ros': logging.INFO,
    'aiortc': logging.WARNING,
    'aioice': logging.WARNING,
    'av': logging.WARNING,
}


class RosLogHandler(logging.Handler):
    """Send Python log records to an rclpy logger."""

    def __init__(self, node: Node) -> None:
        """Log as `node` does (its name, so /rosout carries the node's name)."""
        super().__init__()
        logger = node.get_logger()
        self._by_level: list[tuple[int, Callable[[str], object]]] = [
            (logging.CRITICAL, logger.fatal), (logging.ERROR, logger.error),
            (logging.WARNING, logger.warning), (logging.INFO, logger.info),
            (logging.DEBUG, logger.debug)]

    def emit(self, record: logging.LogRecord) -> None:
        """Forward one record, prefixed with its Python logger's name."""
        try:
            text = f'[{record.name}] {self.format(record)}'
            for level, log in self._by_level:
                if record.levelno >= level or level == logging.DEBUG:
                    log(text)
                    return
        except Exception:  # a logging failure must never break the caller
            self.handleError(record)


def forward_python_logging(
    node: Node, levels: Mapping[str, int] = DEFAULT_LEVELS
) -> Callable[[], None]:
    """Attach a RosLogHandler to each named Python logger; return a function that detaches."""
    handler = RosLogHandler(node)
    attached = []
    for name, level in levels.items():
        logger = logging.getLogger(name)
        previous = (logger.level, logger.propagate)
        logger.setLevel(level)
        logger.addHandler(handler)
        # Not also through the root logger's handlers: one line per record.
        logger.propagate = False
        attached.append((logger, previous))

    def detach() -> None:
        for logger, (level, propagate) in attached:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate

    return detach
