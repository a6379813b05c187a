"""Robot side of discovery: the local status endpoint and the `_lekiwi._tcp` announcement."""
