"""Read-only questions to the sites themselves (restic snapshots), asked concurrently."""

from __future__ import annotations

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


def list_snapshots(config: Config, source_name: str, sites: list[str]) -> list[SiteSnapshots]:
    """The source's snapshots at each site; a site that cannot answer carries its error."""
    workers = max(1, min(config.max_parallel_runs, len(sites)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda site: _site_snapshots(config, source_name, site), sites))


def _site_snapshots(config: Config, source_name: str, site_name: str) -> SiteSnapshots:
    answer = ask_site(
        config,
        site_name,
        lambda at: commands.snapshots(at, source_name=source_name),
        timeout=config.sites[site_name].timeout.total_seconds(),
    )
    if answer.result is None or answer.error is not None:
        return SiteSnapshots(site_name, [], answer.problem)
    return SiteSnapshots(site_name, snapshot_list(answer.result))
