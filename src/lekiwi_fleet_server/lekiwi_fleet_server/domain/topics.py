"""Robot topics of protocol lekiwi-fleet/1, how the server treats each (docs/robot-protocol.md)."""

from enum import Enum

PROTOCOL_VERSION = 'lekiwi-fleet/1'

HEARTBEAT = 'fleet/heartbeat'
TELEOP_STATUS = 'teleop/status'
TELEMETRY = 'fleet/telemetry'
EVENTS = 'fleet/events'
DEPLOYMENT_STATUS = 'fleet/deployment_status'
ACK = 'fleet/ack'


class Delivery(Enum):
    """How a topic's messages are kept: state is superseded, history is kept whole."""

    STATE = 'state'
    HISTORY = 'history'


TOPIC_TYPES: dict[str, str] = {
    HEARTBEAT: 'lekiwi_fleet_msgs/msg/RobotHeartbeat',
    TELEOP_STATUS: 'lekiwi_fleet_msgs/msg/TeleopStatus',
    TELEMETRY: 'lekiwi_fleet_msgs/msg/TelemetryDelta',
    EVENTS: 'lekiwi_fleet_msgs/msg/FleetEvent',
    DEPLOYMENT_STATUS: 'lekiwi_fleet_msgs/msg/DeploymentStatus',
}

TOPIC_DELIVERY: dict[str, Delivery] = {
    HEARTBEAT: Delivery.STATE,
    TELEOP_STATUS: Delivery.STATE,
    TELEMETRY: Delivery.HISTORY,
    EVENTS: Delivery.HISTORY,
    DEPLOYMENT_STATUS: Delivery.HISTORY,
}
