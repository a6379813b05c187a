"""Outbox: seq assignment, coalescing, merging, priorities, acks, restarts and bad files."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import fill

from lekiwi_agent_ros.telemetry.delta_codec import merge_telemetry_msgs
from lekiwi_agent_ros.uplink.outbox import (
    STATE_KEY_SUFFIX,
    Outbox,
    OutboxError,
    OutboxLockedError,
    OutboxOwnerError,
    OversizeMessageError,
    TopicPolicy,
)

POLICIES = {
    'fleet/heartbeat': TopicPolicy(state=True),
    'teleop/status': TopicPolicy(state=True),
    'fleet/events': TopicPolicy(state=False),
    'fleet/telemetry': TopicPolicy(state=False, merge=merge_telemetry_msgs),
}


def delta(sequence: int, base: int, **fields: float) -> dict:
    return {
        'sequence': sequence,
        'base_sequence': base,
        'full_snapshot': sequence == base,
        'field_names': list(fields),
        'field_values': list(fields.values()),
    }


def open_outbox(path: Path, boot_id: str = 'boot-aaaa', **kwargs: int) -> Outbox:
    return Outbox(str(path), boot_id, POLICIES, now=lambda: 1000.0, **kwargs)


def test_sequence_numbers_start_at_one_and_have_no_gaps(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path / 'o.db')
    results = [outbox.put('fleet/events', {'n': i}) for i in range(3)]
    assert [(r.boot_id, r.seq, r.outcome) for r in results] == [
        ('boot-aaaa', 1, 'appended'),
        ('boot-aaaa', 2, 'appended'),
        ('boot-aaaa', 3, 'appended'),
    ]
    assert len(outbox) == 3 and outbox.boot_id == 'boot-aaaa'


def test_newest_unsent_state_message_takes_the_older_ones_place_and_seq(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path / 'o.db')
    first = outbox.put('fleet/heartbeat', {'sequence': 1})
    outbox.put('fleet/events', {'n': 1})
    second = outbox.put('fleet/heartbeat', {'sequence': 2})
    assert (first.seq, second.seq, second.outcome) == (1, 1, 'coalesced')
    assert len(outbox) == 2 and outbox.coalesced_total == 1
    [entry] = outbox.claim(state=True)
    assert entry.seq == 1 and entry.msg_json == '{"sequence":2}' and entry.state
    # once sent, it may be on the server: a newer heartbeat gets a seq of its own, the next
    # of the state space (the event's history seq 1 is in the other space)
    third = outbox.put('fleet/heartbeat', {'sequence': 3})
    assert (third.seq, third.outcome) == (2, 'appended')


def test_history_is_never_dropped_even_over_the_limit(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path / 'o.db', max_messages=2)
    results = [outbox.put('fleet/events', {'n': i}) for i in range(5)]
    assert [r.over_limit for r in results] == [False, False, True, True, True]
    assert len(outbox) == 5
    assert [e.seq for e in outbox.claim(state=False)] == [1, 2, 3, 4, 5]


def test_telemetry_merges_into_its_newest_unsent_delta_only_over_the_limit(
    tmp_path: Path,
) -> None:
    outbox = open_outbox(tmp_path / 'o.db', max_messages=3)
    outbox.put('fleet/telemetry', delta(1, 1, cpu=1.0, mem=5.0))
    outbox.put('fleet/telemetry', delta(2, 1, cpu=2.0))
    outbox.put('fleet/events', {'n': 1})
    merged = outbox.put('fleet/telemetry', delta(3, 1, mem=6.0))
    assert (merged.seq, merged.outcome, merged.over_limit) == (2, 'merged', True)
    again = outbox.put('fleet/telemetry', delta(4, 1, cpu=4.0))
    assert (again.seq, again.outcome) == (2, 'merged')
    # a new full snapshot replaces the unsent deltas before it
    full = outbox.put('fleet/telemetry', delta(5, 5, cpu=5.0, mem=7.0))
    assert (full.seq, full.outcome) == (2, 'merged')
    assert outbox.merged_total == 3
    entries = outbox.claim(state=False)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[1].msg_json == (
        '{"sequence":5,"base_sequence":5,"full_snapshot":true,'
        '"field_names":["cpu","mem"],"field_values":[5.0,7.0]}'
    )
    # the merged row was sent: the next delta cannot merge into it and is appended
    nxt = outbox.put('fleet/telemetry', delta(6, 5, cpu=6.0))
    assert (nxt.seq, nxt.outcome) == (4, 'appended')
    # a delta does not merge into a snapshot
    outbox2 = open_outbox(tmp_path / 'p.db', max_messages=1)
    outbox2.put('fleet/telemetry', delta(1, 1, cpu=1.0))
    assert outbox2.put('fleet/telemetry', delta(2, 1, cpu=2.0)).outcome == 'appended'


def test_claim_hands_out_each_class_in_order_from_a_cursor(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path / 'o.db')
    for i in range(4):
        outbox.put('fleet/events', {'n': i})
    outbox.put('fleet/heartbeat', {'hb': 1})
    outbox.put('teleop/status', {'active': True})
    state = outbox.claim(state=True)
    assert [(e.topic, e.seq, e.state_space) for e in state] == [
        ('fleet/heartbeat', 1, True), ('teleop/status', 2, True)]
    assert [e.key for e in state] == [('boot-aaaa/s', 1), ('boot-aaaa/s', 2)]
    first = outbox.claim(state=False, limit=2)
    assert [e.seq for e in first] == [1, 2]
    rest = outbox.claim(state=False, after_id=first[-1].id)
    assert [e.seq for e in rest] == [3, 4]
    assert outbox.claim(state=False, after_id=rest[-1].id) == []
    assert [e.seq for e in outbox.fetch([rest[0].id, first[0].id, 999])] == [1, 3]
    assert outbox.fetch([]) == []


def test_remove_deletes_acknowledged_messages_only(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path / 'o.db')
    for i in range(4):
        outbox.put('fleet/events', {'n': i})
    assert outbox.remove([('boot-aaaa', 1), ('boot-aaaa', 3), ('other', 2), ('boot-aaaa', 9)]) == 2
    assert outbox.remove([]) == 0
    assert len(outbox) == 2
    assert [e.seq for e in outbox.claim(state=False)] == [2, 4]
    # an unsent state message that gets acknowledged (a server bug) is simply gone
    hb = outbox.put('fleet/heartbeat', {'a': 1})
    assert outbox.remove([('boot-aaaa', hb.seq)]) == 0  # the history seq 1: removed already
    assert outbox.remove([('boot-aaaa' + STATE_KEY_SUFFIX, hb.seq)]) == 1
    assert outbox.put('fleet/heartbeat', {'a': 2}).outcome == 'appended'


def test_restart_replays_old_rows_and_never_reuses_a_seq(tmp_path: Path) -> None:
    path = tmp_path / 'o.db'
    outbox = open_outbox(path, boot_id='boot-one1')
    outbox.put('fleet/events', {'n': 1})
    outbox.put('fleet/events', {'n': 2})
    outbox.put('fleet/heartbeat', {'hb': 1})
    outbox.remove([('boot-one1', 2)])
    outbox.close()
    again = open_outbox(path, boot_id='boot-two2')
    assert len(again) == 2
    # the old heartbeat counts as sent: the new one does not take its place
    assert again.put('fleet/heartbeat', {'hb': 2}).seq == 1
    assert [(e.boot_id, e.seq) for e in again.claim(state=True)] == [
        ('boot-one1', 1),
        ('boot-two2', 1),
    ]
    assert [(e.boot_id, e.seq) for e in again.claim(state=False)] == [('boot-one1', 1)]
    again.close()
    # the same boot id again (set by hand): its sequence carries on past every seq it used
    same = open_outbox(path, boot_id='boot-one1')
    assert same.put('fleet/events', {'n': 3}).seq == 3
    assert same.put('fleet/heartbeat', {'hb': 3}).seq == 2


def test_history_and_state_are_numbered_in_spaces_of_their_own(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path / 'o.db')
    puts = []
    for i in range(3):
        puts.append(outbox.put('fleet/events', {'n': i}))
        puts.append(outbox.put('fleet/heartbeat', {'hb': i}))
        outbox.claim(state=True)  # sent: the next heartbeat is a message of its own
    assert [(r.seq) for r in puts] == [1, 1, 2, 2, 3, 3]
    assert [e.seq for e in outbox.claim(state=False)] == [1, 2, 3]  # no gaps in history


def test_a_state_message_moves_to_the_history_space_for_a_v1_server(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path / 'o.db')
    outbox.put('fleet/events', {'n': 1})
    outbox.put('fleet/heartbeat', {'hb': 1})
    [hb] = outbox.claim(state=True)
    moved = outbox.to_history_space(hb)
    assert (moved.seq, moved.state_space, moved.key) == (2, False, ('boot-aaaa', 2))
    assert outbox.to_history_space(moved) is moved  # once
    assert outbox.put('fleet/events', {'n': 2}).seq == 3  # the history space goes on past it
    assert [e.seq for e in outbox.fetch([hb.id])] == [2]
    assert outbox.remove([moved.key]) == 1


def test_a_schema_2_outbox_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / 'o.db'
    db = sqlite3.connect(path)
    db.executescript('''
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, boot_id TEXT NOT NULL,
            seq INTEGER NOT NULL, topic TEXT NOT NULL, state INTEGER NOT NULL,
            msg TEXT NOT NULL, created_at REAL NOT NULL, UNIQUE (boot_id, seq));
        CREATE INDEX outbox_by_class ON outbox (state, id);
        CREATE TABLE boots (boot_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
        INSERT INTO outbox VALUES (1, 'boot-old1', 1, 'fleet/events', 0, '{"n":1}', 1.0);
        INSERT INTO outbox VALUES (2, 'boot-old1', 2, 'fleet/heartbeat', 1, '{"hb":1}', 1.0);
        INSERT INTO boots VALUES ('boot-old1', 2);
        PRAGMA user_version=2;
    ''')
    db.close()
    outbox = open_outbox(path, boot_id='boot-old1')
    # the old heartbeat was numbered in the one space of old: it stays a history-space row
    [hb] = outbox.claim(state=True)
    assert (hb.seq, hb.state_space, hb.key) == (2, False, ('boot-old1', 2))
    assert outbox.put('fleet/events', {'n': 2}).seq == 3
    assert outbox.put('fleet/heartbeat', {'hb': 2}).seq == 1
    assert outbox.remove([('boot-old1', 1), ('boot-old1', 2)]) == 2


def test_messages_survive_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / 'o.db'
    script = (
        'import os, signal, sys\n'
        'from lekiwi_agent_ros.uplink.outbox import Outbox, TopicPolicy\n'
        f'o = Outbox({str(path)!r}, "boot-kill", {{"e": TopicPolicy(state=False)}})\n'
        'for i in range(50): o.put("e", {"n": i})\n'
        'os.kill(os.getpid(), signal.SIGKILL)\n'
    )
    result = subprocess.run([sys.executable, '-c', script], timeout=60)
    assert result.returncode == -signal.SIGKILL
    outbox = Outbox(str(path), 'boot-next', {'e': TopicPolicy(state=False)})
    assert [e.seq for e in outbox.claim(state=False)] == list(range(1, 51))


def test_a_corrupt_file_is_kept_aside_and_a_new_outbox_started(tmp_path: Path) -> None:
    path = tmp_path / 'o.db'
    path.write_bytes(b'this is not a database' * 100)
    outbox = open_outbox(path)
    assert outbox.recovered_from is not None and 'corrupt' in outbox.recovered_from
    assert len(outbox) == 0 and outbox.put('fleet/events', {}).seq == 1
    assert any(p.name.startswith('o.db.corrupt-') for p in tmp_path.iterdir())


def test_a_newer_schema_is_not_touched(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / 'o.db'
    db = sqlite3.connect(path)
    db.execute('PRAGMA user_version=99')
    db.close()
    outbox = open_outbox(path)
    assert outbox.recovered_from is not None and 'newer' in outbox.recovered_from


def test_bad_messages_are_refused_with_clear_errors(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path / 'o.db', max_message_bytes=100)
    with pytest.raises(OversizeMessageError, match='more than 100'):
        outbox.put('fleet/events', {'payload': 'x' * 200})
    with pytest.raises(OutboxError, match="no outbox policy for topic 'nope'"):
        outbox.put('nope', {})
    with pytest.raises(OutboxError, match='not a JSON message'):
        outbox.put('fleet/events', {'x': float('nan')})
    with pytest.raises(OutboxError, match='not a JSON message'):
        outbox.put('fleet/events', {'x': object()})
    with pytest.raises(ValueError, match='max_messages'):
        open_outbox(tmp_path / 'x.db', max_messages=0)
    assert len(outbox) == 0
    outbox.close()
    with pytest.raises(OutboxError, match='could not store'):
        outbox.put('fleet/events', {})


def test_concurrent_puts_claims_and_removes_lose_nothing(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path / 'o.db')
    per_thread = 200
    received: list[tuple[str, int]] = []

    def produce(k: int) -> None:
        for i in range(per_thread):
            outbox.put('fleet/events', {'k': k, 'i': i})

    producers = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for thread in producers:
        thread.start()
    cursor = 0
    while any(t.is_alive() for t in producers) or len(outbox):
        entries = outbox.claim(state=False, after_id=cursor, limit=50)
        if entries:
            cursor = entries[-1].id
            received.extend(e.key for e in entries)
            outbox.remove(e.key for e in entries)
    for thread in producers:
        thread.join()
    assert sorted(seq for _b, seq in received) == list(range(1, 4 * per_thread + 1))
    assert os.path.exists(tmp_path / 'o.db-wal')


def test_a_second_user_of_one_outbox_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / 'o.db'
    first = open_outbox(path)
    first.put('fleet/events', {'n': 1})
    with pytest.raises(OutboxLockedError, match=rf'in use by another agent \(pid {os.getpid()}\)'):
        open_outbox(path, boot_id='boot-bbbb')
    # the refusal touched nothing: the first user carries on, and after it the file opens
    assert first.put('fleet/events', {'n': 2}).seq == 2
    first.close()
    again = open_outbox(path, boot_id='boot-cccc')
    assert [e.seq for e in again.claim(state=False)] == [1, 2]


def test_another_process_is_refused_until_the_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / 'o.db'
    script = (
        'import sys, time\n'
        'from lekiwi_agent_ros.uplink.outbox import Outbox, TopicPolicy\n'
        f'o = Outbox({str(path)!r}, "boot-hold", {{"e": TopicPolicy(state=False)}})\n'
        'o.put("e", {"n": 1})\n'
        'print("held", flush=True)\n'
        'time.sleep(120)\n'
    )
    holder = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == 'held'
        with pytest.raises(OutboxLockedError, match=f'pid {holder.pid}'):
            Outbox(str(path), 'boot-next', {'e': TopicPolicy(state=False)})
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # a killed holder leaves no stale lock: the kernel released it with the process
    outbox = Outbox(str(path), 'boot-next', {'e': TopicPolicy(state=False)})
    assert [e.key for e in outbox.claim(state=False)] == [('boot-hold', 1)]


def test_an_outbox_of_another_robot_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / 'o.db'
    mine = open_outbox(path, robot_id='kiwi-a')
    mine.put('fleet/events', {'n': 1})
    mine.close()
    with pytest.raises(OutboxOwnerError, match="robot 'kiwi-a', not 'kiwi-b'"):
        open_outbox(path, boot_id='boot-bbbb', robot_id='kiwi-b')
    back = open_outbox(path, boot_id='boot-dddd', robot_id='kiwi-a')
    assert back.robot_id == 'kiwi-a'
    assert [e.key for e in back.claim(state=False)] == [('boot-aaaa', 1)]


def test_a_version_1_outbox_is_adopted_by_the_robot_that_opens_it(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / 'o.db'
    db = sqlite3.connect(path)
    db.executescript(
        'CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, boot_id TEXT NOT NULL, '
        'seq INTEGER NOT NULL, topic TEXT NOT NULL, state INTEGER NOT NULL, msg TEXT NOT NULL, '
        'created_at REAL NOT NULL, UNIQUE (boot_id, seq));'
        'CREATE TABLE boots (boot_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);'
        "INSERT INTO outbox VALUES (1, 'boot-old1', 1, 'fleet/events', 0, '{}', 1.0);"
        "INSERT INTO boots VALUES ('boot-old1', 1);"
        'PRAGMA user_version=1;'
    )
    db.close()
    adopted = open_outbox(path, robot_id='kiwi-a')
    assert len(adopted) == 1
    adopted.close()
    with pytest.raises(OutboxOwnerError):
        open_outbox(path, robot_id='kiwi-b')


def test_a_dedup_key_seen_before_stores_nothing_even_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / 'o.db'
    clock = [1000.0]
    outbox = Outbox(str(path), 'boot-aaaa', POLICIES, now=lambda: clock[0], dedup_window_s=60.0)
    assert outbox.put('fleet/events', {'n': 1}, dedup_key='k1').outcome == 'appended'
    again = outbox.put('fleet/events', {'n': 1}, dedup_key='k1')
    assert (again.outcome, again.seq) == ('duplicate', 0) and len(outbox) == 1
    assert outbox.put('fleet/events', {'n': 2}, dedup_key='k2').seq == 2
    with pytest.raises(OutboxError, match='state topic takes no dedup_key'):
        outbox.put('fleet/heartbeat', {}, dedup_key='k3')
    outbox.close()
    reopened = Outbox(str(path), 'boot-bbbb', POLICIES, now=lambda: clock[0],
                      dedup_window_s=60.0)
    assert reopened.put('fleet/events', {'n': 1}, dedup_key='k1').outcome == 'duplicate'
    assert [e.seq for e in reopened.claim(state=False)] == [1, 2]
    clock[0] += 120.0  # past the window: the key is forgotten
    assert reopened.put('fleet/events', {'n': 1}, dedup_key='k1').outcome == 'appended'


def test_a_full_disk_reports_the_real_error_keeps_what_was_stored_and_recovers(
        small_filesystem: Path) -> None:
    outbox = Outbox(str(small_filesystem / 'o.db'), 'boot-full', POLICIES)
    stored = 0
    error = None
    filler = small_filesystem / 'filler'
    fill(filler)  # what else fills a robot's disk (logs, bags)
    for n in range(2000):
        try:
            outbox.put('fleet/events', {'n': n, 'pad': 'x' * 200})
            stored += 1
        except OutboxError as exc:
            error = str(exc)
            break
    assert error is not None, 'the disk never filled'
    assert 'full' in error and 'no transaction is active' not in error, error
    # Nothing stored before is lost, and the count stays true.
    assert len(outbox) == stored
    assert [e.seq for e in outbox.claim(state=False)] == list(range(1, stored + 1))
    filler.unlink()  # space returns
    assert outbox.put('fleet/events', {'n': 'after'}).seq == stored + 1
    assert len(outbox) == stored + 1
    outbox.close()
