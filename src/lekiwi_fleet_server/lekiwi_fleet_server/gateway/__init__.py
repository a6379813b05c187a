"""Robot gateway: picows WebSocket server, sessions, commit batcher, update bus, commands."""
