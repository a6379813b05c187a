"""Message classes used by the agent, imported in one place.

Importing through this module lets the agent keep heavy imports (numpy, pulled in by some
generated packages) out of its process; nodes import their message classes from here.
"""

from lekiwi_fleet_msgs.msg import (  # noqa: F401
    DeploymentStatus,
    FleetCommand,
    FleetEvent,
    ResourceUsage,
    RobotHeartbeat,
    TelemetryDelta,
    TeleopStatus,
    WebRtcStatus,
)
from lekiwi_fleet_msgs.srv import GetAgentStatus, RequestTelemetrySnapshot  # noqa: F401
from sensor_msgs.msg import BatteryState, CompressedImage, Image, Joy  # noqa: F401
