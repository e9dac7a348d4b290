"""Shared fixtures: real servers (tests/support/servers.py), configs on disk, databases."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from firebreak.history.database import make_engine, upgrade
from tests.support.servers import (  # noqa: F401  (fixtures are registered by import)
    PostgresCluster,
    postgres_cluster_fixture,
    rest_server_factory_fixture,
    rest_server_fixture,
    s3_server_fixture,
    sftp_server_fixture,
)
from tests.support.setup import Setup


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if shutil.which("restic") is None:
        skip = pytest.mark.skip(reason="restic is not installed (make deps installs it)")
        for item in items:
            if "integration" in item.nodeid:
                item.add_marker(skip)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    """A config under construction in tmp_path, with a sample source tree and a password."""
    return Setup(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on SQLite and on a throwaway PostgreSQL cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.create_database()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated, empty history database."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()
