"""Config errors: each bad value named by file, line and key path; all of them at once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from firebreak.actions.runtime import local_run_limit
from firebreak.config import ConfigError, load_config
from firebreak.config.durations import format_duration, parse_duration
from firebreak.config.model import Config, Site
from firebreak.placement.targets import is_local

GOOD_SITE: dict[str, Any] = {
    "repository": "/srv/repo",
    "password_file": "pw",
    "location": {"provider": "ovh", "region": "eu", "datacenter": "GRA1", "country": "FR"},
}


def _config(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sites": {"gra": dict(GOOD_SITE), "fra": dict(GOOD_SITE)},
        "sources": {"www": {"paths": ["/var/www"], "sites": ["gra", "fra"]}},
    }
    data.update(changes)
    return data


def _write(tmp_path: Path, data: Any) -> Path:
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "pw").chmod(0o600)
    path = tmp_path / "firebreak.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _problems(tmp_path: Path, data: Any, *, check_environment: bool = True) -> list[str]:
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        load_config(path, check_environment=check_environment)
    assert caught.value.file == str(path)
    return caught.value.render().splitlines()


def _with_site(**site: Any) -> dict[str, Any]:
    data = _config()
    data["sites"]["gra"] = {**GOOD_SITE, **site}
    return data


def _with_source(**source: Any) -> dict[str, Any]:
    data = _config()
    data["sources"]["www"] = {"paths": ["/var/www"], "sites": ["gra", "fra"], **source}
    return data


def test_a_good_config_loads(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, _config()), check_environment=True)
    assert config.sites["gra"].password_file == tmp_path / "pw"
    # Two sites: all but one must be fresh by default.
    assert config.sources["www"].required_fresh_sites == 1
    assert config.database_url == "sqlite:////var/lib/firebreak/firebreak.db"
    assert config.cache_dir == Path("/var/lib/firebreak/cache")


BAD_VALUES = [
    (_with_site(password_file="missing.pw"), "sites.gra.password_file", "does not exist"),
    (_with_site(password="hunter2"), "sites.gra.password", "never written in the config"),
    (
        _with_site(password="${FIREBREAK_TEST_UNSET}"),
        "sites.gra.password",
        "FIREBREAK_TEST_UNSET is not set",
    ),
    (_with_site(password_command="cat /run/x"), "sites.gra", "exactly one of"),
    (_with_site(password_file=None), "sites.gra", "exactly one of"),
    (_with_site(repository=""), "sites.gra.repository", "at least 1 character"),
    (
        _with_site(repository="rest:https://u:${FIREBREAK_TEST_UNSET}@h/"),
        "sites.gra.repository",
        "not set",
    ),
    (_with_site(init="sometimes"), "sites.gra.init", "'auto' or 'never'"),
    (_with_site(timeout="forever"), "sites.gra.timeout", "not a duration"),
    (_with_site(timeout=30), "sites.gra.timeout", "has no unit"),
    (_with_site(stall_timeout="0s"), "sites.gra.stall_timeout", "is zero"),
    (_with_site(limit_upload=0), "sites.gra.limit_upload", "greater than 0"),
    (_with_site(limit_download="fast"), "sites.gra.limit_download", "valid integer"),
    (_with_site(env={"RESTIC_PASSWORD": "x"}), "sites.gra.env", "set by firebreak itself"),
    (
        _with_site(env={"AWS_SECRET_ACCESS_KEY": "file:nope"}),
        "sites.gra.env",
        "AWS_SECRET_ACCESS_KEY: file",
    ),
    (
        _with_site(env={"B2_ACCOUNT_KEY": "${FIREBREAK_TEST_UNSET}"}),
        "sites.gra.env",
        "B2_ACCOUNT_KEY",
    ),
    (_with_site(options={"--x": "1"}), "sites.gra.options", "not an option name"),
    (_with_site(retries=3), "sites.gra.retries", "unknown key"),
    (_with_site(pasword_file="pw"), "sites.gra.pasword_file", "did you mean 'password_file'"),
    (
        _with_site(location={"provider": "ovh", "region": "eu", "country": "FR"}),
        "sites.gra.location.datacenter",
        "required",
    ),
    (
        _with_site(location={**GOOD_SITE["location"], "country": "France"}),
        "sites.gra.location.country",
        "two-letter ISO 3166-1 code",
    ),
    (
        _with_site(location={**GOOD_SITE["location"], "lat": 48.5}),
        "sites.gra.location",
        "lat and lon go together",
    ),
    (
        _with_site(location={**GOOD_SITE["location"], "lat": 95, "lon": 7}),
        "sites.gra.location.lat",
        "less than or equal to 90",
    ),
    (_with_source(paths=[]), "sources.www", "exactly one of paths, postgresql, mariadb"),
    (
        _with_source(sqlite={"path": "/etc/hostname"}),
        "sources.www",
        "found paths and sqlite",
    ),
    (_with_source(paths=[], command=["slapcat"]), "sources.www", "command and stdin_filename"),
    (
        _with_source(paths=[], command=["no-such-tool-4471"], stdin_filename="x.ldif"),
        "sources.www",
        "the dump needs no-such-tool-4471, not found",
    ),
    (
        _with_source(paths=[], postgresql={"databases": ["-f"]}),
        "sources.www.postgresql.databases[0]",
        "String should match pattern",
    ),
    (
        _with_source(paths=[], mariadb={"databases": ["a"], "scratch_database": "a"}),
        "sources.www.mariadb",
        "is one of the dumped databases",
    ),
    (
        _with_source(paths=[], postgresql={"databases": "all", "password": "hunter2"}),
        "sources.www.postgresql.password",
        "never written in the config",
    ),
    (
        _with_source(hooks={"before": [{"argv": ["a"], "shell": "b"}]}),
        "sources.www.hooks.before[0]",
        "give either argv (a list of words) or shell",
    ),
    (_with_source(sites=["gra", "gra"]), "sources.www.sites", "site listed twice: gra"),
    (_with_source(sites=["gra", "lon"]), "sources.www.sites[1]", "unknown site 'lon'"),
    (_with_source(max_age="1 day"), "sources.www.max_age", "not a duration"),
    (_with_source(min_fresh_sites=3), "sources.www", "only 2 sites"),
    (_with_source(min_fresh_sites=0), "sources.www.min_fresh_sites", "greater than or equal to 1"),
    (_with_source(schedule="daily"), "sources.www.schedule", "neither a five-field cron"),
    (_with_source(schedule="every day"), "sources.www.schedule", "not a duration"),
    (_config(timezone="Mars/Olympus"), "timezone", "not a known time zone"),
    (_config(retry={"attempts": -1}), "retry.attempts", "greater than or equal to 0"),
    (_config(daemon={"shutdown_grace": "soon"}), "daemon.shutdown_grace", "not a duration"),
    (_with_source(schedule="61 3 * * *"), "sources.www.schedule", "minute: 61 is out of range"),
    (_with_source(one_file_system="maybe"), "sources.www.one_file_system", "valid boolean"),
    (
        _with_source(retention={"schedule": "every 1d"}),
        "sources.www.retention",
        "at least one keep_* rule",
    ),
    (
        _with_source(retention={"keep_last": 0}),
        "sources.www.retention.keep_last",
        "greater than or equal to 1",
    ),
    (_config(max_parallel_runs=0), "max_parallel_runs", "greater than or equal to 1"),
    (_config(metrics={"listen": "everywhere"}), "metrics.listen", "host:port"),
    (_config(sites={}), "sites", "at least 1 item"),
    (_config(sites={"bad name!": GOOD_SITE}), "sites.bad name!", "name 'bad name!'"),
    (_config(colour="blue"), "colour", "unknown key"),
    (
        _config(metrics={"basic_auth_users": {"prom": "plaintext"}}),
        "metrics.basic_auth_users",
        "never passwords",
    ),
    (
        _config(metrics={"tls": {"cert_file": "nope.pem", "key_file": "pw"}}),
        "metrics.tls.cert_file",
        "does not exist",
    ),
    (
        _config(notify={"webhooks": [{"url": "ftp://x"}]}),
        "notify.webhooks[0].url",
        "should match pattern",
    ),
    (
        _config(notify={"webhooks": [{"url": "https://x", "on": []}]}),
        "notify.webhooks",
        "would never notify",
    ),
]


@pytest.mark.parametrize(
    ("data", "path", "message"), BAD_VALUES, ids=[b[1] + ":" + b[2] for b in BAD_VALUES]
)
def test_each_bad_value_names_its_file_line_and_path(
    tmp_path: Path, data: dict[str, Any], path: str, message: str
) -> None:
    problems = _problems(tmp_path, data)
    matching = [p for p in problems if f": {path}: " in p and message in p]
    assert matching, f"expected '{path}: …{message}…' in {problems}"
    assert matching[0].startswith(f"{tmp_path / 'firebreak.yaml'}:")
    line = matching[0].split(":")[1]
    assert line.isdigit(), f"no line number in {matching[0]}"


def test_a_source_named_like_a_form_of_a_value_keeps_its_name(tmp_path: Path) -> None:
    # pydantic names a value's forms (a model class, list[str]) in its locations, and the
    # loader drops them: but not a key the YAML has, whatever it is called.
    data = _config()
    data["sources"] = {
        "PostgreSQL": {"paths": ["/var/www"], "sites": ["gra", "fra"], "max_age": "2"},
        "list[str]": {"paths": ["/var/www"], "sites": ["gra", "fra"], "hooks": {"after": [[]]}},
    }
    problems = _problems(tmp_path, data)
    assert any(": sources.PostgreSQL.max_age: " in p for p in problems), problems
    # An empty hook is refused, at its place under the source's own odd name.
    assert any("sources.list[str].hooks.after[0]" in p and "at least 1" in p for p in problems), (
        problems
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = _config()
    data["sites"]["gra"] = {**GOOD_SITE, "password_file": "nope", "init": "x"}
    data["sites"]["fra"] = {**GOOD_SITE, "timeout": "soon"}
    data["sources"]["www"]["sites"] = ["gra", "fra", "lon"]
    data["sources"]["www"]["max_age"] = "2"
    problems = _problems(tmp_path, data)
    assert len(problems) == 5, problems
    paths = [p.split(": ")[1] for p in problems]
    assert set(paths) == {
        "sites.gra.password_file",
        "sites.gra.init",
        "sites.fra.timeout",
        "sources.www.sites[2]",
        "sources.www.max_age",
    }


def test_line_numbers_point_at_the_key(tmp_path: Path) -> None:
    text = (
        "sites:\n"
        "  gra:\n"
        "    repository: /srv/r\n"
        "    password_file: pw\n"
        "    init: sometimes\n"
        "    location: {provider: a, region: b, datacenter: c, country: FR}\n"
        "sources:\n"
        "  www: {paths: [/x], sites: [gra]}\n"
    )
    problems = _problems(tmp_path, text)
    assert problems == [
        f"{tmp_path / 'firebreak.yaml'}:5: sites.gra.init: Input should be 'auto' or 'never'"
    ]


def test_a_key_defined_twice_is_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    text = yaml.safe_dump(_config(), sort_keys=False)
    text = text.replace("sources:", "max_parallel_runs: 3\nmax_parallel_runs: 4\nsources:")
    problems = _problems(tmp_path, text)
    assert any("max_parallel_runs: defined twice" in p for p in problems), problems


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("sites: [\n", "not valid YAML"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, message: str) -> None:
    problems = _problems(tmp_path, text)
    assert len(problems) == 1 and message in problems[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file does not exist"):
        load_config(tmp_path / "absent.yaml")


def test_environment_is_only_checked_when_asked(tmp_path: Path) -> None:
    data = _with_site(password_file="not-there")
    path = _write(tmp_path, data)
    config = load_config(path)  # status and db commands read history without secrets
    assert config.sites["gra"].password_file == tmp_path / "not-there"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(path, check_environment=True)


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ("repos/a", "{dir}/repos/a"),
        ("local:repos/a", "local:{dir}/repos/a"),
        ("/srv/a", "/srv/a"),
        ("rest:http://127.0.0.1:8000/a", "rest:http://127.0.0.1:8000/a"),
        ("sftp:backup@host:relative/path", "sftp:backup@host:relative/path"),
        ("${REPO_ROOT}/a", "${REPO_ROOT}/a"),
    ],
)
def test_relative_local_repositories_are_relative_to_the_config_file(
    tmp_path: Path, repository: str, expected: str
) -> None:
    config = load_config(_write(tmp_path, _with_site(repository=repository)))
    assert config.sites["gra"].repository == expected.replace("{dir}", str(tmp_path))


def test_env_file_references_become_absolute(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k\n")
    config = load_config(_write(tmp_path, _with_site(env={"AWS_SECRET_ACCESS_KEY": "file:key"})))
    assert config.sites["gra"].env["AWS_SECRET_ACCESS_KEY"] == f"file:{tmp_path / 'key'}"


def test_a_literal_password_is_never_echoed_in_the_error(tmp_path: Path) -> None:
    problems = _problems(tmp_path, _with_site(password="hunter2-literal"))
    assert not any("hunter2-literal" in p for p in problems)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("26h", 93600), ("7d", 604800), ("1w", 604800), ("1d12h", 129600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize("text", ["", "5", "h", "1.5h", "-1h", "0m", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("mode", "readers", "says"),
    [
        (0o644, "owner", "is readable by everyone (mode 0644): chmod 600 it"),
        (0o640, "owner", "is readable by its group (mode 0640): chmod 600 it"),
        (0o604, "group", "is readable by everyone (mode 0604): chmod 640 it"),
        (0o640, "group", None),
        (0o644, "unchecked", None),
        (0o400, "owner", None),
    ],
)
def test_secret_files_must_be_closed_as_ssh_wants_keys(
    tmp_path: Path, mode: int, readers: str, says: str | None
) -> None:
    key = tmp_path / "s3.secret"
    key.write_text("k\n")
    data = _with_site(secret_file_readers=readers, env={"AWS_SECRET_ACCESS_KEY": f"file:{key}"})
    data["sites"]["fra"]["secret_file_readers"] = readers  # it shares the password file
    path = _write(tmp_path, data)
    (tmp_path / "pw").chmod(mode)
    key.chmod(mode)
    if says is None:
        load_config(path, check_environment=True)
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path, check_environment=True)
    [problem] = [p for p in caught.value.render().splitlines() if "sites.gra:" in p]
    assert f"password_file: file {tmp_path / 'pw'} {says}" in problem
    assert f"env.AWS_SECRET_ACCESS_KEY: file {key} {says}" in problem
    assert "secret_file_readers" in problem
    load_config(path)  # only the shape is checked without check_environment


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("no-such-program-4471 --get x", "its program (the first word) is not found on PATH"),
        ("/nonexistent/fetch-secret x", "its program (the first word) does not exist"),
        ("{dir}/fetch 'x", "cannot be split into words"),
        ("{dir}/fetch x", "its program (the first word) is not executable"),
    ],
)
def test_a_password_command_that_cannot_run_is_caught_before_3am(
    tmp_path: Path, command: str, says: str
) -> None:
    (tmp_path / "fetch").write_text("#!/bin/sh\necho pw\n")
    data = _with_site(password_file=None, password_command=command.format(dir=tmp_path))
    problems = _problems(tmp_path, data)
    assert any("sites.gra.password_command: " in p and says in p for p in problems), problems
    words = [w for w in command.format(dir=tmp_path).replace("'", "").split() if len(w) > 3]
    assert not any(word in p for p in problems for word in words), "the command was echoed"


def test_a_password_file_that_is_a_directory_says_so(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    problems = _problems(tmp_path, _with_site(password_file=str(tmp_path / "secrets")))
    assert any(f"file {tmp_path / 'secrets'} is a directory, not a file" in p for p in problems)


@pytest.mark.parametrize(
    ("content", "says"), [(b"k\x00ey\n", "contains a NUL byte"), (b"\xff\xfe\n", "is not UTF-8")]
)
def test_a_credential_file_must_be_text(tmp_path: Path, content: bytes, says: str) -> None:
    key = tmp_path / "key"
    key.write_bytes(content)
    key.chmod(0o600)
    problems = _problems(tmp_path, _with_site(env={"B2_ACCOUNT_KEY": f"file:{key}"}))
    assert any(f"sites.gra.env: B2_ACCOUNT_KEY: {key} {says}" in p for p in problems), problems


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        (b"sites:\n  a:\n    repository: /x\xff\n", 3, "not UTF-8 text (byte 0xff)"),
        (b"sites:\n  a:\n    repository: /x\x00\n", 3, "contains a NUL byte"),
        (b'sites:\n  a:\n    repository: "/x\n    init: auto\n', 3, "a quoted value opened here"),
        (b"sites: [a\nsources: {}\n", 2, "(in a [ list from line 1)"),
        (b"sites:\n  a:\n\trepository: /x\n", 3, "a tab character"),
        (b"sites:\n  a:\n    repository: /x\n   init: 1\n", 4, "expected <block end>"),
    ],
)
def test_a_file_that_is_not_good_yaml_is_pointed_at_the_right_line(
    tmp_path: Path, text: bytes, line: int, says: str
) -> None:
    path = tmp_path / "firebreak.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.render().splitlines()
    assert problem.startswith(f"{path}:{line}: ") and says in problem, problem


@pytest.mark.parametrize(("sites", "required"), [(1, 1), (2, 1), (3, 2), (5, 4)])
def test_min_fresh_sites_defaults_to_all_sites_but_one(
    tmp_path: Path, sites: int, required: int
) -> None:
    names = [f"s{n}" for n in range(sites)]
    data = {
        "sites": {name: dict(GOOD_SITE) for name in names},
        "sources": {"www": {"paths": ["/var/www"], "sites": names}},
    }
    config = load_config(_write(tmp_path, data))
    assert config.sources["www"].required_fresh_sites == required


def test_a_systemd_credential_names_a_password_or_an_env_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firebreak.restic.access import resolve_site

    credentials = tmp_path / "credentials"  # what systemd makes for LoadCredential=
    credentials.mkdir()
    (credentials / "gra.password").write_text("from-systemd\n")
    (credentials / "gra.s3-key").write_text("key-from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    data = _config()
    del data["sites"]["gra"]["password_file"]
    data["sites"]["gra"].update(
        password="credential:gra.password", env={"AWS_SECRET_ACCESS_KEY": "credential:gra.s3-key"}
    )
    config = load_config(_write(tmp_path, data), check_environment=True)
    site = config.sites["gra"]
    assert site.env["AWS_SECRET_ACCESS_KEY"] == "credential:gra.s3-key"  # found when used
    access = resolve_site("gra", site)
    assert access.password == "from-systemd"
    assert access.env["AWS_SECRET_ACCESS_KEY"] == "key-from-systemd"
    assert {"from-systemd", "key-from-systemd"} <= set(access.secrets)


def test_a_credential_the_unit_does_not_load_says_what_to_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    data = _config()
    del data["sites"]["gra"]["password_file"]
    data["sites"]["gra"]["password"] = "credential:gra.password"
    problems = _problems(tmp_path, data)
    assert any(
        "sites.gra.password: credential gra.password is not loaded: the unit needs "
        "LoadCredential=gra.password, and the file /etc/credstore/gra.password" in p
        for p in problems
    ), problems


def test_a_credential_outside_systemd_comes_from_the_credential_store_or_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firebreak.config import references

    store = tmp_path / "credstore"
    store.mkdir()
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.setattr(references, "CREDENTIAL_STORES", (store, tmp_path / "run-credstore"))
    why = references.check_reference("credential:gra.password", Path("/"))
    assert why is not None
    assert why.startswith(
        f"credential gra.password: not started by systemd with LoadCredential=gra.password, "
        f"and file {store / 'gra.password'} does not exist"
    )
    (store / "gra.password").write_text("from-the-store\n")
    assert references.check_reference("credential:gra.password", Path("/")) is None
    assert references.resolve("credential:gra.password", Path("/")) == "from-the-store"
    for bad in ("../etc/shadow", "a/b", "", "name\n"):
        with pytest.raises(references.UnresolvedReference, match="is not a credential name"):
            references.resolve(f"credential:{bad}", Path("/"))


def test_a_secret_in_a_directory_this_user_cannot_enter_is_an_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firebreak.config import references

    closed = tmp_path / "closed"
    closed.mkdir()
    (closed / "pw").write_text("x")
    monkeypatch.setattr(Path, "stat", _denied_under(closed, Path.stat))
    assert references.file_problem(closed / "pw") == (
        f"file {closed / 'pw'} cannot be read: Permission denied"
    )
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.setattr(references, "CREDENTIAL_STORES", (closed,))
    why = references.check_reference("credential:pw", Path("/"))
    assert why is not None and "cannot be read: Permission denied" in why


def _denied_under(directory: Path, stat: Any) -> Any:
    """Path.stat as a user who may not enter directory sees it (root may enter anything)."""

    def denied(self: Path, **kwargs: Any) -> Any:
        if directory in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return stat(self, **kwargs)

    return denied


def test_under_systemd_a_credential_it_did_not_load_says_what_the_unit_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from firebreak.config import references

    # A service with no LoadCredential= at all gets no $CREDENTIALS_DIRECTORY.
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
    why = references.check_reference("credential:fsn.restic-password", Path("/"))
    assert why == (
        "credential fsn.restic-password is not loaded: the unit needs "
        "LoadCredential=fsn.restic-password, and the file /etc/credstore/fsn.restic-password "
        "(systemd skips a missing one silently)"
    )


def test_history_kept_for_less_than_a_day_is_refused_and_the_daemon_prunes_what_is_kept(
    tmp_path: Path,
) -> None:
    from firebreak.daemon.jobs import Jobs

    problems = _problems(tmp_path, _config(database={"keep_runs": "12h"}))
    assert any("database.keep_runs" in p and "at least 1d" in p for p in problems), problems
    config = load_config(_write(tmp_path, _config(database={"keep_runs": "400d"})))
    assert config.database.keep_runs == parse_duration("400d")

    def planned(config: Any) -> list[str]:
        jobs = Jobs(lambda: None, None, lambda _name: None, lambda: None)  # type: ignore[arg-type, return-value]
        return [job.id for job in jobs.planned(config)]

    assert "history:prune" in planned(config)
    assert "history:prune" not in planned(load_config(_write(tmp_path, _config())))


def test_a_heartbeat_is_a_duration_of_a_second_or_more(tmp_path: Path) -> None:
    problems = _problems(tmp_path, _config(daemon={"heartbeat": "0s"}))
    assert any("daemon.heartbeat" in p and "is zero" in p for p in problems), problems
    config = load_config(_write(tmp_path, _config()))
    assert config.daemon.heartbeat == parse_duration("1m")


def test_a_key_with_a_newline_keeps_each_problem_on_one_line(tmp_path: Path) -> None:
    data = _config()
    data["sites"]["gra\nfake.yaml:1: all good"] = data["sites"].pop("gra")
    problems = _problems(tmp_path, data, check_environment=False)
    assert all("\n" not in problem for problem in problems)
    assert any('sites["gra\\nfake.yaml:1: all good"]: name' in p for p in problems), problems
    assert any("sites defined: fra, gra\\nfake.yaml:1: all good" in p for p in problems), problems


def test_only_append_only_sites_get_an_immutability_proof_on_their_schedule(
    tmp_path: Path,
) -> None:
    from firebreak.daemon.jobs import Jobs

    jobs = Jobs(lambda: None, None, lambda _name: None, lambda: None)  # type: ignore[arg-type, return-value]
    data = _config()
    data["sites"]["gra"] = {**GOOD_SITE, "append_only": True}
    data["sites"]["fra"] = {**GOOD_SITE, "immutability_schedule": "every 1h"}
    planned = {job.id: job for job in jobs.planned(load_config(_write(tmp_path, data)))}
    assert "immutability:gra" in planned and "immutability:fra" not in planned
    assert planned["immutability:gra"].schedule == "30 4 * * 0"
    data["sites"]["gra"]["immutability_schedule"] = None
    planned = {job.id: job for job in jobs.planned(load_config(_write(tmp_path, data)))}
    assert not [name for name in planned if name.startswith("immutability:")]


def test_run_limits_default_to_one_cycle_at_every_site_and_local_runs_to_the_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    names = [f"s{index}" for index in range(cores + 2)]
    sites = {name: dict(GOOD_SITE) for name in names}
    wide = {"www": {"paths": ["/var/www"], "sites": names}}
    config = Config.model_validate({"sites": sites, "sources": wide})
    assert config.run_limit == cores + 2
    # One cycle's local sites never wait for each other, however few the cores.
    assert local_run_limit(config) == cores + 2
    narrow = {"www": {"paths": ["/var/www"], "sites": ["s0"]}}
    one = Config.model_validate({"sites": sites, "sources": narrow})
    assert (one.run_limit, local_run_limit(one)) == (2, cores)
    # Remote sites cost a link, not the cores: they do not raise the local bound.
    remote = {"repository": "rest:http://backup.invalid:8000/repo"}
    far = {name: {**GOOD_SITE, **remote} for name in names}
    mixed = Config.model_validate(
        {
            "sites": {**far, "near": GOOD_SITE},
            "sources": {"www": {"paths": ["/var/www"], "sites": [*names, "near"]}},
        }
    )
    assert (mixed.run_limit, local_run_limit(mixed)) == (cores + 3, cores)
    chosen = Config.model_validate(
        {"sites": sites, "sources": wide, "max_parallel_runs": 1, "max_parallel_local_runs": 3}
    )
    assert (chosen.run_limit, local_run_limit(chosen)) == (1, 3)


def test_only_a_path_on_this_host_is_a_local_site_for_the_run_limits() -> None:
    def site(repository: str) -> Site:
        return Site.model_validate({**GOOD_SITE, "repository": repository})

    assert is_local(site("/srv/repo")) and is_local(site("local:/srv/${HOST}/repo"))
    assert not is_local(site("rest:http://backup.invalid:8000/repo"))
    # Named whole by a variable: a remote URL, perhaps; never counted against the cores.
    assert not is_local(site("${REPO_URL}"))
