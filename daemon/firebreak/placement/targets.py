"""Where a restic repository URL points: a local path, a host, or a storage service."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from firebreak.config.model import Site
from firebreak.config.references import ENV_REFERENCE

_DEFAULT_PORTS = {"http": 80, "https": 443, "sftp": 22}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9]*):(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Target:
    """What the placement checks need to know about one site's repository."""

    kind: Literal["local", "remote", "service"]
    backend: str
    # The normalised repository, credentials removed: equal identities are one repository.
    identity: str
    path: str = ""
    host: str | None = None
    # The host is an ssh alias (a custom sftp.command decides where it goes): not resolvable.
    alias: bool = False


def site_target(site: Site) -> Target:
    # ${VAR}s are not resolved here (no secrets in placement): a variable stands for itself.
    repository = ENV_REFERENCE.sub(lambda m: f"{{{m.group(1)}}}", site.repository)
    target = parse_repository(repository)
    if target.backend == "sftp" and "sftp.command" in site.options:
        return replace(target, alias=True)
    return target


def is_local(site: Site) -> bool:
    """The site's repository is a path on this host (its runs cost this host's CPU and disk,
    not a link). One named whole by an environment variable (``${REPO}``) is taken as
    remote: what it is, is known only when it runs."""
    return site_target(site).kind == "local" and not ENV_REFERENCE.match(site.repository)


def parse_repository(repository: str) -> Target:
    match = _SCHEME.match(repository)
    if not match or match.group(1) == "local":
        path = match.group(2) if match else repository
        normal = posixpath.normpath(path)
        return Target("local", "local", f"local:{normal}", path=normal)
    backend, rest = match.group(1).lower(), match.group(2)
    if backend == "rest":
        return _from_url(backend, rest)
    if backend == "s3":
        return _from_url(backend, rest if "://" in rest else f"https://{rest}")
    if backend == "sftp":
        if rest.startswith("//"):
            parts = urlsplit(f"sftp:{rest}")
            host, port, path = (parts.hostname or "").lower(), _port(parts, 22), parts.path
        else:
            userhost, _, path = rest.partition(":")
            host, port = userhost.rpartition("@")[2].lower(), 22
        normal = "/" + posixpath.normpath(path).lstrip("/") if path else ""
        return Target("remote", backend, f"sftp://{host}:{port}{normal}", normal, host or None)
    # rclone, b2, azure, gs, swift ...: a provider's service, no host of ours to check.
    return Target("service", backend, f"{backend}:{rest.rstrip('/')}")


def _port(parts: SplitResult, default: int | None) -> int | None:
    try:
        return parts.port or default
    except ValueError:  # not a number: restic will say so when it runs
        return None


def _from_url(backend: str, url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = _port(parts, _DEFAULT_PORTS.get(scheme))
    path = posixpath.normpath(parts.path) if parts.path not in ("", "/") else ""
    identity = f"{backend}:{scheme}://{host}:{port}{path.rstrip('/')}"
    return Target("remote", backend, identity, path, host or None)


def location(target: Target, host: str) -> str:
    """Where a repository is, for every host of a history: its identity, qualified by the
    host for a local path (two hosts' /srv/restic are two repositories). A server is taken at
    its name, loopback included (an ssh tunnel on localhost may reach a server hosts share):
    hosts whose own servers answer under one name and path look like one repository."""
    if target.kind == "local":
        return f"{host}:{target.identity}"
    return target.identity
