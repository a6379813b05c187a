"""Unit tests of scan planning: CIDR expansion and probe plans."""

from __future__ import annotations

import pytest

from lekiwi_fleet_server.discovery.targets import (
    Probe,
    ProbeKind,
    TargetError,
    expand_targets,
    plan_probes,
)


def test_a_24_expands_to_its_254_hosts_in_order() -> None:
    addresses = expand_targets(['10.0.0.0/24'])
    assert len(addresses) == 254
    assert addresses[0] == '10.0.0.1' and addresses[-1] == '10.0.0.254'


def test_hosts_and_ranges_merge_without_duplicates() -> None:
    assert expand_targets(['127.0.0.2', '127.0.0.0/30', ' 127.0.0.1 ', '']) == [
        '127.0.0.2', '127.0.0.1']


def test_a_32_and_a_31_keep_every_address() -> None:
    assert expand_targets(['192.168.1.7/32']) == ['192.168.1.7']
    assert expand_targets(['192.168.1.6/31']) == ['192.168.1.6', '192.168.1.7']


def test_ipv6_addresses_are_accepted() -> None:
    assert expand_targets(['::1']) == ['::1']


@pytest.mark.parametrize('spec', ['kiwi.local', '10.0.0.300', '10.0.0.0/33', '1.2.3.4/x'])
def test_a_malformed_target_is_refused_by_name(spec: str) -> None:
    with pytest.raises(TargetError, match='not an IP address'):
        expand_targets([spec])


def test_a_range_too_large_is_refused_before_anything_is_listed() -> None:
    with pytest.raises(TargetError, match='65536 addresses'):
        expand_targets(['10.1.0.0/16'])
    with pytest.raises(TargetError, match='more than 300'):
        expand_targets(['10.0.0.0/24', '10.0.1.0/24'], max_addresses=300)


def test_probes_cover_each_address_on_each_port() -> None:
    probes = plan_probes(['127.0.0.1', '127.0.0.2'], agent_port=8765, rosbridge_port=9090)
    assert probes == [
        Probe('127.0.0.1', 8765, ProbeKind.AGENT), Probe('127.0.0.1', 9090, ProbeKind.ROSBRIDGE),
        Probe('127.0.0.2', 8765, ProbeKind.AGENT), Probe('127.0.0.2', 9090, ProbeKind.ROSBRIDGE)]
    assert plan_probes(['127.0.0.1'], agent_port=None, rosbridge_port=9090) == [
        Probe('127.0.0.1', 9090, ProbeKind.ROSBRIDGE)]


def test_a_plan_without_ports_or_with_a_bad_port_is_refused() -> None:
    with pytest.raises(TargetError, match='needs an agent port'):
        plan_probes(['127.0.0.1'], agent_port=None, rosbridge_port=None)
    with pytest.raises(TargetError, match='outside'):
        plan_probes(['127.0.0.1'], agent_port=0, rosbridge_port=None)
