"""Building a firebreak config on disk for a test, site by site, with a sample source tree."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from firebreak.actions.runtime import Runtime, open_runtime
from firebreak.config import Config, load_config
from firebreak.history.database import make_engine
from firebreak.history.models import Run
from firebreak.history.records import all_runs
from tests.support.servers import RestServer, S3Server, SftpServer, free_port

PASSWORD = "correct-horse-battery-staple-4471"


def sample_tree(root: Path) -> Path:
    """A small tree with the shapes backups get wrong: binary, empty, nested, unicode, link."""
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "docs" / "readme.txt").write_text("firebreak sample\n")
    (root / "docs" / "deep" / "er" / "data.bin").write_bytes(os.urandom(300_000))
    (root / "docs" / "zero-length").write_bytes(b"")
    (root / "Ünïcödé name.txt").write_text("ok\n")
    (root / "link").symlink_to("docs/readme.txt")
    return root


class Setup:
    """A config under construction; ``write()`` puts it on disk, ``load()`` validates it."""

    def __init__(self, tmp_path: Path, *, restic: str = "restic") -> None:
        self.dir = tmp_path
        # The restic program (tests/support/restics.py): written into restic.binary.
        self.restic = restic
        self.password_file = tmp_path / "restic.password"
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)
        self.source_dir = sample_tree(tmp_path / "src")
        self.sites: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, dict[str, Any]] = {}
        # Test sites share this machine and its disk: the placement policy only warns here.
        self.top: dict[str, Any] = {
            "state_dir": str(tmp_path / "state"),
            "placement": {"enforce": "warn"},
            "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        }
        self.path = tmp_path / "firebreak.yaml"

    def site(self, name: str, repository: str, **extra: Any) -> dict[str, Any]:
        number = len(self.sites) + 1
        site: dict[str, Any] = {
            "repository": repository,
            "password_file": str(self.password_file),
            "location": {
                "provider": f"provider-{number}",
                "region": f"region-{number}",
                "datacenter": f"DC{number}",
                "country": ["FR", "DE", "GB", "NL", "FI", "PL"][number % 6],
            },
            "stall_timeout": "2m",
            "timeout": "10m",
            # restic 0.16 and later wait this long for a lock, a stale one too: tests that
            # leave one behind need not wait the default 2m (half the stall_timeout here).
            "lock_wait": "10s",
        }
        site.update(extra)
        self.sites[name] = site
        return site

    def local_site(self, name: str, **extra: Any) -> dict[str, Any]:
        return self.site(name, str(self.dir / f"repo-{name}"), **extra)

    def rest_site(self, name: str, server: RestServer, **extra: Any) -> dict[str, Any]:
        return self.site(name, server.url(f"{name}-{self.dir.name}"), **extra)

    def sftp_site(self, name: str, server: SftpServer, **extra: Any) -> dict[str, Any]:
        options = dict(option.split("=", 1) for option in server.restic_options())
        return self.site(
            name, server.repository(f"{name}-{self.dir.name}"), options=options, **extra
        )

    def s3_site(self, name: str, server: S3Server, **extra: Any) -> dict[str, Any]:
        env = {}
        for key, value in server.env().items():
            secret = self.dir / f"{name}.{key.lower()}"
            secret.write_text(value + "\n")
            secret.chmod(0o600)
            env[key] = f"file:{secret}"
        bucket = f"{name}-{self.dir.name}".lower().replace("_", "-")[-60:].strip("-")
        return self.site(name, server.repository(bucket), env=env, **extra)

    def source(self, name: str, sites: list[str], **extra: Any) -> dict[str, Any]:
        source: dict[str, Any] = {"paths": [str(self.source_dir)], "sites": sites}
        source.update(extra)
        self.sources[name] = source
        return source

    def write(self) -> Path:
        top = dict(self.top)
        if self.restic != "restic":
            top["restic"] = {"binary": self.restic, **top.get("restic", {})}
        data = {**top, "sites": self.sites, "sources": self.sources}
        self.path.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.path

    def load(self) -> Config:
        return load_config(self.write(), check_environment=True)

    def runtime(self) -> Runtime:
        return open_runtime(self.load())

    def runs(self) -> list[Run]:
        """Every run in the history (the default SQLite one under state_dir), oldest first."""
        engine = make_engine(f"sqlite:///{Path(self.top['state_dir']) / 'firebreak.db'}")
        try:
            return all_runs(engine)
        finally:
            engine.dispose()
