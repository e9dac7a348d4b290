"""Placement checks that labels cannot fool, against real filesystems, repositories and
this machine's own addresses.

No test here sends traffic beyond loopback: sites at addresses that are not this machine's
are never probed with restic (probe_repositories=False), those addresses are only tried with
bind(), which sends nothing, and names are resolved only from /etc/hosts or by an injected
resolver."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from firebreak.actions.cycle import run_cycle
from firebreak.outcomes import Status
from firebreak.placement.check import check_placement
from firebreak.placement.physical import HostLookups, is_this_machine
from tests.support.cli import firebreak
from tests.support.mounts import bind_mount, one_disk_twice, tmpfs
from tests.support.servers import RestServer
from tests.support.setup import Setup

OTHER_HOST = "198.51.100.7"  # TEST-NET-2: never this machine, never contacted


def _strict(setup: Setup, **policy: object) -> None:
    setup.top["placement"] = {"enforce": "error", "min_sites": 1, **policy}


def _offline_rules(setup: Setup) -> list[tuple[str, tuple[str, ...]]]:
    report = check_placement(setup.load(), resolve_hosts=False, probe_repositories=False)
    return sorted((v.rule, v.sites) for v in report.violations)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting tmpfs filesystems needs root")
def test_a_local_site_on_the_sources_filesystem_is_refused(setup: Setup, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk-a") as disk_a, tmpfs(tmp_path / "disk-b") as disk_b:
        (disk_a / "data").mkdir()
        (disk_a / "data" / "file").write_text("x")
        setup.site("same-disk", str(disk_a / "repos" / "not-yet-created"))
        setup.site("other-disk", str(disk_b / "repo"))
        setup.source("www", ["same-disk", "other-disk"], paths=[str(disk_a / "data")])
        _strict(setup)
        report = check_placement(setup.load(), resolve_hosts=False, probe_repositories=False)
    [violation] = report.violations
    assert violation.rule == "same_filesystem" and violation.sites == ("same-disk",)
    assert violation.message == (
        f'source "www": site "same-disk" ({disk_a}/repos/not-yet-created) is on the same '
        f"filesystem as source path {disk_a}/data — one failed disk or one full filesystem "
        "takes the data and this copy together"
    )
    assert violation.severity == "error"


def test_local_sites_on_one_filesystem_are_one_copy_whatever_their_labels(
    setup: Setup, tmp_path: Path
) -> None:
    # Three "countries" under one directory: the mistake labels cannot catch.
    for name in ("paris", "berlin", "warsaw"):
        setup.site(name, str(tmp_path / "backups" / name))
    setup.source("www", ["paris", "berlin", "warsaw"])
    _strict(setup)
    report = check_placement(setup.load(), resolve_hosts=False, probe_repositories=False)
    # (Each is on the source's filesystem too: those are violations of their own.)
    pairs = [v.sites for v in report.violations if len(v.sites) == 2]
    assert pairs == [("paris", "berlin"), ("paris", "warsaw"), ("berlin", "warsaw")]
    assert all(v.rule == "same_filesystem" for v in report.violations)
    [first] = [v for v in report.violations if v.sites == ("paris", "berlin")]
    assert first.message.startswith(
        f'source "www": sites "paris" ({tmp_path}/backups/paris) and "berlin" '
        f"({tmp_path}/backups/berlin) are on one filesystem ("
    )
    assert "mounted at /" in first.message and first.message.endswith(
        "— one failed disk or one full filesystem takes both copies"
    )
    # validate says so too, offline or not (nothing here needs the network).
    for offline in (["--offline"], []):
        done = firebreak(setup.write(), "validate", *offline)
        assert done.returncode == 2
        assert done.stderr.count("are on one filesystem") == 3


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting filesystems needs root")
def test_bind_mounts_symlinks_and_a_disk_mounted_twice_do_not_hide_one_filesystem(
    setup: Setup, tmp_path: Path
) -> None:
    with (
        tmpfs(tmp_path / "disk") as disk,
        tmpfs(tmp_path / "other") as other,
        bind_mount(disk, tmp_path / "bound") as bound,
        one_disk_twice(tmp_path / "img", tmp_path / "m1", tmp_path / "m2") as (m1, m2),
    ):
        (tmp_path / "link").symlink_to(disk)
        setup.site("direct", str(disk / "repo-a"))
        setup.site("bound", str(bound / "repo-b"))
        setup.site("linked", str(tmp_path / "link" / "deeper" / "repo-c"))
        setup.site("elsewhere", str(other / "repo-d"))
        setup.site("loop-1", str(m1 / "repo-e"))
        setup.site("loop-2", str(m2 / "repo-f"))
        setup.source("www", list(setup.sites))
        _strict(setup)
        report = check_placement(setup.load(), resolve_hosts=False, probe_repositories=False)
        pairs = {v.sites for v in report.violations if v.rule == "same_filesystem"}
        assert pairs == {
            ("direct", "bound"),
            ("direct", "linked"),
            ("bound", "linked"),
            ("loop-1", "loop-2"),
        }
        [tmpfs_pair] = [v for v in report.violations if v.sites == ("direct", "bound")]
        assert f"(firebreak-test (tmpfs) mounted at {disk})" in tmpfs_pair.message
        [loop_pair] = [v for v in report.violations if v.sites == ("loop-1", "loop-2")]
        assert "(ext4) mounted at " in loop_pair.message


def test_a_disk_that_is_not_mounted_is_a_note_not_a_reason_to_stop_every_site(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firebreak.placement import physical

    # /etc/fstab says a disk belongs at usb; nothing is mounted there now.
    (tmp_path / "usb").mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        f"UUID=0a1b2c3d {tmp_path / 'usb'} ext4 defaults,nofail 0 2\n"
    )
    monkeypatch.setattr(physical, "FSTAB", fstab)
    setup.site("usb", str(tmp_path / "usb" / "restic"))
    setup.site("local", str(tmp_path / "backups" / "local"))
    setup.source("www", ["usb", "local"], paths=["/proc/self"])
    _strict(setup)
    report = check_placement(setup.load(), resolve_hosts=False, probe_repositories=False)
    assert report.violations == []
    [note] = [n for n in report.notes if n.site == "usb"]
    assert note.message == (
        f"{tmp_path}/usb/restic is under {tmp_path}/usb, a mount point in {fstab} that is not "
        "mounted: its filesystem is checked once it is"
    )
    # Without the fstab line it is one more directory on this filesystem: one copy.
    fstab.write_text("")
    report = check_placement(setup.load(), resolve_hosts=False, probe_repositories=False)
    assert [(v.rule, v.sites) for v in report.violations] == [("same_filesystem", ("usb", "local"))]


def test_two_paths_to_one_local_repository_are_one_copy(setup: Setup, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").symlink_to(tmp_path)
    setup.site("a", str(tmp_path / "repo"))
    setup.site("b", str(tmp_path / "elsewhere" / "repo"))
    setup.source("www", ["a", "b"])
    _strict(setup)
    rules = _offline_rules(setup)
    assert ("same_repository", ("a", "b")) in rules


def test_one_repository_behind_two_urls_is_found_by_its_id(
    setup: Setup, tmp_path: Path, rest_server_factory: Callable[..., RestServer]
) -> None:
    served = tmp_path / "served"
    server = rest_server_factory()
    setup.site("local", str(server.root / "shared"))
    setup.site("rest", server.url("shared"))
    setup.site("elsewhere", str(served / "repo"))
    setup.source("www", ["local", "rest", "elsewhere"])
    first = run_cycle(setup.runtime(), "www", sites=["local", "elsewhere"])
    assert first.status == Status.SUCCESS
    _strict(setup)

    report = check_placement(setup.load())  # every site here is local or on loopback

    same = [v for v in report.violations if v.rule == "same_repository"]
    assert [v.sites for v in same] == [("local", "rest")]
    assert "reach the same restic repository (id " in same[0].message
    assert "by different URLs — that is one copy, not two" in same[0].message
    assert not any(
        v.rule == "same_repository"
        for v in check_placement(
            setup.load(), resolve_hosts=False, probe_repositories=False
        ).violations
    )


def _own_non_loopback_address() -> str | None:
    done = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    for interface in json.loads(done.stdout):
        for info in interface.get("addr_info", []):
            if info.get("family") == "inet" and not info["local"].startswith("127."):
                return str(info["local"])
    return None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "own"])
def test_a_remote_site_that_is_this_machine_is_refused(setup: Setup, host: str) -> None:
    if host == "own":
        own = _own_non_loopback_address()
        if own is None:
            pytest.skip("this machine has no non-loopback IPv4 address")
        host = own
    setup.site("here", f"rest:http://{host}:8000/repo")
    setup.site("there", f"rest:http://{OTHER_HOST}:8000/repo")
    setup.source("www", ["here", "there"])
    _strict(setup)
    report = check_placement(setup.load(), probe_repositories=False)
    rules = [(v.rule, v.sites) for v in report.violations]
    assert rules == [("this_machine", ("here",))], report.violations
    assert "whatever destroys this machine destroys this copy too" in report.violations[0].message


def test_two_sites_on_one_host_are_refused_even_with_different_backends(setup: Setup) -> None:
    setup.site("rest", f"rest:https://{OTHER_HOST}/www")
    setup.site("sftp", f"sftp:backup@{OTHER_HOST}:/srv/restic/www")
    setup.site("s3", "s3:http://198.51.100.8:9000/bucket")
    setup.source("www", ["rest", "sftp", "s3"])
    _strict(setup)
    report = check_placement(setup.load(), resolve_hosts=False, probe_repositories=False)
    [violation] = report.violations
    assert violation.rule == "same_host" and violation.sites == ("rest", "sftp")
    assert violation.message == (
        f'source "www": sites "rest" and "sftp" are on the same host ({OTHER_HOST}) '
        "— one machine, one building"
    )


def test_addresses_of_this_machine() -> None:
    assert is_this_machine("127.0.0.1") and is_this_machine("::1") and is_this_machine("0.0.0.0")
    assert not is_this_machine(OTHER_HOST)
    own = _own_non_loopback_address()
    if own:
        assert is_this_machine(own)


def test_a_failed_or_slow_lookup_is_a_note_never_a_crash_or_a_hang(setup: Setup) -> None:
    def resolver(host: str) -> set[str]:
        if host == "slow.example":
            time.sleep(5)
            return {OTHER_HOST}
        raise OSError(-2, "Name or service not known")

    setup.site("gone", "rest:https://gone.example/r")
    setup.site("slow", "rest:https://slow.example/r")
    setup.site("ok", f"rest:https://{OTHER_HOST}/r")
    setup.source("www", ["gone", "slow", "ok"])
    _strict(setup)
    config = setup.load()
    lookups = HostLookups(resolver=resolver, timeout=0.5)
    started = time.monotonic()
    report = check_placement(config, probe_repositories=False, lookups=lookups)
    elapsed = time.monotonic() - started
    lookups.close()
    assert elapsed < 4, "a slow DNS lookup held up validation"
    assert report.violations == []
    notes = sorted(n.message for n in report.notes if n.site in ("gone", "slow"))
    assert notes[0].startswith("cannot look up gone.example: Name or service not known")
    assert notes[1].startswith("looking up slow.example took longer than 0.5s")


def test_ssh_aliases_are_not_looked_up(setup: Setup) -> None:
    setup.site(
        "a", "sftp:backup-gra:/srv/r", options={"sftp.command": "ssh -F /x backup-gra -s sftp"}
    )
    setup.source("www", ["a"])
    _strict(setup)
    report = check_placement(setup.load(), resolve_hosts=False, probe_repositories=False)
    assert report.violations == []
    assert "ssh alias" in report.notes[0].message


def _co_located(setup: Setup, enforce: str) -> Path:
    for name in ("sbg-1", "sbg-2", "sbg-3"):
        setup.site(name, f"rest:https://{OTHER_HOST}/{name}")
        setup.sites[name]["location"] = {
            "provider": "ovh",
            "region": "eu-west",
            "datacenter": "SBG",
            "country": "FR",
        }
    setup.sites["sbg-2"]["repository"] = "rest:https://198.51.100.9/sbg-2"
    setup.sites["sbg-3"]["repository"] = "rest:https://198.51.100.10/sbg-3"
    setup.source("www", ["sbg-1", "sbg-2", "sbg-3"], min_fresh_sites=2)
    setup.top["placement"] = {"enforce": enforce}
    return setup.write()


def test_validate_refuses_the_strasbourg_mistake(setup: Setup) -> None:
    done = firebreak(_co_located(setup, "error"), "validate", "--offline")
    assert done.returncode == 2
    errors = done.stderr.splitlines()
    assert (
        f'{setup.path}: placement: source "www": sites "sbg-1" and "sbg-2" are both in datacenter "SBG" — one fire there destroys both'
        in errors
    )
    assert errors[-1] == f"3 placement violations in {setup.path}"


def test_warn_mode_says_so_loudly_and_exits_0(setup: Setup) -> None:
    done = firebreak(_co_located(setup, "warn"), "validate", "--offline")
    assert done.returncode == 0
    assert "WARNING: placement policy is in warn mode" in done.stdout
    assert done.stdout.count("WARNING: placement: ") == 3


def test_placement_command_shows_the_what_if_and_simulates_losses(setup: Setup) -> None:
    config = _co_located(setup, "warn")
    shown = firebreak(config, "placement", "--offline")
    assert shown.returncode == 0
    assert "datacenter=SBG" in shown.stdout and "BROKEN" in shown.stdout
    lost = firebreak(config, "placement", "--lose", "provider=OVH", "--offline")
    assert lost.returncode == 4
    assert "UNSAFE" in lost.stdout
    bad = firebreak(config, "placement", "--lose", "planet=earth", "--offline")
    assert bad.returncode == 2 and "is not one of" in bad.stderr
    # A typo must not read as "safe".
    typo = firebreak(config, "placement", "--lose", "provider=ovhh", "--offline")
    assert typo.returncode == 2 and "UNSAFE" not in typo.stdout and "safe" not in typo.stdout
    assert typo.stderr == ("error: no site has provider=ovhh (providers in the config: ovh)\n")
    site = firebreak(config, "placement", "--lose", "site=sbg-9", "--offline")
    assert site.returncode == 2
    assert "no site has site=sbg-9 (sites in the config: sbg-1, sbg-2, sbg-3)" in site.stderr


def test_the_host_has_a_place_and_its_datacenter_can_burn_too(setup: Setup) -> None:
    """With the host's location set, a source needs min_offsite sites outside its building,
    and placement shows the host and what losing its datacenter leaves."""
    for name in ("a", "b", "c"):
        setup.local_site(name)
    setup.source("www", ["a", "b", "c"])
    setup.top["host"] = "web1"
    setup.top["location"] = {
        "provider": "provider-1",
        "region": "region-1",
        "datacenter": "dc1",  # site a's building
        "country": "DE",
    }
    setup.top["placement"] = {"enforce": "error", "min_offsite": 3}
    refused = firebreak(setup.write(), "validate", "--offline")
    assert refused.returncode == 2
    assert (
        f'{setup.path}: placement: source "www" has 2 sites offsite (outside this host\'s '
        'datacenter "dc1"); the placement policy needs at least 3: site "a" is in it — one '
        "fire there destroys this machine and every copy with it"
    ) in refused.stderr.splitlines()

    setup.top["placement"] = {"enforce": "warn"}
    shown = firebreak(setup.write(), "placement", "--offline", "--lose", "datacenter=DC1")
    assert shown.returncode == 0, shown.stdout
    assert "datacenter=DC1" in shown.stdout and "safe" in shown.stdout
    wide = {**os.environ, "COLUMNS": "200"}  # rows unfolded
    shown = firebreak(setup.path, "placement", "--offline", env=wide)
    assert shown.returncode == 0, shown.stderr
    table = shown.stdout
    assert re.search(r"\(web1, this host\) +provider-1 +region-1 +dc1 +DE", table), table
    assert re.search(r"\n a +provider-1 .* no +\n", table) and "offsite" in table
    assert re.search(r"\n b +provider-2 .* yes +\n", table)
    assert re.search(r"datacenter=DC1 \(this host\) +a +2 +holds", table)
    assert "location is not set" not in table


def test_a_label_that_contradicts_its_endpoint_is_a_warning_even_in_error_mode(
    setup: Setup,
) -> None:
    """Only the URL is read (--offline: nothing is looked up)."""
    setup.local_site("a")
    setup.local_site("b")
    setup.site("fsn", "rest:https://s3.gra.io.cloud.ovh.net/backups")
    setup.sites["fsn"]["location"] = {
        "provider": "hetzner",
        "region": "fsn1",
        "datacenter": "FSN1-DC14",
        "country": "DE",
    }
    setup.source("www", ["a", "b", "fsn"])
    _strict(setup)
    done = firebreak(setup.write(), "validate", "--offline")
    assert (
        f'{setup.path}: WARNING: placement: source "www": site "fsn" is labelled provider '
        '"hetzner" and country "DE", but its endpoint s3.gra.io.cloud.ovh.net is OVHcloud '
        "region gra (Gravelines, FR)"
    ) in done.stdout
    assert "warn mode" not in done.stdout
    assert "endpoint" not in done.stderr
