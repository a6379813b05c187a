"""The uplink's on-disk outbox (SQLite, WAL): every fleet message waits here until acknowledged.

- `put()` gives each message its protocol identity (`boot_id`, `seq`): seq 1, 2, 3, ... within
  this outbox's boot, never reused (a high-water mark per boot is stored with the messages).
- State topics (heartbeat, teleop status) keep only their newest unsent message: a newer one takes
  the older's place and its seq, so sequences have no gaps. They are numbered in a sequence space
  of their own (`state_seq`, protocol lekiwi-fleet/2): history seqs number history messages only,
  so the server's durable record of them stays gap-free. On a lekiwi-fleet/1 connection a state
  message is moved into the history space (`to_history_space`) when it is first sent.
- History topics (events, deployment status, telemetry) are never dropped. Over `max_messages`,
  a topic with a merge policy (telemetry) folds a new message into its newest unsent one.
- A history message may carry a `dedup_key` (the uplink uses a digest of the whole message):
  a key stored before (kept `dedup_window_s`) makes the put a no-op, decided in the same
  transaction as the insert. A transient-local publisher re-delivers its history to every new
  subscriber, so a restarted agent sees events again that it stored before: they are kept once.
- `claim()` hands out messages in id order (= seq order within a boot; older boots first) and
  marks them sent, so they are no longer coalesced or merged: the server may already hold them.
- `remove()` deletes acknowledged messages. Rows left over from an earlier run count as sent and
  are replayed after the next connection.
- One outbox belongs to one robot id and one process. An exclusive `flock` on `<path>.lock`
  (released by the kernel when the process dies, so a crash never leaves a stale lock) refuses a
  second user with `OutboxLockedError`, naming the pid that holds it; the robot id is stored in
  the file and an outbox of another robot is refused (`OutboxOwnerError`), so an agent never
  uploads another robot's messages under its own id.

Thread-safe: ROS callbacks put from the executor thread while the WebSocket thread claims and
removes. Pure apart from its SQLite file; the clock is an argument.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MergePolicy = Callable[[Mapping[str, Any], Mapping[str, Any]], 'dict[str, Any] | None']

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    boot_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    state INTEGER NOT NULL,
    msg TEXT NOT NULL,
    created_at REAL NOT NULL,
    space INTEGER NOT NULL DEFAULT 0,
    UNIQUE (boot_id, space, seq)
);
CREATE INDEX IF NOT EXISTS outbox_by_class ON outbox (state, id);
CREATE TABLE IF NOT EXISTS boots (
    boot_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    last_state_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS seen (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS owner (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    robot_id TEXT NOT NULL
);
"""
_SCHEMA_VERSION = 3  # 2: the owner table (robot id); 3: the state sequence space (`space`)
HISTORY_SPACE, STATE_SPACE = 0, 1
# An entry's key names its sequence space in its boot item: a state seq's boot gets this suffix
# (a boot id is [A-Za-z0-9-], so it cannot end so), and (boot, seq) stays a plain pair.
STATE_KEY_SUFFIX = '/s'
# A file of schema 1 or 2 numbered every message in one space: its rows stay history-space rows.
_MIGRATE_TO_3 = """
ALTER TABLE outbox RENAME TO outbox_v2;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    boot_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    state INTEGER NOT NULL,
    msg TEXT NOT NULL,
    created_at REAL NOT NULL,
    space INTEGER NOT NULL DEFAULT 0,
    UNIQUE (boot_id, space, seq)
);
INSERT INTO outbox (id, boot_id, seq, topic, state, msg, created_at, space)
    SELECT id, boot_id, seq, topic, state, msg, created_at, 0 FROM outbox_v2;
DROP TABLE outbox_v2;
CREATE INDEX IF NOT EXISTS outbox_by_class ON outbox (state, id);
ALTER TABLE boots ADD COLUMN last_state_seq INTEGER NOT NULL DEFAULT 0;
"""


class OutboxError(Exception):
    """The outbox could not store or read a message."""


class OversizeMessageError(OutboxError):
    """A message too large to ever fit in one protocol frame."""


class OutboxStorageError(OutboxError):
    """SQLite could not write (disk full, I/O error): the message was not stored; retry later."""


class OutboxLockedError(OutboxError):
    """Another process (or another Outbox in this one) has this outbox open."""


class OutboxOwnerError(OutboxError):
    """The outbox file holds the messages of another robot id."""


@dataclass(frozen=True)
class TopicPolicy:
    """How the outbox treats a topic: state (newest unsent wins) or history (kept, maybe merged)."""

    state: bool
    merge: MergePolicy | None = None


@dataclass(frozen=True)
class OutboxEntry:
    """A stored message and its protocol identity."""

    id: int
    boot_id: str
    seq: int
    topic: str
    state: bool
    msg_json: str
    state_space: bool = False  # `seq` is a state seq (sent as `state_seq`, lekiwi-fleet/2)

    @property
    def key(self) -> tuple[str, int]:
        """Return (boot_id, seq); a state seq's boot carries STATE_KEY_SUFFIX."""
        if self.state_space:
            return self.boot_id + STATE_KEY_SUFFIX, self.seq
        return self.boot_id, self.seq


@dataclass(frozen=True)
class PutResult:
    """Where a message went: appended, coalesced into an unsent state message, or merged."""

    boot_id: str
    seq: int
    outcome: str  # 'appended' | 'coalesced' | 'merged' | 'duplicate' (seq 0: nothing stored)
    over_limit: bool = False


class Outbox:
    """A durable, bounded, ordered queue of fleet messages awaiting acknowledgement."""

    def __init__(
        self,
        path: str,
        boot_id: str,
        policies: Mapping[str, TopicPolicy],
        max_messages: int = 10000,
        max_message_bytes: int = 65000,
        now: Callable[[], float] = time.time,
        *,
        robot_id: str | None = None,
        dedup_window_s: float = 86400.0,
    ) -> None:
        if max_messages < 1:
            raise ValueError(f'max_messages must be >= 1, got {max_messages}')
        self._path = path
        self._robot_id = robot_id
        self._dedup_window_s = dedup_window_s
        self._dedup_puts = 0
        self._sync_full = False
        self._boot_id = boot_id
        self._policies = dict(policies)
        self._max_messages = max_messages
        self._max_message_bytes = max_message_bytes
        self._now = now
        # One connection shared by two threads; the lock serialises every use of it.
        self._lock = threading.Lock()
        self.recovered_from: str | None = None
        self._lock_fd = self._acquire_file_lock()
        try:
            self._db = self._open()
            self._claim_owner()
        except BaseException:
            self._release_file_lock()
            raise
        self._count = self._db.execute('SELECT COUNT(*) FROM outbox').fetchone()[0]
        row = self._db.execute(
            'SELECT last_seq, last_state_seq FROM boots WHERE boot_id = ?', (boot_id,)
        ).fetchone()
        self._last_seq = row[0] if row else 0
        self._last_state_seq = row[1] if row else 0
        # Unsent rows that may still change: topic -> id (state) and topic -> (id, msg) (merge).
        self._unsent_state: dict[str, int] = {}
        self._unsent_tail: dict[str, tuple[int, dict[str, Any]]] = {}
        self.coalesced_total = 0
        self.merged_total = 0

    @property
    def boot_id(self) -> str:
        """Return the boot id new messages get."""
        return self._boot_id

    @property
    def path(self) -> str:
        """Return the database file's path."""
        return self._path

    def _acquire_file_lock(self) -> int:
        directory = os.path.dirname(os.path.abspath(self._path))
        os.makedirs(directory, exist_ok=True)
        lock_path = self._path + '.lock'
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # flock, not fcntl/lockf: its lock belongs to this open file, so a second Outbox on
            # the same path is refused in this process too, and the kernel drops it on a crash.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors='replace').strip() or 'unknown'
            os.close(fd)
            raise OutboxLockedError(
                f'outbox {self._path} is in use by another agent (pid {holder}); '
                'each agent needs an outbox of its own: set the outbox_path parameter'
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        return fd

    def _release_file_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the file releases the flock
            self._lock_fd = -1

    def _claim_owner(self) -> None:
        row = self._db.execute('SELECT robot_id FROM owner').fetchone()
        if self._robot_id is None:
            return
        if row is None:
            self._db.execute('INSERT INTO owner (one, robot_id) VALUES (1, ?)', (self._robot_id,))
        elif row[0] != self._robot_id:
            self._db.close()
            raise OutboxOwnerError(
                f'outbox {self._path} holds the messages of robot {row[0]!r}, not '
                f'{self._robot_id!r}: they are never uploaded under another id; give this robot '
                'an outbox_path of its own (or deliver that robot\'s messages first)'
            )

    @property
    def robot_id(self) -> str | None:
        """Return the robot id this outbox belongs to (None: not bound to one)."""
        return self._robot_id

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            # A damaged file must not stop the robot from reporting: keep it aside, start anew.
            aside = f'{self._path}.corrupt-{int(self._now())}'
            for suffix in ('', '-wal', '-shm'):
                if os.path.exists(self._path + suffix):
                    os.replace(self._path + suffix, aside + suffix)
            self.recovered_from = f'{aside} ({exc})'
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            db.execute('PRAGMA journal_mode=WAL')
            # WAL + NORMAL survives a killed process, not a power cut: state messages (the
            # newest heartbeat replaces the last anyway) are written so; a history message's
            # commit switches to FULL, an fsync of the WAL, before put() returns (_sync).
            db.execute('PRAGMA synchronous=NORMAL')
            # A small WAL (checkpoint at 256 pages, truncated to 1 MiB after it): a robot whose
            # disk fills must not find the outbox's own journal holding the last megabytes.
            db.execute('PRAGMA wal_autocheckpoint=256')
            db.execute('PRAGMA journal_size_limit=1048576')
            version = db.execute('PRAGMA user_version').fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f'outbox schema {version} is newer than this agent')
            columns = {r[1] for r in db.execute('PRAGMA table_info(outbox)')}
            if columns and 'space' not in columns:
                db.executescript(f'BEGIN IMMEDIATE; {_MIGRATE_TO_3} COMMIT;')
            db.executescript(_SCHEMA)
            db.execute(f'PRAGMA user_version={_SCHEMA_VERSION}')
            db.execute('SELECT COUNT(*) FROM outbox').fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def put(self, topic: str, msg: Mapping[str, Any], dedup_key: str | None = None) -> PutResult:
        """Store `msg` for `topic` and return its (boot_id, seq) and what happened to it."""
        policy = self._policies.get(topic)
        if policy is None:
            raise OutboxError(f'no outbox policy for topic {topic!r}')
        try:
            text = _dumps(msg)
        except (TypeError, ValueError) as exc:
            raise OutboxError(f'{topic}: not a JSON message: {exc}') from exc
        if len(text.encode()) > self._max_message_bytes:
            raise OversizeMessageError(
                f'{topic}: {len(text.encode())} bytes, more than {self._max_message_bytes}'
            )
        if dedup_key is not None and policy.state:
            raise OutboxError(f'{topic}: a state topic takes no dedup_key')
        with self._lock:
            try:
                return self._put_locked(topic, policy, msg, text, dedup_key)
            except sqlite3.Error as exc:
                self._shrink_journal()
                raise OutboxStorageError(f'{topic}: could not store the message: {exc}') from exc

    def _put_locked(
        self, topic: str, policy: TopicPolicy, msg: Mapping[str, Any], text: str,
        dedup_key: str | None = None,
    ) -> PutResult:
        over = self._count >= self._max_messages
        if policy.state and topic in self._unsent_state:
            row_id = self._unsent_state[topic]
            self._sync(full=False)
            seq = self._update(row_id, text)
            self.coalesced_total += 1
            return PutResult(self._boot_id, seq, 'coalesced', over)
        if over and policy.merge is not None and topic in self._unsent_tail:
            row_id, older = self._unsent_tail[topic]
            merged = policy.merge(older, msg)
            if merged is not None:
                self._sync(full=True)
                seq = self._update(row_id, _dumps(merged))
                self._unsent_tail[topic] = (row_id, merged)
                self.merged_total += 1
                return PutResult(self._boot_id, seq, 'merged', over)
        state = policy.state
        seq = (self._last_state_seq if state else self._last_seq) + 1
        self._sync(full=not state)
        self._db.execute('BEGIN IMMEDIATE')
        try:
            if dedup_key is not None and not self._first_sighting(dedup_key):
                self._rollback()
                return PutResult(self._boot_id, 0, 'duplicate', over)
            cursor = self._db.execute(
                'INSERT INTO outbox (boot_id, seq, topic, state, msg, created_at, space) '
                'VALUES (?, ?, ?, ?, ?, ?, ?)',
                (self._boot_id, seq, topic, int(state), text, self._now(),
                 STATE_SPACE if state else HISTORY_SPACE),
            )
            self._save_counters(seq if not state else self._last_seq,
                                seq if state else self._last_state_seq)
            self._db.execute('COMMIT')
        except BaseException:
            self._rollback()
            raise
        if state:
            self._last_state_seq = seq
        else:
            self._last_seq = seq
        self._count += 1
        row_id = int(cursor.lastrowid or 0)  # set by every INSERT
        if policy.state:
            self._unsent_state[topic] = row_id
        elif policy.merge is not None:
            self._unsent_tail[topic] = (row_id, dict(msg))
        return PutResult(self._boot_id, seq, 'appended', over)

    def _save_counters(self, last_seq: int, last_state_seq: int) -> None:
        self._db.execute(
            'INSERT INTO boots (boot_id, last_seq, last_state_seq) VALUES (?, ?, ?) '
            'ON CONFLICT (boot_id) DO UPDATE SET last_seq = excluded.last_seq, '
            'last_state_seq = excluded.last_state_seq',
            (self._boot_id, last_seq, last_state_seq),
        )

    def to_history_space(self, entry: OutboxEntry) -> OutboxEntry:
        """Renumber a sent state-space message with the next history seq (for a v1 server).

        A lekiwi-fleet/1 server knows one sequence space: the message gets a seq of its own
        there. Only this boot's messages can be renumbered (an older boot's counter is gone):
        others are returned as they are.
        """
        if not entry.state_space or entry.boot_id != self._boot_id:
            return entry
        with self._lock:
            seq = self._last_seq + 1
            self._db.execute('BEGIN IMMEDIATE')
            try:
                cursor = self._db.execute(
                    'UPDATE outbox SET space = ?, seq = ? WHERE id = ? AND space = ?',
                    (HISTORY_SPACE, seq, entry.id, STATE_SPACE))
                if cursor.rowcount != 1:
                    self._rollback()
                    return entry  # acknowledged and removed meanwhile
                self._save_counters(seq, self._last_state_seq)
                self._db.execute('COMMIT')
            except BaseException:
                self._rollback()
                raise
            self._last_seq = seq
        return OutboxEntry(entry.id, entry.boot_id, seq, entry.topic, entry.state,
                           entry.msg_json)

    def _shrink_journal(self) -> None:
        """After a failed write, move the WAL into the database and truncate it, if it can."""
        try:
            self._db.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()
        except sqlite3.Error:
            pass  # no room even for that: the next retry tries again

    def _sync(self, full: bool) -> None:
        """Set synchronous=FULL for history commits, NORMAL for state ones (cheap, cached)."""
        if full != self._sync_full:
            self._db.execute(f'PRAGMA synchronous={"FULL" if full else "NORMAL"}')
            self._sync_full = full

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already (keeps the real error)."""
        # On SQLITE_FULL or IOERR SQLite may roll back by itself; a ROLLBACK then fails with
        # "no transaction is active" and would hide the error that matters (disk full).
        if self._db.in_transaction:
            try:
                self._db.execute('ROLLBACK')
            except sqlite3.Error:
                pass

    def _first_sighting(self, key: str) -> bool:
        """Record `key` (inside the put's transaction); say whether it is new."""
        now = self._now()
        self._dedup_puts += 1
        if self._dedup_puts % 500 == 1:  # forget keys older than the window, now and then
            self._db.execute('DELETE FROM seen WHERE at < ?', (now - self._dedup_window_s,))
        # A key older than the window counts as new even before the sweep removes it.
        cursor = self._db.execute(
            'INSERT INTO seen (key, at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET '
            'at = excluded.at WHERE seen.at < ?', (key, now, now - self._dedup_window_s))
        return cursor.rowcount == 1

    def _update(self, row_id: int, text: str) -> int:
        row = self._db.execute(
            'UPDATE outbox SET msg = ? WHERE id = ? RETURNING seq', (text, row_id)
        ).fetchone()
        if row is None:  # only if the file was changed behind this outbox's lock
            raise OutboxError(f'outbox row {row_id} vanished: {self._path} changed underneath')
        return int(row[0])

    def claim(self, state: bool, after_id: int = 0, limit: int = 1000) -> list[OutboxEntry]:
        """Return up to `limit` messages of one class with id > after_id, marked as sent."""
        with self._lock:
            rows = self._db.execute(
                'SELECT id, boot_id, seq, topic, state, msg, space FROM outbox '
                'WHERE state = ? AND id > ? ORDER BY id LIMIT ?',
                (int(state), after_id, limit),
            ).fetchall()
            entries = [_entry(r) for r in rows]
            self._mark_sent(entry.id for entry in entries)
        return entries

    def fetch(self, ids: Iterable[int]) -> list[OutboxEntry]:
        """Return the messages with these ids that are still stored, in id order."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        with self._lock:
            marks = ','.join('?' * len(wanted))
            rows = self._db.execute(
                'SELECT id, boot_id, seq, topic, state, msg, space FROM outbox '
                f'WHERE id IN ({marks}) ORDER BY id',
                wanted,
            ).fetchall()
            self._mark_sent(wanted)
        return [_entry(r) for r in rows]

    def _mark_sent(self, ids: Iterable[int]) -> None:
        sent = set(ids)
        for topic, row_id in list(self._unsent_state.items()):
            if row_id in sent:
                del self._unsent_state[topic]
        for topic, (row_id, _msg) in list(self._unsent_tail.items()):
            if row_id in sent:
                del self._unsent_tail[topic]

    def remove(self, keys: Iterable[tuple[str, int]]) -> int:
        """Delete acknowledged messages by key (OutboxEntry.key); return how many were stored."""
        keys = list(keys)
        if not keys:
            return 0
        with self._lock:
            self._db.execute('BEGIN IMMEDIATE')
            try:
                removed = 0
                for boot_key, seq in keys:
                    boot_id, space = _space_of(boot_key)
                    row = self._db.execute(
                        'DELETE FROM outbox WHERE boot_id = ? AND space = ? AND seq = ? '
                        'RETURNING id',
                        (boot_id, space, seq),
                    ).fetchone()
                    if row is not None:
                        removed += 1
                        self._mark_sent([row[0]])
                self._db.execute('COMMIT')
            except BaseException:
                self._rollback()
                raise
            self._count -= removed
        return removed

    def __len__(self) -> int:
        """Return the number of stored messages."""
        return self._count

    def close(self) -> None:
        """Close the database and release its lock (further use raises)."""
        with self._lock:
            self._db.close()
            self._release_file_lock()


def _entry(row: Any) -> OutboxEntry:
    return OutboxEntry(row[0], row[1], row[2], row[3], bool(row[4]), row[5],
                       row[6] == STATE_SPACE)


def _space_of(boot_key: str) -> tuple[str, int]:
    """Return (boot_id, space) of an entry key's boot item."""
    if boot_key.endswith(STATE_KEY_SUFFIX):
        return boot_key[:-len(STATE_KEY_SUFFIX)], STATE_SPACE
    return boot_key, HISTORY_SPACE


def _dumps(msg: Mapping[str, Any]) -> str:
    return json.dumps(msg, separators=(',', ':'), allow_nan=False, ensure_ascii=False)
