"""Fixtures shared by the system tests: they run the real server, PostgreSQL and rclpy nodes."""
