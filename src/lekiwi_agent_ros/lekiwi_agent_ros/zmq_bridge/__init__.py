"""The ZeroMQ relay between a stock LeRobot LeKiwi host and its operators, and its node."""
