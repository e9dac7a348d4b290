"""Alembic migrations for firebreak's run history, shipped as ``firebreak.migrations``."""
