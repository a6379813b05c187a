"""Pure domain logic of the fleet server: no FastAPI, no SQL drivers, no I/O."""
