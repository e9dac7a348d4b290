"""firebreak: restic backups to three or more geographically distinct sites, proven."""

from __future__ import annotations

__version__ = "0.1.0"
