"""Read-only questions to the sites themselves (restic snapshots), asked concurrently."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from firebreak.config.model import Config
from firebreak.restic import commands
from firebreak.restic.ask import ask_site
from firebreak.restic.messages import Snapshot, snapshot_list


@dataclass(frozen=True)
class SiteSnapshots:
    site: str
    snapshots: list[Snapshot]
    error: str | None = None


def list_snapshots(
    config: Config, source_name: str, sites: list[str], cancel: threading.Event | None = None
) -> list[SiteSnapshots]:
    """The source's snapshots at each site, asked at once; a site that cannot answer (or
    stalls, or is still asking when cancel is set) carries its error."""
    with ThreadPoolExecutor(max_workers=max(1, len(sites))) as pool:
        return list(
            pool.map(lambda site: _site_snapshots(config, source_name, site, cancel), sites)
        )


def _site_snapshots(
    config: Config, source_name: str, site_name: str, cancel: threading.Event | None
) -> SiteSnapshots:
    answer = ask_site(
        config,
        site_name,
        lambda at: commands.snapshots(at, source_name=source_name),
        cancel=cancel,
    )
    if answer.result is None or answer.error is not None:
        return SiteSnapshots(site_name, [], answer.problem)
    return SiteSnapshots(site_name, snapshot_list(answer.result))
