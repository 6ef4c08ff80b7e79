"""Alembic migrations of the console store (run by ``Store.migrate``; no alembic.ini needed)."""
