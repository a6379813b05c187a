"""Unit tests of the inventory merge: sources, keys, withdrawal, TTLs, enrolment."""

from __future__ import annotations

from lekiwi_fleet_server.discovery.inventory import (
    Inventory,
    Sighting,
    Source,
    endpoint_key,
    entry_as_dict,
)


def test_one_robot_seen_by_three_sources_is_one_entry_with_each_time() -> None:
    inv = Inventory()
    inv.observe(Sighting(Source.UPLINK, 10.0, 'kiwi-1', '127.0.0.5'))
    inv.observe(Sighting(Source.MDNS, 11.0, 'kiwi-1', '127.0.0.5', 8765,
                         {'agent_version': '0.3.0'}))
    inv.observe(Sighting(Source.SCAN, 12.0, 'kiwi-1', '127.0.0.5', 8765,
                         {'software_version': '1.2'}))
    (entry,) = inv.entries()
    assert entry.robot_id == 'kiwi-1'
    assert {s: v.last_seen for s, v in entry.sources.items()} == {
        Source.UPLINK: 10.0, Source.MDNS: 11.0, Source.SCAN: 12.0}
    assert entry.first_seen == 10.0 and entry.last_seen == 12.0
    view = entry_as_dict(entry)
    assert view['agent_version'] == '0.3.0' and view['software_version'] == '1.2'
    assert view['status'] == 'discovered' and view['address'] == '127.0.0.5'
    assert list(view['sources']) == ['mdns', 'scan', 'uplink']


def test_an_endpoint_found_before_its_robot_id_is_merged_when_named() -> None:
    inv = Inventory()
    inv.observe(Sighting(Source.SCAN, 1.0, 'kiwi-2', '127.0.0.9', 8765))
    anon = Sighting(Source.ROSBRIDGE, 2.0, None, '127.0.0.9', 9090)
    (added,) = inv.observe(anon)
    assert added.key == endpoint_key(Source.ROSBRIDGE, '127.0.0.9', 9090)
    assert len(inv) == 2
    removed, merged = inv.observe(Sighting(Source.ROSBRIDGE, 3.0, 'kiwi-2', '127.0.0.9', 9090))
    assert removed.entry is None and removed.key == added.key
    assert merged.key == 'kiwi-2' and merged.merged_from == added.key
    assert [e.key for e in inv.entries()] == ['kiwi-2']
    assert set(inv.get('kiwi-2').sources) == {Source.SCAN, Source.ROSBRIDGE}


def test_an_anonymous_endpoint_becomes_a_robot_entry_with_its_first_time() -> None:
    inv = Inventory()
    inv.observe(Sighting(Source.ROSBRIDGE, 5.0, None, '127.0.0.3', 9090))
    inv.observe(Sighting(Source.ROSBRIDGE, 6.0, 'kiwi-3', '127.0.0.3', 9090))
    entry = inv.get('kiwi-3')
    assert entry is not None and entry.robot_id == 'kiwi-3' and entry.first_seen == 5.0


def test_withdrawing_the_last_source_removes_the_entry() -> None:
    inv = Inventory()
    inv.observe(Sighting(Source.UPLINK, 1.0, 'kiwi-1'))
    inv.observe(Sighting(Source.MDNS, 1.0, 'kiwi-1', '127.0.0.2', 1))
    (change,) = inv.withdraw(Source.MDNS, 'kiwi-1')
    assert change.entry is not None and set(change.entry.sources) == {Source.UPLINK}
    assert inv.withdraw(Source.MDNS, 'kiwi-1') == []
    (gone,) = inv.withdraw(Source.UPLINK, 'kiwi-1')
    assert gone.entry is None and len(inv) == 0


def test_sightings_expire_by_their_sources_ttl_only() -> None:
    inv = Inventory({Source.SCAN: 60.0, Source.UPLINK: None})
    inv.observe(Sighting(Source.UPLINK, 0.0, 'kiwi-1'))
    inv.observe(Sighting(Source.SCAN, 0.0, 'kiwi-1', '127.0.0.2', 1))
    inv.observe(Sighting(Source.SCAN, 0.0, 'kiwi-2', '127.0.0.3', 1))
    assert inv.expire(59.0) == []
    changes = {c.key: c.entry for c in inv.expire(61.0)}
    assert changes['kiwi-2'] is None
    assert changes['kiwi-1'] is not None and set(changes['kiwi-1'].sources) == {Source.UPLINK}


def test_enrolment_and_pending_admission_mark_entries_and_filter() -> None:
    inv = Inventory()
    inv.observe(Sighting(Source.SCAN, 0.0, 'kiwi-1', '127.0.0.2', 1))
    inv.observe(Sighting(Source.UPLINK, 0.0, 'kiwi-2'))
    assert [c.key for c in inv.set_enrolled(['kiwi-1', 'not-seen'])] == ['kiwi-1']
    assert inv.set_enrolled(['kiwi-1']) == []
    (pending,) = inv.set_pending(['kiwi-2'])
    assert pending.entry is not None and pending.entry.status == 'pending'
    assert [e.key for e in inv.entries(enrolled=True)] == ['kiwi-1']
    assert [e.key for e in inv.entries(enrolled=False)] == ['kiwi-2']
    assert [e.key for e in inv.entries(source=Source.UPLINK)] == ['kiwi-2']
    # A robot enrolled before it is seen is marked on its first sighting.
    inv.set_enrolled(['kiwi-1', 'kiwi-3'])
    (added,) = inv.observe(Sighting(Source.MDNS, 1.0, 'kiwi-3', '127.0.0.4', 1))
    assert added.entry is not None and added.entry.status == 'enrolled'


def test_renewed_and_later_sightings_expire_on_time_after_an_expiry_pass() -> None:
    # expire() skips its pass until the earliest sighting could expire: renewals and new
    # sightings made after a pass must still expire exactly at their own TTL.
    inv = Inventory({Source.SCAN: 10.0})
    inv.observe(Sighting(Source.SCAN, 0.0, 'kiwi-1', '127.0.0.2', 1))
    inv.observe(Sighting(Source.SCAN, 5.0, 'kiwi-2', '127.0.0.3', 1))
    inv.observe(Sighting(Source.SCAN, 8.0, 'kiwi-1', '127.0.0.2', 1))  # renewed
    assert inv.expire(10.5) == []  # kiwi-1 was renewed at 8, kiwi-2 is due at 15
    inv.observe(Sighting(Source.SCAN, 11.0, 'kiwi-3', '127.0.0.4', 1))
    assert [c.key for c in inv.expire(15.5)] == ['kiwi-2']
    assert [c.key for c in inv.expire(18.5)] == ['kiwi-1']
    assert inv.expire(20.9) == [] and [c.key for c in inv.expire(21.1)] == ['kiwi-3']
    assert len(inv) == 0 and inv.expire(1e9) == []
