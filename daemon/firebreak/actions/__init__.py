"""Every operation at a site (backup, restore, check, retention, drills), the path they share
(operation.py: lock, record, resolve, run, record), and the cycle: one source's fan-out to its
sites."""
