"""Deployments on the robot: manifests, differential transfer, the executor and its node."""
