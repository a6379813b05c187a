"""A dict-backed FleetStore for gateway tests that need to make the store fail on purpose.

Implements only what the gateway touches (commits, credentials, presence) with the contract's
semantics: idempotent commits, acks of duplicates, robots' online flag. SQL stores are tested
by their own contract suite; the gateway tests also run against them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from lekiwi_fleet_server.store.interface import (
    BatchResult,
    MessageKey,
    PresenceChange,
    RobotCredentials,
    RobotMessage,
    RobotSummary,
    StoreUnavailable,
)


class MemoryStore:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.credentials: dict[str, RobotCredentials] = {}
        self.messages: dict[tuple[str, str, int], RobotMessage] = {}
        self.online: dict[str, bool] = {}
        self.presence_log: list[PresenceChange] = []
        self.down = False  # while True every call raises StoreUnavailable
        self.commit_delay_s = 0.0
        self.commits = 0
        self.forgotten: list[str] = []  # robots the gateway told the writer to forget

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable('memory store is down (test)')

    def enrol(self, robot_id: str, token_sha256: str) -> None:
        self.credentials[robot_id] = RobotCredentials(robot_id, token_sha256, False)

    def revoke_robot(self, robot_id: str, *, now: float) -> None:
        old = self.credentials[robot_id]
        self.credentials[robot_id] = RobotCredentials(robot_id, old.token_sha256, True)

    def robot_credentials(self, robot_id: str) -> RobotCredentials | None:
        self._check()
        return self.credentials.get(robot_id)

    def commit_batch(self, messages: Sequence[RobotMessage],
                     presence: Sequence[PresenceChange] = (), *, now: float,
                     while_committing: Callable[[BatchResult], None] | None = None
                     ) -> BatchResult:
        import time
        if self.commit_delay_s:
            time.sleep(self.commit_delay_s)
        with self.lock:
            self._check()
            acked, duplicates, changed = [], 0, {}
            for m in messages:
                key = (m.robot_id, m.boot_id, m.seq)
                if key in self.messages:
                    duplicates += 1
                else:
                    self.messages[key] = m
                acked.append(MessageKey(*key))
                changed[m.robot_id] = RobotSummary(m.robot_id, (), 'online', 0.0, False,
                                                   last_seq=m.seq, boot_id=m.boot_id)
            for change in presence:
                self.online[change.robot_id] = change.online
                self.presence_log.append(change)
            self.commits += 1
            result = BatchResult(tuple(acked), duplicates, tuple(changed.values()), ())
            if while_committing is not None:
                while_committing(result)
            return result

    def forget_robots(self, robot_ids: Sequence[str]) -> None:
        self.forgotten.extend(robot_ids)

    def flush_state(self, *, now: float) -> int:
        return 0  # every message is stored at once: no readings wait for a flush

    def mark_all_offline(self, *, now: float, reason: str = 'server_restart') -> int:
        self._check()
        count = sum(self.online.values())
        self.online = dict.fromkeys(self.online, False)
        return count

    def close(self) -> None:
        pass
