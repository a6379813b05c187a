"""The fleet uplink: outbox, rosbridge v2 session, WebSocket client and the node."""
