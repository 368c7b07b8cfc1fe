from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.db import Backend, PostgresBackend, SqliteBackend
from provisioning.ca import CertificateAuthority
from tests.helpers import Broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto binary not installed (.ci/run installs it)")
    b = Broker(tmp_path)
    yield b
    b.close()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[object]:
    made: list[Broker] = []

    def make(extra: str = "") -> Broker:
        b = Broker(tmp_path, extra)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


PG = os.environ.get("VENUE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema of its own, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG else "?"
    yield f"{PG}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The hub's storage on both backends: a SQLite file and a schema of its own in the PostgreSQL service."""
    b: Backend
    if request.param == "sqlite":
        b = SqliteBackend(str(tmp_path / "hub.db"))
    else:
        request.applymarker(pytest.mark.postgres)
        b = PostgresBackend(request.getfixturevalue("pg_url"))
    yield b
    b.close()


@pytest.fixture
def ca(tmp_path: Path) -> Iterator[CertificateAuthority]:
    """A fresh city CA in the test's folder."""
    ca = CertificateAuthority.init(tmp_path / "ca", "Test City CA")
    yield ca
    ca.close()
