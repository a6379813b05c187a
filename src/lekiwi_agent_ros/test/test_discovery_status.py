"""The agent's discovery: status document, HTTP endpoint, mDNS announcement, the node."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from agent_netns import NetnsUnavailable, delete_netns, enter_netns, make_netns
from ros_harness import RosHarness

from lekiwi_agent_ros.discovery.discovery_node import DiscoveryNode, announced_addresses
from lekiwi_agent_ros.discovery.status import SERVICE_TYPE, AgentStatus, respond
from lekiwi_agent_ros.discovery.status_endpoint import StatusEndpoint
from lekiwi_agent_ros.msg_types import RobotHeartbeat
from lekiwi_agent_ros.telemetry.heartbeat import STATUS_QOS

STATUS = AgentStatus('kiwi-7', '0.3.0', 'rel-2', 'b00700000000agen', 3, 8765)


def test_the_status_document_names_the_service_robot_and_versions() -> None:
    assert STATUS.document() == {
        'service': 'lekiwi-agent', 'robot_id': 'kiwi-7', 'agent_version': '0.3.0',
        'software_version': 'rel-2', 'boot_id': 'b00700000000agen', 'state': 'teleoperated',
        'status_port': 8765}
    assert AgentStatus('k', '', '', '', 99, 1).document()['state'] == 'unknown'
    assert STATUS.instance_name() == 'kiwi-7._lekiwi._tcp.local.'
    long = AgentStatus('k', 'v' * 300, '', '', 0, 1).txt()
    assert len(long['agent_version'].encode()) == 255 and long['path'] == '/lekiwi/status'


def test_requests_are_answered_by_path_method_and_readiness() -> None:
    assert respond('GET', '/lekiwi/status?x=1', STATUS)[0] == 200
    assert respond('GET', '/other', STATUS)[0] == 404
    assert respond('POST', '/lekiwi/status', STATUS)[0] == 405
    assert respond('GET', '/lekiwi/status', None)[0] == 503


def get(port: int, path: str = '/lekiwi/status') -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f'http://127.0.0.1:{port}{path}', timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_endpoint_serves_the_newest_status_on_a_free_port() -> None:
    current: list[AgentStatus | None] = [None]
    endpoint = StatusEndpoint('127.0.0.1', 0, lambda: current[0]).start()
    try:
        assert get(endpoint.port) == (503, {'error': 'starting'})
        current[0] = STATUS
        code, doc = get(endpoint.port)
        assert code == 200 and doc['robot_id'] == 'kiwi-7'
        assert get(endpoint.port, '/')[0] == 404
    finally:
        endpoint.close()


def test_announced_addresses_prefer_configured_then_bound_ones() -> None:
    assert announced_addresses('0.0.0.0', ['10.0.0.5']) == ['10.0.0.5']
    assert announced_addresses('127.0.0.1', []) == ['127.0.0.1']
    found = announced_addresses('0.0.0.0', [])
    assert found and all(not a.startswith('127.') for a in found) or found == ['127.0.0.1']


def heartbeat_msg(robot_id: str, software_version: str = 'rel-1') -> RobotHeartbeat:
    msg = RobotHeartbeat()
    msg.robot_id, msg.agent_version = robot_id, '0.1.0'
    msg.software_version, msg.boot_id, msg.state = software_version, 'b00700000000agen', 2
    return msg


@pytest.fixture
def harness() -> Iterator[RosHarness]:
    h = RosHarness()
    try:
        yield h
    finally:
        h.close()


def test_the_node_serves_what_the_heartbeat_says(harness: RosHarness) -> None:
    node = DiscoveryNode(**harness.kwargs(discovery_enabled=True, status_port=0,
                                          mdns_announce=False))
    harness.add(node)
    assert node.status_port
    publisher = harness.helper.create_publisher(RobotHeartbeat,
                                                f'{harness.namespace}/fleet/heartbeat',
                                                STATUS_QOS)
    publisher.publish(heartbeat_msg('kiwi-node'))
    deadline = time.monotonic() + 10
    while get(node.status_port)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    code, doc = get(node.status_port)
    assert code == 200 and doc['robot_id'] == 'kiwi-node' and doc['state'] == 'idle'
    assert doc['status_port'] == node.status_port


def test_the_node_announces_each_new_status_and_says_goodbye_at_destroy(
        harness: RosHarness) -> None:
    # In the test's own namespace loopback may carry no multicast: an announcement that fails
    # is logged and the node goes on serving (the netns test below browses a real one).
    node = DiscoveryNode(**harness.kwargs(discovery_enabled=True, status_port=0,
                                          mdns_interfaces='127.0.0.1',
                                          mdns_addresses='127.0.0.1'))
    harness.add(node)
    publisher = harness.helper.create_publisher(RobotHeartbeat,
                                                f'{harness.namespace}/fleet/heartbeat',
                                                STATUS_QOS)
    for software in ('rel-1', 'rel-1', 'rel-2'):  # the repeat is not announced again
        publisher.publish(heartbeat_msg('kiwi-mdns', software))
        deadline = time.monotonic() + 10
        while (get(node.status_port)[1] or {}).get('software_version') != software:
            assert time.monotonic() < deadline, 'the status did not follow the heartbeat'
            time.sleep(0.05)
    announcing = [t for t in threading.enumerate() if t.name == 'lekiwi-mdns']
    assert len(announcing) == 1
    harness.remove(node)  # destroys it: the goodbye, then the endpoint closes
    assert not announcing[0].is_alive()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f'http://127.0.0.1:{node.status_port}/lekiwi/status',
                               timeout=2)


def test_the_node_is_off_by_default_and_opens_no_port(harness: RosHarness) -> None:
    node = DiscoveryNode(**harness.kwargs())
    harness.add(node)
    assert node.status_port is None and not node.config.enabled


def test_a_taken_port_does_not_stop_the_node(harness: RosHarness) -> None:
    endpoint = StatusEndpoint('127.0.0.1', 0, lambda: None)
    try:
        node = DiscoveryNode(**harness.kwargs(discovery_enabled=True, mdns_announce=False,
                                              status_port=endpoint.port))
        harness.add(node)
        assert node.status_port is None
    finally:
        endpoint.close()


def test_the_announcement_is_browsed_updated_and_withdrawn_by_goodbye() -> None:
    """A real zeroconf announcer and browser in a namespace with multicast on loopback."""
    try:
        name = make_netns()
    except NetnsUnavailable as exc:
        pytest.skip(f'no multicast-capable network namespace: {exc}')
    outcome: dict[str, Any] = {}

    def main() -> None:
        from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

        from lekiwi_agent_ros.discovery.announcer import MdnsAnnouncer

        enter_netns(name)
        events: list[tuple[str, str]] = []
        props: list[dict[bytes, bytes | None]] = []

        class Listener(ServiceListener):
            def add_service(self, zc: Zeroconf, type_: str, svc: str) -> None:
                events.append(('added', svc))
                info = zc.get_service_info(type_, svc, 3000)
                if info is not None:
                    props.append(dict(info.properties))

            def update_service(self, zc: Zeroconf, type_: str, svc: str) -> None:
                events.append(('updated', svc))
                info = zc.get_service_info(type_, svc, 3000)
                if info is not None:
                    props.append(dict(info.properties))

            def remove_service(self, zc: Zeroconf, type_: str, svc: str) -> None:
                events.append(('removed', svc))

        browser_zc = Zeroconf(interfaces=['127.0.0.1'])
        browser = ServiceBrowser(browser_zc, SERVICE_TYPE, Listener())
        announcer = MdnsAnnouncer(['127.0.0.1'], ttl_s=30, interfaces=['127.0.0.1'])
        try:
            announcer.announce(AgentStatus('kiwi-m', '0.1.0', 'rel-1', 'b', 2, 8765))
            _wait(lambda: props)
            announcer.announce(AgentStatus('kiwi-m', '0.1.0', 'rel-2', 'b', 2, 8765))
            _wait(lambda: any(p.get(b'software_version') == b'rel-2' for p in props))
            announcer.close()
            _wait(lambda: ('removed', STATUS_NAME) in events)
        finally:
            browser.cancel()
            browser_zc.close()
            outcome['events'], outcome['props'] = events, props

    def guarded() -> None:
        try:
            main()
        except BaseException as exc:  # handed to the test's thread below
            outcome['error'] = exc

    thread = threading.Thread(target=guarded, daemon=True)
    try:
        thread.start()
        thread.join(60)
    finally:
        delete_netns(name)
    if 'error' in outcome:
        raise outcome['error']
    events, props = outcome['events'], outcome['props']
    assert events[0] == ('added', STATUS_NAME)
    assert props[0][b'robot_id'] == b'kiwi-m' and props[0][b'software_version'] == b'rel-1'
    assert events[-1] == ('removed', STATUS_NAME)


STATUS_NAME = 'kiwi-m._lekiwi._tcp.local.'


def _wait(check: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError('mDNS condition not met in time')
        time.sleep(0.05)
