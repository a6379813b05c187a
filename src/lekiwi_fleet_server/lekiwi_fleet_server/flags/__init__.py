"""Feature flags: operators' changes as events, delivery to robots, guards, migration plans."""
