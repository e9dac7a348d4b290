"""firebreak as a systemd service, on a real systemd (a Debian 12 guest under qemu): installed
and started as docs/install.md says, backing up to REST sites on the host through qemu's
network; reload, stop, the watchdog, the journal, the hardening, secrets from systemd."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.guest import Guest
from tests.support.servers import RestServer
from tests.systemd.conftest import install_md_block

CONFIG = "/etc/firebreak/firebreak.yaml"
# Secrets as systemd hands them over: a credential, an environment file (with characters a
# shell would eat), a password file.
CREDENTIAL_PASSWORD = "from-the-credential-store"
ENV_FILE_LINE = 'B_RESTIC_PASSWORD="a$b c\\"d\\\\e"'
ENV_PASSWORD = 'a$b c"d\\e'
FILE_PASSWORD = "from-a-password-file"
SITES = {"a": "10.0.2.100", "b": "10.0.2.101", "c": "10.0.2.102"}

# The guest is built and booted (minutes, the first time on a machine) in fixtures with
# timeouts of their own, one test worker at a time: the limit counts the test alone. The
# guest is emulated: alone on this machine the install test takes about 3 minutes, but with
# make test's other workers on 2 cores it has taken more than 5 (CI).
pytestmark = pytest.mark.timeout(600, func_only=True)


def _config(*, extra_source: str = "") -> str:
    location = "{{provider: p{0}, region: r{0}, datacenter: d{0}, country: FR}}"
    secrets = {
        "a": "password: credential:a.restic-password",
        "b": "password: ${B_RESTIC_PASSWORD}",
        "c": "password_file: /etc/firebreak/c.password",
    }
    sites = "".join(
        f"\n  {name}:\n    repository: rest:http://{address}:8000/{name}\n"
        f"    {secrets[name]}\n    location: {location.format(name)}\n"
        + ("    limit_upload: 48\n" if name == "c" else "")
        for name, address in SITES.items()
    )
    return (
        "state_dir: /var/lib/firebreak\n"
        "placement: {min_sites: 3, distinct: [datacenter], enforce: error}\n"
        f"sites:{sites}\n"
        "sources:\n"
        "  data: {paths: [/srv/data], sites: [a, b, c], max_age: 26h, schedule: every 6h,\n"
        "         min_fresh_sites: 3}\n"
        "  big: {paths: [/srv/big], sites: [a, b, c], max_age: 26h, schedule: every 6h}\n"
        + extra_source
    )


def _written(config: Path) -> bool:
    """A repository's config the guest's restic init has finished uploading (rclone makes
    the file before its bytes arrive: restic reading it then says "zero size")."""
    try:
        return config.stat().st_size > 0
    except FileNotFoundError:
        return False


def _host_snapshots(server: RestServer, site: str, password: str) -> list[dict[str, object]]:
    """The snapshots at a site, as restic on the host sees them."""
    done = subprocess.run(
        ["restic", "snapshots", "--json", "--no-cache"],
        env={
            **os.environ,
            "RESTIC_REPOSITORY": f"rest:http://127.0.0.1:{server.port}/{site}",
            "RESTIC_PASSWORD": password,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def _journal(guest: Guest, *args: str) -> str:
    return guest.run(f"journalctl -u firebreak -o cat --no-pager {shlex.join(args)}").stdout


def _status(guest: Guest) -> dict[str, dict[str, object]]:
    """(source, site) as a string "source/site" → what `firebreak status --json` says."""
    done = guest.run(f"runuser -u firebreak -- firebreak -c {CONFIG} status --json")
    report = json.loads(done.stdout)
    return {
        f"{source['source']}/{site['site']}": site
        for source in report["sources"]
        for site in source["sites"]
    }


def _get(guest: Guest, path: str) -> str:
    script = (
        "import urllib.request, sys; "
        f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9188{path}').read().decode())"
    )
    return guest.run(f"python3 -c {shlex.quote(script)}", check=True).stdout


def test_installed_as_install_md_says_it_backs_up_reloads_stops_and_keeps_its_secrets(
    new_guest: Callable[[dict[str, int]], Guest],
    rest_server_factory: Callable[..., RestServer],
    tmp_path: Path,
) -> None:
    server = rest_server_factory()
    guest = new_guest({f"{address}:8000": server.port for address in SITES.values()})
    # Data to back up: one file only root may read (the unit's capability reads it), and a
    # big one that takes a while to reach site c (48 KiB/s): stopped while it does.
    guest.run(
        "set -e; mkdir -p /srv/data /srv/big; echo hello > /srv/data/hello.txt\n"
        "install -m 0600 /dev/null /srv/data/root-only; echo secret-data > /srv/data/root-only\n"
        "head -c 6000000 /dev/urandom > /srv/big/blob",
        check=True,
    )
    guest.run(f"install -m 0640 -g firebreak /dev/stdin {CONFIG}", stdin=_config().encode())
    guest.run(
        "install -m 0600 -o firebreak -g firebreak /dev/stdin /etc/firebreak/c.password",
        stdin=f"{FILE_PASSWORD}\n".encode(),
        check=True,
    )
    # Secrets the systemd way, as install.md shows: an environment file and a credential.
    guest.run("install -m 0600 /dev/stdin /etc/firebreak/env", stdin=f"{ENV_FILE_LINE}\n".encode())
    guest.run(
        "install -d -m 0700 /etc/credstore && "
        "install -m 0600 /dev/stdin /etc/credstore/a.restic-password",
        stdin=f"{CREDENTIAL_PASSWORD}\n".encode(),
        check=True,
    )
    guest.run(
        "mkdir -p /etc/systemd/system/firebreak.service.d && "
        "cat > /etc/systemd/system/firebreak.service.d/override.conf",
        stdin=b"[Service]\nLoadCredential=a.restic-password\n",
        check=True,
    )

    # The firebreak user cannot read the credential store, and says so by name.
    refused = guest.run(f"runuser -u firebreak -- firebreak -c {CONFIG} validate")
    assert refused.returncode != 0
    assert "credential a.restic-password: not started by systemd" in refused.stdout + refused.stderr

    # install.md, "3. Start it": every command, as written (but following the journal).
    for line in install_md_block("## 3."):
        if line.startswith("journalctl") and " -f" in line:
            continue
        guest.run(line, timeout=300, check=True)
    assert guest.run("systemctl is-active firebreak").stdout.strip() == "active"
    show = guest.run("systemctl show firebreak -p Type -p Result -p StatusText").stdout
    assert "Type=notify" in show and "Result=success" in show
    assert re.search(r"StatusText=2 sources, 3 sites", show), show

    # The first cycle of `data` reaches all three sites on the host, each with its secret.
    passwords = {"a": CREDENTIAL_PASSWORD, "b": ENV_PASSWORD, "c": FILE_PASSWORD}
    deadline = time.monotonic() + 300
    while True:
        found = {
            site: [
                s for s in _host_snapshots(server, site, password) if s["paths"] == ["/srv/data"]
            ]
            for site, password in passwords.items()
            if _written(server.root / site / "config")
        }
        if len(found) == 3 and all(found.values()):
            break
        assert time.monotonic() < deadline, f"data never reached every site: {found}"
        time.sleep(3)

    # The journal: firebreak's lines without a timestamp of their own, with their priority.
    journal = _journal(guest)
    assert "firebreak daemon ready" in journal
    own = [line for line in journal.splitlines() if "firebreak daemon ready" in line]
    assert not re.match(r"\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d", own[0]), own[0]
    assert "Traceback" not in journal

    # The status page, on the metrics listener.
    assert "firebreak on fbguest" in _get(guest, "/")

    # Reload: a good change is applied, a broken file is refused and the old config runs on.
    changed = _config(
        extra_source="  more: {paths: [/srv/data], sites: [a, b, c], schedule: every 6h}\n"
    )
    guest.run(f"cat > {CONFIG}", stdin=changed.encode(), check=True)
    guest.run("systemctl reload firebreak", check=True)
    guest.wait_for(
        "the reload",
        "journalctl -u firebreak -o cat | grep -q 'configuration reloaded: 3 sources'",
    )
    guest.run(f"echo 'sources: [' >> {CONFIG}", check=True)
    guest.run("systemctl reload firebreak", check=True)
    guest.wait_for(
        "the refused reload",
        "journalctl -u firebreak -o cat | grep -q 'configuration NOT reloaded'",
    )
    assert guest.run("systemctl is-active firebreak").stdout.strip() == "active"
    assert "firebreak_config_last_reload_successful 0.0" in _get(guest, "/metrics")
    assert f"{CONFIG}:" in _journal(guest, "-p", "err")  # names the file and line
    guest.run(f"cat > {CONFIG}", stdin=changed.encode(), check=True)

    # Stop while `big` still uploads to the slow site: its run is recorded interrupted.
    deadline = time.monotonic() + 120
    while (outcome := _status(guest)["big/c"]["last_outcome"]) != "running":
        assert outcome is None and time.monotonic() < deadline, f"big/c: {outcome}"
        time.sleep(2)
    guest.run("systemctl stop firebreak", timeout=200, check=True)
    assert "Result=success" in guest.run("systemctl show firebreak -p Result").stdout
    assert _status(guest)["big/c"]["last_outcome"] == "interrupted"
    assert "firebreak daemon stopped" in _journal(guest)

    # A command by hand gets the secrets the way install.md's alias does, from systemd.
    alias = [
        line
        for line in install_md_block("### Secrets the systemd way", "alias fbs=")
        if "alias" in line
    ]
    assert alias, "install.md shows the systemd-run alias"
    command = re.sub(r"^alias fbs='(.*)'$", r"\1", alias[0]).replace("--pty", "--pipe")
    command = command.replace("fsn.restic-password", "a.restic-password")  # this test's name
    listed = guest.run(f"{command} snapshots data", timeout=300)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert listed.stdout.count("/srv/data") >= 3, listed.stdout

    # A credential missing from the store: systemd starts the command without it, and
    # firebreak names what is missing.
    guest.run("mv /etc/credstore/a.restic-password /root/", check=True)
    missing = guest.run(f"{command} validate", timeout=300)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert (
        "credential a.restic-password is not loaded: the unit needs "
        "LoadCredential=a.restic-password, and the file /etc/credstore/a.restic-password"
    ) in missing.stdout + missing.stderr
    guest.run("mv /root/a.restic-password /etc/credstore/", check=True)

    # The hardening holds on the real systemd.
    security = guest.run("systemd-analyze security firebreak --no-pager").stdout
    exposure = re.search(r"Overall exposure level for firebreak.service: ([\d.]+) (\w+)", security)
    assert exposure is not None and float(exposure.group(1)) <= 2.0, security


@pytest.mark.timeout(720, func_only=True)
def test_a_clock_that_jumps_catches_up_once_and_the_watchdog_restarts_a_daemon_that_hangs(
    new_guest: Callable[[dict[str, int]], Guest],
    rest_server_factory: Callable[..., RestServer],
) -> None:
    """The guest's real clock set forward past a schedule (a machine that slept over it),
    then back a day (an NTP correction): one catch-up, then nothing, and no restart while
    the daemon pings. Then it hangs: the watchdog restarts it. (One guest: each costs
    minutes on this machine.)"""
    server = rest_server_factory()
    guest = new_guest({f"{address}:8000": server.port for address in SITES.values()})
    # The unit's 5 minutes, shortened; and a quick restart.
    _started_fast(guest, "WatchdogSec=20s\nRestartSec=2s\n")
    pid = guest.run("systemctl show firebreak -p MainPID --value").stdout.strip()

    def cycles(source: str) -> int:
        started = re.compile(rf": cycle \d+ of {source} to .* started$")
        return sum(1 for line in _journal(guest).splitlines() if started.search(line))

    def ended(source: str, count: int) -> str:
        return (
            "journalctl -u firebreak -o cat | "
            f"grep -cE ': cycle [0-9]+ of {source}: ' | grep -qx {count}"
        )

    guest.wait_for("the first cycles", ended("data", 1) + " && " + ended("big", 1))
    assert (cycles("data"), cycles("big")) == (1, 1)
    guest.run("timedatectl set-ntp false; date -s '+7 hours'", check=True)
    # Past `every 6h`: each source is overdue and caught up once (the check is every minute).
    guest.wait_for("the catch-up", ended("data", 2) + " && " + ended("big", 2), timeout=200)
    assert "data is overdue: catching up" in _journal(guest)
    guest.run("date -s '-1 day'", check=True)
    time.sleep(70)  # longer than a catch-up check: a last run "in the future" is no reason
    assert (cycles("data"), cycles("big")) == (2, 2), _journal(guest)
    assert guest.run("systemctl show firebreak -p MainPID --value").stdout.strip() == pid
    assert "Traceback" not in _journal(guest)

    # Then the watchdog: a daemon that stops pinging (SIGSTOP) is killed and restarted.
    first = pid
    guest.run(f"kill -STOP {first}", check=True)
    guest.wait_for(
        "the watchdog",
        "journalctl -u firebreak -o cat | grep -q \"Failed with result 'watchdog'\"",
        timeout=120,
    )
    guest.wait_for(
        "the restart",
        f'test "$(systemctl show firebreak -p MainPID --value)" != {first} && '
        "systemctl is-active firebreak",
        timeout=240,
    )
    assert "Watchdog timeout" in guest.run("journalctl -u firebreak --no-pager").stdout


def _started_fast(guest: Guest, override: str) -> None:
    """firebreak installed and started as install.md says, with every site fast, data to
    back up and the unit's settings overridden."""
    config = _config().replace("limit_upload: 48", "limit_upload: 100000")
    guest.run("mkdir -p /srv/data /srv/big && echo hello > /srv/data/hello.txt", check=True)
    guest.run(f"install -m 0640 -g firebreak /dev/stdin {CONFIG}", stdin=config.encode())
    guest.run(
        "install -m 0600 -o firebreak -g firebreak /dev/stdin /etc/firebreak/c.password",
        stdin=f"{FILE_PASSWORD}\n".encode(),
        check=True,
    )
    guest.run("install -m 0600 /dev/stdin /etc/firebreak/env", stdin=f"{ENV_FILE_LINE}\n".encode())
    guest.run(
        "install -d -m 0700 /etc/credstore && "
        "install -m 0600 /dev/stdin /etc/credstore/a.restic-password",
        stdin=f"{CREDENTIAL_PASSWORD}\n".encode(),
        check=True,
    )
    guest.run(
        "mkdir -p /etc/systemd/system/firebreak.service.d && "
        "cat > /etc/systemd/system/firebreak.service.d/override.conf",
        stdin=f"[Service]\nLoadCredential=a.restic-password\n{override}".encode(),
        check=True,
    )
    for line in install_md_block("## 3."):
        if not line.startswith(("journalctl", "systemctl status")):
            guest.run(line, timeout=300, check=True)
