"""Pure builders: restic's argv and environment for one operation at one site.

Nothing here reads a file, runs a program or touches ``os.environ``: secrets arrive already
resolved (see ``access.py``), so every builder is testable without restic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from firebreak.config.model import Retention, Site, Source
from firebreak.restic.runner import Invocation

SOURCE_TAG_PREFIX = "firebreak.source="
PROGRESS_FPS = "0.5"  # a status line every 2 s: enough for the stall detector, cheap to parse
# What a restic process may inherit from firebreak's own environment; nothing else.
INHERITED = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "SSH_AUTH_SOCK",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)


@dataclass(frozen=True)
class SiteAccess:
    """A site with its references resolved: what restic needs to open the repository."""

    name: str
    site: Site
    repository: str
    password: str | None = field(default=None, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)


def source_tag(source_name: str) -> str:
    return f"{SOURCE_TAG_PREFIX}{source_name}"


def inherited(parent: Mapping[str, str]) -> dict[str, str]:
    """The part of firebreak's environment a restic process may see."""
    return {key: parent[key] for key in INHERITED if key in parent}


def build_env(access: SiteAccess, parent: Mapping[str, str]) -> dict[str, str]:
    env = inherited(parent)
    env.update(access.env)
    env["RESTIC_REPOSITORY"] = access.repository
    env["RESTIC_PROGRESS_FPS"] = PROGRESS_FPS
    site = access.site
    if site.password_file is not None:
        env["RESTIC_PASSWORD_FILE"] = str(site.password_file)
    elif site.password_command is not None:
        env["RESTIC_PASSWORD_COMMAND"] = site.password_command
    return env


def global_args(site: Site, cache_dir: Path) -> tuple[str, ...]:
    options: list[str] = ["--cache-dir", str(cache_dir)]
    for key, value in site.options.items():
        options += ["-o", f"{key}={value}"]
    if site.limit_upload:
        options += ["--limit-upload", str(site.limit_upload)]
    if site.limit_download:
        options += ["--limit-download", str(site.limit_download)]
    return tuple(options)


def _invocation(
    binary: str,
    command: tuple[str, ...],
    access: SiteAccess,
    cache_dir: Path,
    parent_env: Mapping[str, str],
) -> Invocation:
    return Invocation(
        argv=(binary, *command[:1], "--json", *global_args(access.site, cache_dir), *command[1:]),
        env=build_env(access, parent_env),
        password=access.password,
        secrets=access.secrets,
    )


def init(
    binary: str, access: SiteAccess, cache_dir: Path, parent_env: Mapping[str, str]
) -> Invocation:
    return _invocation(binary, ("init",), access, cache_dir, parent_env)


def backup(
    binary: str,
    access: SiteAccess,
    cache_dir: Path,
    parent_env: Mapping[str, str],
    *,
    source_name: str,
    source: Source,
    host: str,
) -> Invocation:
    command: list[str] = ["backup", "--host", host, "--tag", source_tag(source_name)]
    for tag in source.tags:
        command += ["--tag", tag]
    for pattern in source.exclude:
        command += ["--exclude", pattern]
    for name in source.exclude_if_present:
        command += ["--exclude-if-present", name]
    if source.one_file_system:
        command.append("--one-file-system")
    command += ["--", *(str(path) for path in source.paths)]
    return _invocation(binary, tuple(command), access, cache_dir, parent_env)


def snapshots(
    binary: str,
    access: SiteAccess,
    cache_dir: Path,
    parent_env: Mapping[str, str],
    *,
    source_name: str | None = None,
) -> Invocation:
    command: tuple[str, ...] = ("snapshots",)
    if source_name is not None:
        command += ("--tag", source_tag(source_name))
    return _invocation(binary, command, access, cache_dir, parent_env)


def unlock(
    binary: str, access: SiteAccess, cache_dir: Path, parent_env: Mapping[str, str]
) -> Invocation:
    """``restic unlock``: removes only stale locks (dead owner on this host, or 30 min old)."""
    return _invocation(binary, ("unlock",), access, cache_dir, parent_env)


def forget(
    binary: str,
    access: SiteAccess,
    cache_dir: Path,
    parent_env: Mapping[str, str],
    *,
    source_name: str,
    host: str,
    retention: Retention,
    dry_run: bool = False,
) -> Invocation:
    """``restic forget --prune`` of this source's snapshots from this host only: sources
    (and hosts) sharing a repository never forget each other's snapshots."""
    command: list[str] = ["forget", "--host", host, "--tag", source_tag(source_name)]
    for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        count = getattr(retention, f"keep_{rule}")
        if count is not None:
            command += [f"--keep-{rule}", str(count)]
    if retention.keep_within is not None:
        command += ["--keep-within", restic_duration(retention.keep_within)]
    for tag in retention.keep_tags:
        command += ["--keep-tag", tag]
    command.append("--dry-run" if dry_run else "--prune")
    return _invocation(binary, tuple(command), access, cache_dir, parent_env)


def restic_duration(value: timedelta) -> str:
    """restic's duration form (days and hours: 1y5m7d2h, no weeks, no minutes)."""
    hours = max(int(value.total_seconds() // 3600), 1)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if days else f"{hours}h"


def ls(
    binary: str,
    access: SiteAccess,
    cache_dir: Path,
    parent_env: Mapping[str, str],
    *,
    snapshot: str,
) -> Invocation:
    """``restic ls --json SNAPSHOT``: the snapshot, then one line per file or directory."""
    return _invocation(binary, ("ls", snapshot), access, cache_dir, parent_env)


def check(
    binary: str,
    access: SiteAccess,
    cache_dir: Path,
    parent_env: Mapping[str, str],
    *,
    subset: tuple[int, int] | None,
) -> Invocation:
    """``restic check``; subset (n, N) reads that part of the pack data too."""
    command: tuple[str, ...] = ("check",)
    if subset is not None:
        command += (f"--read-data-subset={subset[0]}/{subset[1]}",)
    return _invocation(binary, command, access, cache_dir, parent_env)


def cat_config(
    binary: str, access: SiteAccess, cache_dir: Path, parent_env: Mapping[str, str]
) -> Invocation:
    """``restic cat config``: the repository's id, to tell two URLs for one repository apart."""
    return _invocation(binary, ("cat", "config"), access, cache_dir, parent_env)


def restore(
    binary: str,
    access: SiteAccess,
    cache_dir: Path,
    parent_env: Mapping[str, str],
    *,
    snapshot: str,
    target: Path,
    include: tuple[str, ...] = (),
    verify: bool = False,
) -> Invocation:
    command: list[str] = ["restore", snapshot, "--target", str(target)]
    for pattern in include:
        command += ["--include", pattern]
    if verify:
        command.append("--verify")
    return _invocation(binary, tuple(command), access, cache_dir, parent_env)


def version(binary: str, parent_env: Mapping[str, str]) -> Invocation:
    return Invocation(argv=(binary, "version"), env=inherited(parent_env))
