"""What the legacy source does with each poll (pure: no SSH, no gateway, no clock of its own).

Per robot it keeps the connection-like things an agent would have: a boot id of this server
process's polling (`legacy-<16 hex>`) and the next `seq` in it, whether the robot is shown
online, and whether it has been flagged for a silent agent. Decisions:
- A robot whose agent holds an uplink connection is not polled: the poller stops for it.
- A robot that has never run the agent: a poll that answers is a heartbeat (and online, if it
  was not); one that does not is offline (once, with the reason).
- A robot that has run the agent (its newest heartbeat came from one) but holds no uplink
  while SSH answers: its agent is silent. That is flagged once, as a warning event, and no
  legacy heartbeat is made for it: the agent's own readings and versions are not overwritten
  by coarser ones, and its presence stays what the gateway says (offline).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lekiwi_fleet_server.legacy.inventory import LegacyHost
from lekiwi_fleet_server.legacy.poller import PollResult
from lekiwi_fleet_server.legacy.status import heartbeat_msg

SEVERITY_WARNING = 2  # FleetEvent.SEVERITY_WARNING
AGENT_SILENT_EVENT = 'legacy.agent_silent'


@dataclass(frozen=True, slots=True)
class Frame:
    """A publish the source hands to the ingest, as an uplink would send it."""

    robot_id: str
    topic: str
    boot_id: str
    seq: int
    msg: dict[str, Any]

    def as_publish(self) -> dict[str, Any]:
        """Return the rosbridge `publish` frame."""
        return {'op': 'publish', 'topic': self.topic, 'boot_id': self.boot_id,
                'seq': self.seq, 'msg': self.msg}


@dataclass(frozen=True, slots=True)
class Presence:
    """A presence change the source decided."""

    robot_id: str
    online: bool
    reason: str  # 'legacy_poll' or 'legacy_unreachable'


@dataclass(slots=True)
class RoundOutcome:
    """What one round's results ask the ingest to take."""

    frames: list[Frame] = field(default_factory=list)
    presence: list[Presence] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)  # robots newly flagged: agent silent


@dataclass(slots=True)
class _Robot:
    boot_id: str
    seq: int = 0
    online: bool = False
    flagged: bool = False


class LegacyTracker:
    """Turn poll results into heartbeats, presence changes and agent-silent flags."""

    def __init__(self, new_boot_id: Callable[[], str] | None = None) -> None:
        self._new_boot_id = new_boot_id or (lambda: f'legacy-{secrets.token_hex(8)}')
        self._robots: dict[str, _Robot] = {}

    def due(self, hosts: Iterable[LegacyHost], connected: Callable[[str], bool]
            ) -> list[LegacyHost]:
        """Return the hosts to poll now: those whose agent holds no uplink connection."""
        due = []
        for host in hosts:
            if connected(host.robot_id):
                robot = self._robots.get(host.robot_id)
                if robot is not None:
                    # The agent took over: it owns presence now, and a later silence of it
                    # is a new episode to flag.
                    robot.online = False
                    robot.flagged = False
                continue
            due.append(host)
        return due

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the robots no longer in the inventory."""
        wanted = set(keep)
        for robot_id in [r for r in self._robots if r not in wanted]:
            del self._robots[robot_id]

    def on_results(self, results: Sequence[PollResult], has_agent: Callable[[str], bool],
                   now: float, connected: Callable[[str], bool] = lambda _robot: False
                   ) -> RoundOutcome:
        """Decide what a round's results mean.

        `connected` is asked again here: an agent that dialled in while its robot was being
        polled owns it from then on, so that poll's result is dropped.
        """
        out = RoundOutcome()
        for result in results:
            robot_id = result.host.robot_id
            if connected(robot_id):
                continue
            robot = self._robots.get(robot_id)
            if robot is None:
                robot = self._robots[robot_id] = _Robot(self._new_boot_id())
            if has_agent(robot_id):
                if result.reading is not None and not robot.flagged:
                    robot.flagged = True
                    out.flagged.append(robot_id)
                    out.frames.append(self._event(robot, result, now))
                continue
            if result.reading is None:
                if robot.online:
                    robot.online = False
                    out.presence.append(Presence(robot_id, False, 'legacy_unreachable'))
                continue
            if not robot.online:
                robot.online = True
                out.presence.append(Presence(robot_id, True, 'legacy_poll'))
            robot.seq += 1
            out.frames.append(Frame(robot_id, 'fleet/heartbeat', robot.boot_id, robot.seq,
                                    heartbeat_msg(result.reading, robot_id=robot_id,
                                                  boot_id=robot.boot_id, sequence=robot.seq,
                                                  now=now)))
        return out

    def _event(self, robot: _Robot, result: PollResult, now: float) -> Frame:
        robot.seq += 1
        sec = int(now)
        payload = {'host': result.host.host, 'port': result.host.port,
                   'detail': 'SSH answers but the agent holds no uplink connection'}
        return Frame(result.host.robot_id, 'fleet/events', robot.boot_id, robot.seq, {
            'header': {'stamp': {'sec': sec, 'nanosec': int((now - sec) * 1e9)},
                       'frame_id': ''},
            'robot_id': result.host.robot_id, 'boot_id': robot.boot_id,
            'sequence': robot.seq, 'severity': SEVERITY_WARNING,
            'event_type': AGENT_SILENT_EVENT, 'payload_json': json.dumps(payload)})
