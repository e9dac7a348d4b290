"""Pure builders: restic's argv and environment for one operation at one site.

Nothing here reads a file, runs a program or touches ``os.environ``: secrets arrive already
resolved (see ``access.py``), so every builder is testable without restic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from firebreak.config.model import Config, Retention, Site, Source
from firebreak.restic.runner import Invocation
from firebreak.restic.version import MINIMUM, Features, ResticVersion, supports

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
# The commands that lock the repository: from restic 0.16 they wait for another's lock.
LOCKING = frozenset({"backup", "check", "forget", "prune", "restore"})


@dataclass(frozen=True)
class SiteAccess:
    """A site with its references resolved: what restic needs to open the repository."""

    name: str
    site: Site
    repository: str
    password: str | None = field(default=None, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class SiteRestic:
    """How to run restic at one site: the program and its version, the site's resolved access,
    restic's cache, and the environment firebreak runs in (restic inherits only the INHERITED
    part of it). An unknown version is taken as the oldest: no newer option is used."""

    binary: str
    access: SiteAccess
    cache_dir: Path
    parent_env: Mapping[str, str] = field(repr=False)
    version: ResticVersion = MINIMUM

    @classmethod
    def of(
        cls,
        config: Config,
        access: SiteAccess,
        parent_env: Mapping[str, str],
        version: ResticVersion = MINIMUM,
    ) -> SiteRestic:
        cache = config.site_cache_dir(access.name)
        return cls(config.restic.binary, access, cache, parent_env, version)

    def invocation(self, command: str, *args: str, cwd: str = "/") -> Invocation:
        """``restic COMMAND --json GLOBAL-OPTIONS ARGS``, run in cwd."""
        return Invocation(
            argv=(
                self.binary,
                command,
                "--json",
                *global_args(self.access.site, self.cache_dir),
                *self.lock_args(command),
                *args,
            ),
            env=build_env(self.access, self.parent_env),
            password=self.access.password,
            secrets=self.access.secrets,
            command=command,
            cwd=cwd,
        )

    def lock_args(self, command: str) -> tuple[str, ...]:
        """``--retry-lock`` where this restic has it and the command locks: the site's
        lock_wait, at most half its stall_timeout (restic prints nothing while it waits)."""
        site = self.access.site
        if (
            site.lock_wait is None
            or command not in LOCKING
            or not supports(self.version, Features.RETRY_LOCK)
        ):
            return ()
        wait = min(site.lock_wait, site.stall_timeout / 2)
        return ("--retry-lock", f"{max(int(wait.total_seconds()), 1)}s")


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


def init(at: SiteRestic) -> Invocation:
    return at.invocation("init")


def backup(
    at: SiteRestic, *, source_name: str, source: Source, host: str, stage: Path | None = None
) -> Invocation:
    """``restic backup`` of the source's paths, or of its dump's stage: run from inside it
    as ``.``, so the snapshot holds the dump files at its root (``/app.pgdump``)."""
    args: list[str] = ["--host", host, "--tag", source_tag(source_name)]
    for tag in source.tags:
        args += ["--tag", tag]
    if stage is not None:
        return at.invocation("backup", *args, "--", ".", cwd=str(stage))
    for pattern in source.exclude:
        args += ["--exclude", pattern]
    for name in source.exclude_if_present:
        args += ["--exclude-if-present", name]
    if source.one_file_system:
        args.append("--one-file-system")
    args += ["--", *(str(path) for path in source.paths)]
    return at.invocation("backup", *args)


# The tag of the tiny snapshots written to prove that a site refuses deletes: never any
# source's, so no retention, listing or restore of a source sees them.
CANARY_TAG = "firebreak:canary"


def canary_backup(at: SiteRestic, *, host: str, stage: Path) -> Invocation:
    """``restic backup`` of the canary directory, from inside it."""
    return at.invocation("backup", "--host", host, "--tag", CANARY_TAG, "--", ".", cwd=str(stage))


def forget_snapshot(at: SiteRestic, snapshot_id: str) -> Invocation:
    """``restic forget SNAPSHOT`` (no prune): one snapshot, by its id."""
    return at.invocation("forget", "--", snapshot_id)


def snapshots(
    at: SiteRestic, *, source_name: str | None = None, host: str | None = None
) -> Invocation:
    """The snapshots at a site: of one source, of one host (restic's --host), or all."""
    tagged = ("--tag", source_tag(source_name)) if source_name is not None else ()
    hosted = ("--host", host) if host is not None else ()
    return at.invocation("snapshots", *tagged, *hosted)


def unlock(at: SiteRestic) -> Invocation:
    """``restic unlock``: removes only stale locks (dead owner on this host, or 30 min old)."""
    return at.invocation("unlock")


def forget(
    at: SiteRestic,
    *,
    source_name: str,
    host: str,
    retention: Retention,
    dry_run: bool = False,
    prune: bool = True,
) -> Invocation:
    """``restic forget --prune`` of this source's snapshots from this host only: sources
    (and hosts) sharing a repository never forget each other's snapshots. prune: False
    where the hosts sharing it prune it once for all (``prune``)."""
    args: list[str] = ["--host", host, "--tag", source_tag(source_name)]
    for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        count = getattr(retention, f"keep_{rule}")
        if count is not None:
            args += [f"--keep-{rule}", str(count)]
    if retention.keep_within is not None:
        args += ["--keep-within", restic_duration(retention.keep_within)]
    for tag in retention.keep_tags:
        args += ["--keep-tag", tag]
    if dry_run:
        args.append("--dry-run")
    elif prune:
        args.append("--prune")
    return at.invocation("forget", *args)


def prune(at: SiteRestic) -> Invocation:
    """``restic prune``: the data no snapshot refers to any more, removed."""
    return at.invocation("prune")


def restic_duration(value: timedelta) -> str:
    """restic's duration form (days and hours: 1y5m7d2h, no weeks, no minutes)."""
    hours = max(int(value.total_seconds() // 3600), 1)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if days else f"{hours}h"


def ls(at: SiteRestic, *, snapshot: str) -> Invocation:
    """``restic ls --json SNAPSHOT``: the snapshot, then one line per file or directory."""
    return at.invocation("ls", snapshot)


def check(at: SiteRestic, *, subset: tuple[int, int] | None, read_all: bool = False) -> Invocation:
    """``restic check``; subset (n, N) reads that part of the pack data too, read_all all."""
    if read_all:
        return at.invocation("check", "--read-data")
    reading = (f"--read-data-subset={subset[0]}/{subset[1]}",) if subset is not None else ()
    return at.invocation("check", *reading)


def cat_config(at: SiteRestic) -> Invocation:
    """``restic cat config``: the repository's id, to tell two URLs for one repository apart."""
    return at.invocation("cat", "config")


def cat_snapshot(at: SiteRestic, snapshot: str) -> Invocation:
    """``restic cat snapshot ID``: does the repository hold this snapshot (an id or prefix)?"""
    return at.invocation("cat", "snapshot", snapshot)


def restore(
    at: SiteRestic,
    *,
    snapshot: str,
    target: Path,
    include: tuple[str, ...] = (),
    verify: bool = False,
) -> Invocation:
    args: list[str] = [snapshot, "--target", str(target)]
    for pattern in include:
        args += ["--include", pattern]
    if verify:
        args.append("--verify")
    return at.invocation("restore", *args)


def version(binary: str, parent_env: Mapping[str, str]) -> Invocation:
    return Invocation(argv=(binary, "version"), env=inherited(parent_env), command="version")
