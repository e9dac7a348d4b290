"""The restic adapter: version gates, pure argv builders, the one runner, error classes.

It knows nothing of the database or the scheduler.
"""
