"""Cycles: a source's fan-out to its sites, and one run's lifecycle (record → restic → record)."""
