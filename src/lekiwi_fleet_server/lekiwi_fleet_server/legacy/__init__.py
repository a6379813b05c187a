"""The legacy adapter: robots without the agent, polled over SSH in parallel."""
