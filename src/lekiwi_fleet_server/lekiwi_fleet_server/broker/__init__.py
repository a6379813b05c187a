"""Pieces shared between server processes: presence registry, command routing, transport."""
