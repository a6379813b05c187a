"""REST routes, one resource a module."""
