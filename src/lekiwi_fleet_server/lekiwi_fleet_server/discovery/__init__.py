"""Discovery: every way a robot can be found, merged into one inventory."""
