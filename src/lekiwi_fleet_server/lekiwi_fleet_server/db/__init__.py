"""Database schema (SQLAlchemy Core) and engine construction for PostgreSQL and SQLite."""
