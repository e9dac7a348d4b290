"""``make bench`` (network part): a cycle to three REST sites behind links of different speeds.

Each site is ``rclone serve restic`` in a network namespace of its own, behind a veth link
slowed by ``tc … tbf`` (tests/support/netns.py): 50, 35 and 20 Mbit/s. The source is
BENCH_NET_MB megabytes of random data (default 42). Each round, into fresh repositories
(created untimed), in turn:

- the slowest site alone (plain ``restic backup``);
- plain restic to the three sites at once;
- a serial loop of plain ``restic backup``, one site after the other;
- ``firebreak backup`` with the default run limits;
- ``firebreak backup`` with ``max_parallel_runs: 2``, the default before (which two sites go
  first is a race: the slowest may wait for a slot).

The median of BENCH_REPEAT rounds (default 3) of each, and firebreak's ratio to the slowest
site alone against its target: a cycle takes at most 1.15 × its slowest site (issue 17,
docs/performance.md). Needs root, ip, tc, nft and rclone; says so and stops otherwise.
Nothing here asserts a time.
"""

from __future__ import annotations

import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.benchmarks.measure import parallel, restic_version, timed
from tests.benchmarks.verdicts import judge, skipped
from tests.support.netns import FarRestServer, Link
from tests.support.setup import Setup

RATES = {"a": "50mbit", "b": "35mbit", "c": "20mbit"}
TARGET = 1.15
TARGET_NAME = "REST sites, slow links: × the slowest site alone"


def main() -> None:
    missing = [tool for tool in ("ip", "tc", "nft", "rclone") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        skipped(TARGET_NAME, f"needs root and {', '.join(missing) or 'ip, tc, nft'}")
        return
    megabytes = int(os.environ.get("BENCH_NET_MB", "42"))
    runs = int(os.environ.get("BENCH_REPEAT", "3"))
    work = Path(tempfile.mkdtemp(prefix="firebreak-bench-net-"))
    links: list[Link] = []
    servers: list[FarRestServer] = []
    try:
        for name, rate in RATES.items():
            link = Link()
            link.create()
            links.append(link)
            link.slow(rate)
            server = FarRestServer(link, work / f"served-{name}", log_path=work / f"{name}.log")
            server.start()
            servers.append(server)
        _bench(work, megabytes, runs, servers)
    finally:
        for server in servers:
            server.close()
        for link in links:
            link.delete()
        shutil.rmtree(work, ignore_errors=True)


def _bench(work: Path, megabytes: int, runs: int, servers: list[FarRestServer]) -> None:
    source = work / "data"
    source.mkdir()
    (source / "big.bin").write_bytes(os.urandom(megabytes * 1024 * 1024))
    restic = shutil.which("restic") or "restic"
    rounds: dict[str, list[float]] = {}
    for round_ in range(runs):
        for what, seconds in _round(work / f"round-{round_}", servers, source, restic).items():
            rounds.setdefault(what, []).append(seconds)
    print(
        f"\nrestic {restic_version(restic)}; {megabytes} MB to 3 REST sites behind "
        f"{', '.join(RATES.values())}; median of {runs}; {os.cpu_count()} cores"
    )
    medians = {what: statistics.median(taken) for what, taken in rounds.items()}
    slowest = medians[ALONE]
    for what, seconds in medians.items():
        print(f"  {what:<34} {seconds:7.1f} s   {seconds / slowest:5.2f} × the slowest site")
    judge(TARGET_NAME, medians[OURS] / slowest, TARGET)


ALONE = "the slowest site alone (restic)"
OURS = "firebreak backup (defaults)"
OLD = "firebreak, max_parallel_runs: 2"


def _round(root: Path, servers: list[FarRestServer], source: Path, restic: str) -> dict[str, float]:
    """One of each measure, into repositories of their own."""
    root.mkdir()
    setup = Setup(root)
    for name, server in zip(RATES, servers, strict=True):
        setup.rest_site(name, server)
    setup.source("data", list(RATES), paths=[str(source)])
    env = {**os.environ, "RESTIC_PASSWORD_FILE": str(setup.password_file)}
    cache = str(root / "restic-cache")
    sites = {name: site["repository"].rstrip("/") for name, site in setup.sites.items()}

    def fresh(label: str) -> dict[str, str]:
        """Empty repositories at every site for one measure (created untimed)."""
        made = {name: f"{url}-{label}" for name, url in sites.items()}
        for repository in made.values():
            init = [restic, "-r", repository, "init", "-q", "--cache-dir", cache]
            subprocess.run(init, env=env, check=True, capture_output=True)
        return made

    def backup(repository: str) -> list[str]:
        return [restic, "-r", repository, "--cache-dir", cache, "backup", "-q", str(source)]

    taken = {ALONE: timed(backup(fresh("alone")["c"]), env).seconds}
    together = [backup(repository) for repository in fresh("parallel").values()]
    taken["three sites at once (restic)"] = parallel(together, env).seconds
    loop = " && ".join(shlex.join(backup(repository)) for repository in fresh("serial").values())
    taken["a serial loop (restic)"] = timed(["sh", "-ec", loop], env).seconds
    for label, what, limit in (("firebreak", OURS, None), ("old", OLD, 2)):
        for name, repository in fresh(label).items():
            setup.sites[name]["repository"] = repository
        if limit is not None:
            setup.top["max_parallel_runs"] = limit
        # A history of its own: in the other's, these sites hold other repositories.
        setup.top["state_dir"] = str(root / f"state-{label}")
        config = setup.write()
        firebreak = [sys.executable, "-m", "firebreak", "-c", str(config), "backup", "data"]
        taken[what] = timed(firebreak).seconds
    return taken


if __name__ == "__main__":
    main()
