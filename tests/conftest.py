"""Shared fixtures: real servers (tests/support/servers.py), configs on disk, databases."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from firebreak.history.database import make_engine, upgrade
from tests.support import restics
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked restic_matrix runs on every restic release the tests have."""
    if metafunc.definition.get_closest_marker("restic_matrix") is None:
        return
    releases = restics.matrix()
    if len(releases) < 2 and os.environ.get("CI"):
        raise pytest.UsageError(
            f"no other restic release in {restics.CACHE}: make restic-versions fetches them"
        )
    metafunc.parametrize(
        "restic_binary", list(releases.values()), ids=list(releases), indirect=True
    )


@pytest.fixture
def restic_binary(request: pytest.FixtureRequest) -> str:
    """The restic program a test's config names: the system's, or a release of the matrix."""
    return str(getattr(request, "param", restics.SYSTEM))


@pytest.fixture
def setup(tmp_path: Path, restic_binary: str) -> Setup:
    """A config under construction in tmp_path, with a sample source tree and a password."""
    return Setup(tmp_path, restic=restic_binary)


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
