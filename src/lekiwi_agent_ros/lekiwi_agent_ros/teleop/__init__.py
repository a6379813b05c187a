"""Teleoperation detection: signals, the scoring core and the monitor node."""
