"""REST API and dashboard stream (FastAPI)."""
