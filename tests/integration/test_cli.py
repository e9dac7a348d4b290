"""The firebreak command as a sysadmin runs it: real processes, real restic, exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from firebreak.history.database import SCHEMA_HEAD
from tests.support.cli import firebreak, on_a_terminal
from tests.support.daemon import restic_processes
from tests.support.scrape import get, running_exporter, samples, value
from tests.support.servers import RestServer, silent_server
from tests.support.setup import PASSWORD, Setup


def test_validate_accepts_a_good_file_and_warns_about_what_is_odd(setup: Setup) -> None:
    setup.local_site("a")
    setup.local_site("unused")
    setup.source("www", ["a"], paths=[str(setup.source_dir), str(setup.dir / "later")])
    done = firebreak(setup.write(), "validate")
    assert done.returncode == 0, done.stderr
    assert f"{setup.path}: valid (1 source, 2 sites)" in done.stdout
    assert "sources.www.paths[1]" in done.stdout and "does not exist" in done.stdout
    assert "sites.unused: no source uses this site" in done.stdout


def test_validate_lists_every_problem_and_exits_2(setup: Setup) -> None:
    setup.local_site("a", password_file=str(setup.dir / "missing"), init="maybe")
    setup.source("www", ["a", "b"])
    done = firebreak(setup.write(), "validate")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert any(
        line.startswith(f"{setup.path}:")
        and "sites.a.password_file: file" in line
        and "does not exist" in line
        for line in lines
    ), lines
    assert any("sites.a.init:" in line for line in lines)
    assert any("sources.www.sites[1]: unknown site 'b'" in line for line in lines)
    assert lines[-1] == f"error: 3 problems in {setup.path}"
    assert done.stdout == ""


def test_backup_status_snapshots_and_their_exit_codes(
    setup: Setup, rest_server_factory: object
) -> None:
    assert callable(rest_server_factory)
    rest: RestServer = rest_server_factory()
    setup.local_site("a")
    setup.local_site("b")
    setup.rest_site("r", rest)
    setup.source("www", ["a", "b", "r"], min_fresh_sites=2)
    config = setup.write()

    never = firebreak(config, "status")
    assert never.returncode == 5
    assert "no run history at" in never.stderr and "nothing has run yet" in never.stderr

    done = firebreak(config, "backup", "www")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "www: success (3 of 3 sites" in done.stdout

    status = firebreak(config, "status", "--json")
    assert status.returncode == 0
    data = json.loads(status.stdout)
    [www] = data["sources"]
    assert www["safe"] and www["fresh_sites"] == 3 and www["required_fresh_sites"] == 2
    assert www["max_age"] == "1d2h" and www["max_age_seconds"] == 26 * 3600
    # The default schedule, 0 3 * * * in UTC: the next 03:00.
    upcoming = datetime.fromisoformat(www["next_cycle_at"])
    assert upcoming.astimezone(UTC).strftime("%H:%M") == "03:00"
    assert timedelta(0) < upcoming - datetime.now(UTC) <= timedelta(days=1)
    shown = firebreak(config, "status")
    assert "  next cycle: in " in shown.stdout and "(0 3 * * *)" in shown.stdout
    # Read by a script (not a terminal): plain columns, short snapshot ids, plurals.
    assert not set("─│┃━┏┡└╭") & set(shown.stdout), shown.stdout
    [row] = [line.split() for line in shown.stdout.splitlines() if line.split()[:1] == ["a"]]
    assert row[1] == "fresh" and len(www["sites"][0]["snapshot_id"][:8]) == 8
    assert www["sites"][0]["snapshot_id"][:8] in row
    assert "every source is safe (1 source)" in shown.stdout
    assert [site["site"] for site in www["sites"]] == ["a", "b", "r"]
    assert all(site["snapshot_id"] and site["fresh"] for site in www["sites"])

    snapshots = firebreak(config, "snapshots", "www", "--json")
    assert snapshots.returncode == 0, snapshots.stderr
    listing = json.loads(snapshots.stdout)
    assert [entry["site"] for entry in listing] == ["a", "b", "r"]
    for entry, site in zip(listing, www["sites"], strict=True):
        assert len(entry["snapshots"]) == 1
        assert entry["snapshots"][0]["id"].startswith(site["snapshot_id"])
        assert "firebreak.source=www" in entry["snapshots"][0]["tags"]

    rest.stop()
    failed = firebreak(config, "backup", "www")
    assert failed.returncode == 4
    assert "www: failed (2 of 3 sites" in failed.stdout
    assert "r: SiteUnreachable: " in failed.stdout
    table = firebreak(config, "status")
    assert table.returncode == 0, "two fresh sites are enough"
    assert "r: SiteUnreachable" in table.stdout
    one_site = firebreak(config, "snapshots", "www", "--site", "r")
    assert one_site.returncode == 4 and "SiteUnreachable" in one_site.stdout

    for output in (done, status, snapshots, failed, table):
        assert PASSWORD not in output.stdout + output.stderr


def test_partial_backup_exits_3(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"], paths=[str(setup.source_dir), "/proc/sys/vm/drop_caches"])
    done = firebreak(setup.write(), "backup", "--all")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "partial" in done.stdout


def test_unknown_source_or_site_is_a_usage_error(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    config = setup.write()
    unknown = firebreak(config, "backup", "db")
    assert unknown.returncode == 2 and "no source 'db'" in unknown.stderr
    wrong_site = firebreak(config, "backup", "www", "--site", "z")
    assert wrong_site.returncode == 2 and "not backed up to site 'z'" in wrong_site.stderr
    nothing = firebreak(config, "backup")
    assert nothing.returncode == 2 and "--all" in nothing.stderr


def test_db_upgrade_and_status(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    config = setup.write()
    before = firebreak(config, "db", "status")
    assert before.returncode == 5 and "needs `firebreak db upgrade`" in before.stdout
    upgraded = firebreak(config, "db", "upgrade")
    assert upgraded.returncode == 0 and f"upgraded from empty to {SCHEMA_HEAD}" in upgraded.stdout
    again = firebreak(config, "db", "upgrade")
    assert again.returncode == 0 and f"already at revision {SCHEMA_HEAD}" in again.stdout
    after = firebreak(config, "db", "status")
    assert after.returncode == 0 and "up to date" in after.stdout


def test_missing_restic_is_a_clear_not_ready_error(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    setup.top["restic"] = {"binary": "restic-not-installed"}
    done = firebreak(setup.write(), "backup", "www")
    assert done.returncode == 5
    assert "restic program 'restic-not-installed' not found" in done.stderr


def test_ctrl_c_stops_restic_and_records_the_runs_as_interrupted(setup: Setup) -> None:
    (setup.source_dir / "big.bin").write_bytes(os.urandom(3_000_000))
    setup.local_site("slow", limit_upload=300)
    setup.source("www", ["slow"])
    config = setup.write()
    process = subprocess.Popen(
        [sys.executable, "-m", "firebreak", "-c", str(config), "backup", "www"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    locks = setup.dir / "repo-slow" / "locks"
    deadline = time.monotonic() + 60
    while not (locks.is_dir() and any(locks.iterdir())):
        assert time.monotonic() < deadline and process.poll() is None, "the backup never started"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "SIGINT: stopping restic" in err
    assert "interrupted" in out
    assert not restic_processes(str(setup.dir))
    status = firebreak(config, "status", "--json")
    [site] = json.loads(status.stdout)["sources"][0]["sites"]
    assert site["last_outcome"] == "interrupted"


def test_status_without_any_history_says_so_and_creates_nothing(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    setup.top["database"] = {"url": f"sqlite:///{setup.dir / 'typo' / 'firebreak.db'}"}
    done = firebreak(setup.write(), "status")
    assert done.returncode == 5
    assert f"no run history at {setup.dir / 'typo' / 'firebreak.db'} (database.url)" in done.stderr
    assert not (setup.dir / "typo").exists()
    # A script reading --json's stdout learns why there is no answer.
    as_json = firebreak(setup.write(), "status", "--json")
    assert as_json.returncode == 5
    error = json.loads(as_json.stdout)
    assert error["exit_code"] == 5 and "no run history at" in error["error"]
    setup.sources["www"]["max_age"] = "soon"
    broken = firebreak(setup.write(), "status", "--json")
    assert broken.returncode == 2
    error = json.loads(broken.stdout)
    assert error["error"] == f"1 problem in {setup.path}"
    assert "sources.www.max_age" in error["problems"][0]


def test_backup_refuses_a_config_that_breaks_the_placement_policy(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    setup.top["placement"] = {"enforce": "error"}
    done = firebreak(setup.write(), "backup", "www")
    assert done.returncode == 2
    assert (
        'placement: source "www" has 1 site; the placement policy needs at least 3' in done.stderr
    )
    assert "nothing was backed up" in done.stderr
    assert not (setup.dir / "repo-a").exists()


def test_validate_without_restic_notes_it_instead_of_crashing(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    setup.top["restic"] = {"binary": "restic-not-installed"}
    done = firebreak(setup.write(), "validate")
    assert done.returncode == 0, done.stderr
    assert (
        "sites.a: repository id not checked (ResticUnavailable: cannot start restic-not-installed"
        in done.stdout
    )


def test_a_site_that_hangs_cannot_hold_snapshots_past_its_stall_timeout(setup: Setup) -> None:
    # A server that accepts connections and never answers: restic would wait for it forever.
    with silent_server() as port:
        setup.local_site("a")
        setup.site("hung", f"rest:http://127.0.0.1:{port}/repo", stall_timeout="3s")
        setup.source("www", ["a", "hung"])
        config = setup.write()
        assert firebreak(config, "backup", "www", "--site", "a").returncode == 0
        started = time.monotonic()
        listed = firebreak(config, "snapshots", "www", timeout=120)
        elapsed = time.monotonic() - started
        assert listed.returncode == 4, listed.stdout + listed.stderr
        assert (
            "SiteUnreachable: the site did not answer: nothing from restic in 3s" in listed.stdout
        )
        assert "www at a: 1 snapshot" in listed.stdout
        assert elapsed < 30

        # With a long stall_timeout, Ctrl-C is what ends it.
        setup.sites["hung"]["stall_timeout"] = "10m"
        process = subprocess.Popen(
            [sys.executable, "-m", "firebreak", "-c", str(setup.write()), "snapshots", "www"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        out, err = process.communicate(timeout=30)
    assert process.returncode == 130, out + err
    assert time.monotonic() - stopped < 15
    assert "SIGINT: stopping restic" in err
    assert not restic_processes(str(setup.dir))


def test_under_journald_log_lines_carry_a_priority_and_no_timestamp_of_their_own(
    setup: Setup,
) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a"])
    setup.source("web", ["b"])
    config = setup.write()
    stderr = setup.dir / "stderr"
    for journal, source in ((False, "www"), (True, "web")):
        with stderr.open("wb") as sink:
            # What systemd sets when stderr is a stream to the journal: its device and inode.
            found = os.fstat(sink.fileno())
            env = dict(os.environ)
            env.pop("JOURNAL_STREAM", None)
            if journal:
                env["JOURNAL_STREAM"] = f"{found.st_dev}:{found.st_ino}"
            command = [sys.executable, "-m", "firebreak", "-c", str(config), "backup", source]
            done = subprocess.run(command, stderr=sink, stdout=subprocess.DEVNULL, env=env)
        assert done.returncode == 0
        [line] = [x for x in stderr.read_text().splitlines() if "creating it" in x]
        if journal:
            assert line.startswith("<4>WARNING firebreak.actions.operation: [web → b run ")
        else:
            assert line.startswith(f"{datetime.now(UTC).year}-")  # its own timestamp
            assert " WARNING firebreak.actions.operation: " in line


def test_restic_at_a_site_runs_any_command_with_its_secrets_and_its_exit_code(
    setup: Setup,
) -> None:
    # The password arrives as firebreak hands it over (a pipe), from an environment variable.
    env = dict(os.environ, FB_TEST_SITE_PW=PASSWORD)
    setup.local_site("a", password_file=None, password="${FB_TEST_SITE_PW}")
    with silent_server() as port:
        setup.site("hung", f"rest:http://127.0.0.1:{port}/repo")
        setup.source("www", ["a"])
        config = setup.write()

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "firebreak", "-c", str(config), "restic", *args]
            return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

        assert run("a", "--", "init").returncode == 0
        backed = firebreak(config, "backup", "www", env=env)
        assert backed.returncode == 0, backed.stdout + backed.stderr
        listed = run("a", "--", "snapshots", "--json")
        assert listed.returncode == 0, listed.stderr
        [snapshot] = json.loads(listed.stdout)
        assert "firebreak.source=www" in snapshot["tags"]
        # Options after the command reach restic (no -- needed), and restic's exit code is
        # firebreak's: 1 for a snapshot that is not there.
        missing = run("a", "cat", "snapshot", "nothere")
        assert missing.returncode == 1, missing.stderr
        assert 'no matching ID found for prefix "nothere"' in missing.stderr
        for output in (listed, missing):
            assert PASSWORD not in output.stdout + output.stderr
        unknown = run("nowhere", "snapshots")
        assert unknown.returncode == 2 and "no site 'nowhere'" in unknown.stderr

        # Ctrl-C reaches restic (waiting on a server that never answers) and ends both.
        command = [sys.executable, "-m", "firebreak", "-c", str(config), "restic", "hung"]
        process = subprocess.Popen(
            [*command, "--", "snapshots"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, as a terminal's job is
        )
        time.sleep(3)
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 130, process.returncode
    assert not restic_processes(str(setup.dir))


def test_backup_on_a_terminal_shows_each_sites_progress_and_in_a_pipe_nothing(
    setup: Setup,
) -> None:
    (setup.source_dir / "big.bin").write_bytes(os.urandom(1_500_000))
    setup.local_site("fast")
    setup.local_site("slow", limit_upload=300)  # ~5 s: restic reports on the way
    setup.source("www", ["fast", "slow"])
    config = setup.write()
    done = on_a_terminal(config, "backup", "www", columns=200)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "www → slow" in done.stdout and "www → fast" in done.stdout
    assert re.search(r"\d+/\d+ files", done.stdout), done.stdout
    assert re.search(r"\d+%", done.stdout)
    assert "www: success (2 of 2 sites" in done.stdout
    # The same in a pipe: the result alone.
    piped = firebreak(config, "backup", "www")
    assert piped.returncode == 0
    assert "www → " not in piped.stdout and not re.search(r"\d+/\d+ files", piped.stdout)
    # check and drills say what they are doing while they do it; in a pipe, results alone.
    for args, doing in (
        (["check", "www"], "restic check at slow (structure and a part of the data)"),
        (["drill", "www", "--site", "fast"], "restore drill of www at fast: restoring a sample"),
    ):
        shown = on_a_terminal(config, *args, columns=200)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert doing in shown.stdout, shown.stdout
        # Each result on a line of its own, not written into the spinner's line.
        screen = re.split(r"[\r\n]+", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.stdout))
        assert any(re.match(r"(slow|fast): ok", line) for line in screen), screen
        piped = firebreak(config, *args)
        assert piped.returncode == 0 and doing not in piped.stdout + piped.stderr
        assert re.search(r"^(slow|fast): ok", piped.stdout, re.MULTILINE), piped.stdout


def test_a_second_host_with_a_source_of_the_same_name_does_not_make_the_first_safe(
    setup: Setup,
) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"], min_fresh_sites=2)
    # Both hosts record into one history and back up to the same sites, each its own "www".
    elsewhere = setup.dir / "web2-www"
    elsewhere.mkdir()
    (elsewhere / "web2-only.txt").write_text("web2's data\n")
    setup.top["host"] = "web2"
    setup.sources["www"]["paths"] = [str(elsewhere)]
    config = setup.write()
    assert firebreak(config, "backup", "www").returncode == 0
    setup.top["host"] = "web1"
    setup.sources["www"]["paths"] = [str(setup.source_dir)]
    config = setup.write()
    status = firebreak(config, "status", "--json")
    assert status.returncode == 4, status.stdout + status.stderr
    [www] = json.loads(status.stdout)["sources"]
    assert www["fresh_sites"] == 0 and not www["safe"]
    assert all(site["last_success_at"] is None for site in www["sites"])
    assert www["cycle_overdue"]  # web1's catch-up would back it up at once
    # Its metrics say so; an exporter asked for web2's runs (a fleet's monitoring host) sees
    # web2's safe "www".
    for args, safe in (((), 0), (("--host", "web2"), 1)):
        with running_exporter(config, *args) as base:
            found = samples(get(f"{base}/metrics")[1])
            assert value(found, "firebreak_source_safe", source="www") == safe, args
    empty = firebreak(config, "exporter", "--host", " ")
    assert empty.returncode == 2 and "--host needs a host name" in empty.stderr
    assert firebreak(config, "backup", "www").returncode == 0
    assert firebreak(config, "status").returncode == 0
    # Each host's snapshots carry its name, so retention and drills keep to their own.
    hosts = firebreak(config, "snapshots", "www", "--json")
    assert hosts.returncode == 0, hosts.stderr
    assert {"web1", "web2"} <= set(re.findall(r'"hostname": "([^"]+)"', hosts.stdout)), hosts.stdout
    # web2 backs up again, last; web1's restore and drill still take web1's own snapshot.
    setup.top["host"] = "web2"
    setup.sources["www"]["paths"] = [str(elsewhere)]
    assert firebreak(setup.write(), "backup", "www").returncode == 0
    setup.top["host"] = "web1"
    setup.sources["www"]["paths"] = [str(setup.source_dir)]
    config = setup.write()
    target = setup.dir / "restored"
    restored = firebreak(config, "restore", "www", "--site", "a", "--target", str(target))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert not list(target.rglob("web2-only.txt"))
    assert any(target.rglob("*")) and setup.source_dir.name in {p.name for p in target.rglob("*")}
    drilled = firebreak(config, "drill", "www", "--site", "a")
    assert drilled.returncode == 0, drilled.stdout + drilled.stderr
