"""The rollout engine: deployments driven through the robot gateway."""
