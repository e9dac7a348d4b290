"""Pure argv and environment builders: no restic needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from firebreak.config.model import Site, Source
from firebreak.restic import commands
from firebreak.restic.access import resolve_site
from firebreak.restic.commands import SiteAccess, SiteRestic
from firebreak.restic.version import ResticVersion

LOCATION = {"provider": "p", "region": "r", "datacenter": "d", "country": "FR"}


def _site(**extra: object) -> Site:
    data: dict[str, object] = {
        "repository": "rest:https://u:${REST_PW}@h:8000/www",
        "password_file": "/etc/firebreak/pw",
        "location": LOCATION,
    }
    data.update(extra)
    return Site.model_validate(data)


def _access(site: Site, environ: dict[str, str] | None = None) -> SiteAccess:
    return resolve_site("fra", site, environ=environ or {"REST_PW": "rest-secret"})


def _at(access: SiteAccess, binary: str = "restic", cache: str = "/c") -> SiteRestic:
    return SiteRestic(binary, access, Path(cache), {})


def test_backup_argv_has_everything_but_secrets() -> None:
    site = _site(options={"rest.connections": "4"}, limit_upload=512)
    source = Source.model_validate(
        {
            "paths": ["/var/www", "/etc/nginx"],
            "exclude": ["*.tmp"],
            "exclude_if_present": [".nobackup"],
            "one_file_system": True,
            "tags": ["web"],
            "sites": ["fra"],
        }
    )
    invocation = commands.backup(
        _at(_access(site), cache="/cache"), source_name="www", source=source, host="web1"
    )
    assert invocation.argv == (
        "restic",
        "backup",
        "--json",
        "--cache-dir",
        "/cache",
        "-o",
        "rest.connections=4",
        "--limit-upload",
        "512",
        "--host",
        "web1",
        "--tag",
        "firebreak.source=www",
        "--tag",
        "web",
        "--exclude",
        "*.tmp",
        "--exclude-if-present",
        ".nobackup",
        "--one-file-system",
        "--",
        "/var/www",
        "/etc/nginx",
    )
    joined = " ".join(invocation.argv)
    assert "rest-secret" not in joined and "rest:" not in joined
    assert invocation.env["RESTIC_REPOSITORY"] == "rest:https://u:rest-secret@h:8000/www"
    assert invocation.env["RESTIC_PASSWORD_FILE"] == "/etc/firebreak/pw"
    assert "rest-secret" in invocation.secrets
    assert "rest-secret" not in repr(invocation)


def test_environment_is_fresh_and_allowlisted() -> None:
    parent = {"PATH": "/usr/bin", "HOME": "/root", "RESTIC_PASSWORD": "leak", "AWS_SECRET": "leak"}
    site = _site(env={"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "${S3_SECRET}"})
    access = _access(site, {"REST_PW": "x", "S3_SECRET": "s3-secret"})
    env = commands.build_env(access, parent)
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/root"
    assert "RESTIC_PASSWORD" not in env and "AWS_SECRET" not in env
    assert env["AWS_SECRET_ACCESS_KEY"] == "s3-secret"
    assert env["RESTIC_PROGRESS_FPS"] == commands.PROGRESS_FPS
    assert "s3-secret" in access.secrets


def test_env_password_goes_through_a_pipe_not_the_environment() -> None:
    site = _site(password_file=None, password="${FRA_PASSWORD}")
    access = resolve_site("fra", site, environ={"REST_PW": "x", "FRA_PASSWORD": "pw-123"})
    invocation = commands.snapshots(_at(access), source_name="www")
    assert invocation.password == "pw-123"
    assert "pw-123" not in invocation.env.values()
    assert "RESTIC_PASSWORD_FILE" not in invocation.env  # the runner sets it to the pipe
    assert invocation.argv[-2:] == ("--tag", "firebreak.source=www")


def test_password_command_is_passed_to_restic() -> None:
    site = _site(password_file=None, password_command="pass show restic/fra")
    env = commands.build_env(_access(site), {})
    assert env["RESTIC_PASSWORD_COMMAND"] == "pass show restic/fra"


def test_file_references_are_read_at_resolution(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("from-file\n")
    site = _site(env={"B2_ACCOUNT_KEY": f"file:{key}"})
    assert _access(site).env["B2_ACCOUNT_KEY"] == "from-file"


def test_unset_variable_is_named_without_values() -> None:
    from firebreak.config.references import UnresolvedReference

    with pytest.raises(UnresolvedReference, match="REST_PW is not set"):
        resolve_site("fra", _site(), environ={})


def test_init_and_restore_argv() -> None:
    access = _access(_site(limit_download=100))
    init = commands.init(_at(access, binary="/usr/bin/restic"))
    assert init.argv == (
        "/usr/bin/restic",
        "init",
        "--json",
        "--cache-dir",
        "/c",
        "--limit-download",
        "100",
    )
    restore = commands.restore(_at(access), snapshot="latest", target=Path("/restore"))
    assert restore.argv[-3:] == ("latest", "--target", "/restore")


def test_forget_is_scoped_to_the_source_and_host() -> None:
    from datetime import timedelta

    from firebreak.config.model import Retention

    retention = Retention(
        keep_last=3, keep_daily=7, keep_within=timedelta(weeks=2), keep_tags=["keep"]
    )
    invocation = commands.forget(
        _at(_access(_site())), source_name="www", host="web1", retention=retention
    )
    assert invocation.command == "forget"
    assert invocation.argv[5:] == (
        "--host",
        "web1",
        "--tag",
        "firebreak.source=www",
        "--keep-last",
        "3",
        "--keep-daily",
        "7",
        "--keep-within",
        "14d0h",
        "--keep-tag",
        "keep",
        "--prune",
    )


@pytest.mark.parametrize(
    ("version", "site_extra", "expected"),
    [
        (ResticVersion(0, 14, 0), {}, ()),  # older than --retry-lock: fails at once
        (ResticVersion(0, 15, 1), {}, ()),
        (ResticVersion(0, 16, 0), {}, ("--retry-lock", "120s")),
        (ResticVersion(0, 19, 1), {"lock_wait": "30s"}, ("--retry-lock", "30s")),
        # restic prints nothing while it waits: never as long as the stall detector's patience
        (ResticVersion(0, 19, 1), {"stall_timeout": "1m"}, ("--retry-lock", "30s")),
        (ResticVersion(0, 19, 1), {"lock_wait": None}, ()),
    ],
)
def test_commands_that_lock_wait_for_a_lock_where_restic_can(
    version: ResticVersion, site_extra: dict[str, object], expected: tuple[str, ...]
) -> None:
    at = SiteRestic("restic", _access(_site(**site_extra)), Path("/c"), {}, version)
    source = Source.model_validate({"paths": ["/srv"], "sites": ["fra"]})
    locking = [
        commands.backup(at, source_name="www", source=source, host="web1"),
        commands.check(at, subset=(1, 12)),
        commands.prune(at),
        commands.restore(at, snapshot="latest", target=Path("/t")),
    ]
    for invocation in locking:
        argv = invocation.argv
        where = argv.index("--retry-lock") if "--retry-lock" in argv else None
        assert (argv[where : where + 2] if where is not None else ()) == expected, (
            invocation.command
        )
    for reading in (commands.snapshots(at), commands.cat_config(at), commands.unlock(at)):
        assert "--retry-lock" not in reading.argv, reading.command


def test_an_unknown_version_is_taken_as_the_oldest() -> None:
    at = _at(_access(_site()))
    assert at.version == ResticVersion(0, 14, 0)
    assert "--retry-lock" not in commands.prune(at).argv
