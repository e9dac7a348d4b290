"""The run history: SQLAlchemy models, the queries, the engine and migrations glue."""
