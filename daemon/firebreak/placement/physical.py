"""Placement checks that labels cannot fool: filesystems, repository identity, hosts.

A label says "datacenter: FRA1"; these look at the machine: a local repository on the same
filesystem as the data, two sites that are one repository (same path, same URL, or the same
restic repository id), a "remote" site that is this machine, two sites on one host.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from firebreak.config.model import Config
from firebreak.outcomes import RepositoryNotFound
from firebreak.placement.policy import Severity, Violation, effective_policy
from firebreak.placement.targets import Target, site_target
from firebreak.restic import commands
from firebreak.restic.ask import ask_site
from firebreak.restic.messages import repository_id

DNS_TIMEOUT_SECONDS = 2.0
# mountinfo writes a space in a mount point as \040 (and a tab, newline or backslash alike).
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
PROBE_TIMEOUT_SECONDS = 30.0

Resolver = Callable[[str], set[str]]


@dataclass(frozen=True)
class Note:
    """Something the placement check could not verify; worth a look, not an error."""

    source: str | None
    site: str | None
    message: str


class HostLookups:
    """Resolves each host once, in parallel, with a short timeout; failures become notes.

    Each lookup runs on a daemon thread: a resolver that hangs (glibc retries for 30 s and
    more) can neither delay the answer nor keep the process from exiting.
    """

    def __init__(
        self, resolver: Resolver | None = None, timeout: float = DNS_TIMEOUT_SECONDS
    ) -> None:
        self._resolver = resolver or _getaddrinfo
        self._timeout = timeout
        self._cache: dict[str, set[str] | str] = {}
        self._pending: dict[str, tuple[Future[set[str]], float]] = {}

    def start(self, hosts: Iterable[str]) -> None:
        for host in set(hosts):
            if host not in self._cache and host not in self._pending and _literal(host) is None:
                self._pending[host] = (self._lookup(host), time.monotonic() + self._timeout)

    def _lookup(self, host: str) -> Future[set[str]]:
        future: Future[set[str]] = Future()

        def work() -> None:
            try:
                future.set_result(self._resolver(host))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=work, name=f"dns-{host}", daemon=True).start()
        return future

    def addresses(self, host: str) -> set[str] | str:
        """The host's addresses, or why they are unknown."""
        if host in self._cache:
            return self._cache[host]
        literal = _literal(host)
        if literal is not None:
            result: set[str] | str = {literal}
        else:
            self.start([host])
            future, deadline = self._pending[host]
            try:
                result = future.result(timeout=max(deadline - time.monotonic(), 0.0))
            except FutureTimeout:
                result = f"looking up {host} took longer than {self._timeout:g}s"
            except OSError as exc:
                result = f"cannot look up {host}: {exc.strerror or exc}"
        self._cache[host] = result
        return result

    def close(self) -> None:
        """Nothing to wait for: lookups still running are abandoned."""


def _getaddrinfo(host: str) -> set[str]:
    return {str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(host, None)}


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def is_this_machine(address: str) -> bool:
    """Loopback, unspecified, or an address bound to one of this machine's interfaces."""
    ip = ipaddress.ip_address(address)
    if ip.is_loopback or ip.is_unspecified:
        return True
    if ip.is_link_local:
        return False
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))  # only addresses this machine owns can be bound
        except OSError:
            return False
    return True


def physical_violations(
    config: Config,
    source_name: str,
    lookups: HostLookups | None,
    repository_ids: dict[str, str],
) -> tuple[list[Violation], list[Note]]:
    """Filesystem, repository and host checks for one source. ``lookups`` None: offline,
    only IP literals are checked."""
    severity = effective_policy(config, source_name).enforce
    source = config.sources[source_name]
    targets = {name: site_target(config.sites[name]) for name in source.sites}
    violations: list[Violation] = []
    notes: list[Note] = []

    def add(rule: str, sites: tuple[str, ...], message: str) -> None:
        violations.append(
            Violation(source_name, rule, sites, f'source "{source_name}": {message}', severity)
        )

    # A local repository whose disk is not mounted sits, for now, on whatever is under the
    # mount point: its filesystem says nothing, and its runs find the repository lost.
    unmounted: set[str] = set()
    for name, target in targets.items():
        point = unmounted_mount_point(Path(target.path)) if target.kind == "local" else None
        if point is not None:
            unmounted.add(name)
            notes.append(
                Note(
                    source_name,
                    name,
                    f"{target.path} is under {point}, a mount point in {FSTAB} that is not "
                    "mounted: its filesystem is checked once it is",
                )
            )
        elif target.kind == "local":
            _same_filesystem(source.paths, name, target, add, notes, source_name)
    same: set[frozenset[str]] = set()
    for (name_a, a), (name_b, b) in itertools.combinations(targets.items(), 2):
        checked = a.kind == b.kind == "local" and not unmounted & {name_a, name_b}
        if checked and not _one_repository(a, b):
            shared = _shared_filesystem(a, b)
            if shared is not None:
                add(
                    "same_filesystem",
                    (name_a, name_b),
                    f'sites "{name_a}" ({a.path}) and "{name_b}" ({b.path}) are on one '
                    f"filesystem ({shared}) — one failed disk or one full filesystem takes both "
                    "copies",
                )
        if _one_repository(a, b):
            same.add(frozenset((name_a, name_b)))
            add(
                "same_repository",
                (name_a, name_b),
                f'sites "{name_a}" and "{name_b}" are the same repository ({_show(a)}) — '
                "that is one copy, not two",
            )
        elif repository_ids.get(name_a) and repository_ids.get(name_a) == repository_ids.get(
            name_b
        ):
            same.add(frozenset((name_a, name_b)))
            add(
                "same_repository",
                (name_a, name_b),
                f'sites "{name_a}" and "{name_b}" reach the same restic repository '
                f"(id {repository_ids[name_a][:8]}) by different URLs — that is one copy, not two",
            )
    violations += _host_violations(source_name, targets, lookups, notes, same, severity)
    return violations, notes


def _same_filesystem(
    paths: list[Path],
    name: str,
    target: Target,
    add: Callable[[str, tuple[str, ...], str], None],
    notes: list[Note],
    source_name: str,
) -> None:
    repo_device = _device(Path(target.path))
    for path in paths:
        if not path.exists():
            notes.append(
                Note(
                    source_name,
                    name,
                    f"source path {path} does not exist; its filesystem is not checked",
                )
            )
            continue
        if repo_device is not None and path.stat().st_dev == repo_device:
            add(
                "same_filesystem",
                (name,),
                f'site "{name}" ({target.path}) is on the same filesystem as source path {path} '
                "— one failed disk or one full filesystem takes the data and this copy together",
            )
            return


def _device(path: Path) -> int | None:
    """The device of path, or of its nearest existing parent (a repository not created yet).
    Symlinks are followed, and bind mounts or a device mounted twice show one device."""
    existing = _nearest_existing(path)
    return None if existing is None else existing.stat().st_dev


def _nearest_existing(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        try:
            candidate.stat()
        except FileNotFoundError:
            continue
        except OSError:
            return None
        return candidate
    return None


def _shared_filesystem(a: Target, b: Target) -> str | None:
    """What two local repositories share when they are on one filesystem, or None."""
    path_a, path_b = _nearest_existing(Path(a.path)), _nearest_existing(Path(b.path))
    if path_a is None or path_b is None:
        return None
    device = path_a.stat().st_dev
    if path_b.stat().st_dev != device:
        return None
    return describe_filesystem(Path(os.path.realpath(path_a)), device)


# Where the system mounts its disks (a module value, so that tests can name another file).
FSTAB = Path("/etc/fstab")


def unmounted_mount_point(path: Path) -> Path | None:
    """The mount point, from FSTAB, that holds path and is not mounted now (a disk that
    failed to mount, or was forgotten), or None."""
    try:
        lines = FSTAB.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    points = set()
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and fields[1].startswith("/"):
            points.add(Path(_OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[1])))
    deepest = next((p for p in (path, *path.parents) if p in points and p != Path("/")), None)
    if deepest is None or os.path.ismount(deepest):
        return None
    return deepest


def describe_filesystem(path: Path, device: int) -> str:
    """``/dev/vda1 (ext4) mounted at /``: the mount holding path, from /proc/self/mountinfo."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    best: tuple[str, str, str] | None = None
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        mine, _, theirs = line.partition(" - ")
        fields, rest = mine.split(), theirs.split()
        if len(fields) < 5 or len(rest) < 2 or fields[2] != wanted:
            continue
        point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = path == Path(point) or Path(point) in path.parents
        if inside and (best is None or len(point) > len(best[0])):
            best = (point, rest[0], rest[1])
    if best is None:
        return f"device {wanted}"
    point, kind, source = best
    return f"{source} ({kind}) mounted at {point}"


def _real(path: str) -> str:
    return os.path.realpath(path)


def _one_repository(a: Target, b: Target) -> bool:
    if a.kind == b.kind == "local":
        return _real(a.path) == _real(b.path)
    return a.identity == b.identity


def _show(target: Target) -> str:
    return target.path if target.kind == "local" else target.identity


def _host_violations(
    source_name: str,
    targets: dict[str, Target],
    lookups: HostLookups | None,
    notes: list[Note],
    same: set[frozenset[str]],
    severity: Severity,
) -> list[Violation]:
    addresses: dict[str, set[str]] = {}
    found: list[Violation] = []
    for name, target in targets.items():
        if target.kind != "remote" or not target.host:
            continue
        if target.alias:
            notes.append(
                Note(
                    source_name,
                    name,
                    f"host {target.host!r} is an ssh alias (sftp.command); not checked",
                )
            )
            continue
        if lookups is None:
            literal = _literal(target.host)
            if literal is None:
                continue
            result: set[str] | str = {literal}
        else:
            result = lookups.addresses(target.host)
        if isinstance(result, str):
            notes.append(
                Note(source_name, name, f"{result}; same-host checks skipped for this site")
            )
            continue
        addresses[name] = result
        local = sorted(address for address in result if is_this_machine(address))
        if local:
            found.append(
                Violation(
                    source_name,
                    "this_machine",
                    (name,),
                    f'source "{source_name}": site "{name}" is on this machine '
                    f"({_host_and(target.host, local)}) — whatever destroys this machine "
                    "destroys this copy too",
                    severity,
                )
            )
    for name_a, name_b in itertools.combinations(addresses, 2):
        shared = addresses[name_a] & addresses[name_b]
        if shared and frozenset((name_a, name_b)) not in same:
            found.append(
                Violation(
                    source_name,
                    "same_host",
                    (name_a, name_b),
                    f'source "{source_name}": sites "{name_a}" and "{name_b}" are on the same host '
                    f"({', '.join(sorted(shared))}) — one machine, one building",
                    severity,
                )
            )
    return found


def _host_and(host: str, addresses: list[str]) -> str:
    shown = ", ".join(addresses)
    return host if shown == _literal(host) else f"{host} → {shown}"


def probe_repository_ids(config: Config, sites: Iterable[str]) -> tuple[dict[str, str], list[Note]]:
    """Ask each reachable site for its restic repository id (``restic cat config``)."""
    names = sorted(set(sites))
    notes: list[Note] = []

    def probe(name: str) -> tuple[str, str | None, str | None]:
        answer = ask_site(config, name, commands.cat_config, timeout=PROBE_TIMEOUT_SECONDS)
        if isinstance(answer.error, RepositoryNotFound):
            return name, None, "no repository there yet; checked once it exists"
        if answer.result is None or answer.error is not None:
            return name, None, answer.problem
        return name, repository_id(answer.result), "restic cat config printed no repository id"

    ids: dict[str, str] = {}
    if not names:
        return ids, notes
    with ThreadPoolExecutor(max_workers=min(len(names), max(config.run_limit, 4))) as pool:
        for name, found, why in pool.map(probe, names):
            if found:
                ids[name] = found
                continue
            notes.append(Note(None, name, f"repository id not checked ({why})"))
    return ids, notes
