"""Legacy inventory parsing and merging (pure)."""

from __future__ import annotations

import pytest

from lekiwi_fleet_server.legacy.inventory import (
    InventoryError,
    LegacyHost,
    format_of,
    merge_hosts,
    parse_inventory,
)

CSV = """robot_id,host,user,port,tags
kiwi-001,10.0.4.21,lekiwi,22,lab;arm-v2
kiwi-002,kiwi-002.local,pi,,

kiwi-003,127.0.0.3,root,2222,lab;lab
"""


def test_csv_rows_become_hosts_with_defaults_and_sorted_unique_tags() -> None:
    hosts = parse_inventory(CSV, 'csv')
    assert hosts == [
        LegacyHost('kiwi-001', '10.0.4.21', 'lekiwi', 22, ('arm-v2', 'lab')),
        LegacyHost('kiwi-002', 'kiwi-002.local', 'pi', 22, ()),
        LegacyHost('kiwi-003', '127.0.0.3', 'root', 2222, ('lab',)),
    ]


def test_yaml_list_and_mapping_forms_agree_with_csv() -> None:
    text = """
- {robot_id: kiwi-001, host: 10.0.4.21, user: lekiwi, tags: [lab, arm-v2]}
- {robot_id: kiwi-002, host: kiwi-002.local, user: pi}
- {robot_id: kiwi-003, host: 127.0.0.3, user: root, port: 2222, tags: lab}
"""
    assert parse_inventory(text, 'yaml') == parse_inventory(CSV, 'csv')
    assert parse_inventory('robots:\n' + text.replace('\n-', '\n  -'), 'yaml') == \
        parse_inventory(CSV, 'csv')


@pytest.mark.parametrize(('text', 'fmt', 'message'), [
    ('', 'csv', 'empty inventory'),
    ('robot_id,host\nk,h\n', 'csv', 'missing column(s) user'),
    ('robot_id,host,user,colour\n', 'csv', 'unknown column(s) colour'),
    ('robot_id,host,user\nk,h,u,extra\n', 'csv', 'line 2: more values than columns'),
    ('robot_id,host,user\nbad id,h,u\n', 'csv', "line 2: robot_id 'bad id' is not valid"),
    ('robot_id,host,user\nk,-oProxyCommand=x,u\n', 'csv', "host '-oProxyCommand=x' is not"),
    ('robot_id,host,user\nk,-h,u\n', 'csv', 'host must not start with "-"'),
    ('robot_id,host,user\nk,h,Root;rm\n', 'csv', 'line 2: user'),
    ('robot_id,host,user,port\nk,h,u,99999\n', 'csv', 'port must be 1..65535'),
    ('robot_id,host,user,port\nk,h,u,ssh\n', 'csv', "port must be an integer, not 'ssh'"),
    ('robot_id,host,user\nk,h,u\nk,h2,u\n', 'csv', "line 3: robot 'k' is listed twice"),
    ('robot_id,host,user,tags\nk,h,u,bad tag\n', 'csv', "tag 'bad tag'"),
    ('- [1, 2]\n', 'yaml', 'robot #1: must be a mapping'),
    ('{a: 1}\n', 'yaml', 'must be a list of robots'),
    ('- {robot_id: k, host: h, user: u, port: true}\n', 'yaml', 'port must be an integer'),
    ('- {robot_id: k, host: h, user: u, shell: x}\n', 'yaml', 'unknown field(s) shell'),
    (': : :\n', 'yaml', 'not valid YAML'),
    ('x', 'toml', 'unknown inventory format'),
])
def test_bad_inventories_are_refused_with_where_and_why(text: str, fmt: str,
                                                        message: str) -> None:
    with pytest.raises(InventoryError, match=None) as info:
        parse_inventory(text, fmt)
    assert message in str(info.value)


def test_format_comes_from_the_file_name() -> None:
    assert format_of('fleet.CSV') == 'csv'
    assert format_of('a.yml') == format_of('b.yaml') == 'yaml'
    with pytest.raises(InventoryError, match='name the file'):
        format_of('fleet.txt')


def test_merge_adds_and_replaces_by_robot_id_and_reports_only_real_changes() -> None:
    a = LegacyHost('a', 'h1', 'u')
    b = LegacyHost('b', 'h2', 'u')
    b_moved = LegacyHost('b', 'h3', 'u')
    merged, changed = merge_hosts([b, a], [b_moved, LegacyHost('c', 'h4', 'u')])
    assert [h.robot_id for h in merged] == ['a', 'b', 'c']
    assert merged[1] == b_moved and changed == ['b', 'c']
    again, changed_again = merge_hosts(merged, [b_moved])
    assert again == merged and changed_again == []
