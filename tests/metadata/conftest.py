"""Stores under test: every contract test runs once on SQLite and once on PostgreSQL.

The PostgreSQL server is the session fixture of tests/clouds/postgres.py (a pytest plugin loaded
by tests/conftest.py; TEST_CLOUDS may leave it out, and then the postgres cases skip).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.metadata.base import MetadataStore
from gateway.metadata.postgres import PostgresStore
from gateway.metadata.sqlite import SQLiteStore

StoreFactory = Callable[[], Awaitable[MetadataStore]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server (initdb, postgres)")


def pg_dsn(request: pytest.FixtureRequest, database: str) -> str:
    """A database of the session's PostgreSQL server, or skip when the plugin is not loaded."""
    try:
        server = request.getfixturevalue("postgres_server")
    except pytest.FixtureLookupError:
        pytest.skip("the postgres fixture is not loaded (TEST_CLOUDS leaves out postgres)")
    return server.create_database(database)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_dsn(backend: str, request: pytest.FixtureRequest) -> str | None:
    return pg_dsn(request, "contract") if backend == "postgres" else None


@pytest.fixture
async def make_store(backend: str, store_dsn: str | None,
                     tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Open stores on one fresh metadata state. PostgreSQL: each call is a new store (its own
    pool, as another gateway process would have); SQLite: one store, its single supported
    writer, returned every time."""
    opened: list[MetadataStore] = []
    dsn = store_dsn

    async def make() -> MetadataStore:
        if backend == "sqlite":
            if not opened:
                store: MetadataStore = SQLiteStore(tmp_path / "metadata")
                await store.open()
                opened.append(store)
            return opened[0]
        assert dsn is not None
        pg = PostgresStore(dsn, min_size=1, max_size=10)
        await pg.open()
        if not opened:  # a clean slate for this test
            await pg.pool.execute(
                "TRUNCATE buckets, objects, uploads, parts, intents, garbage")
        opened.append(pg)
        return pg

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> MetadataStore:
    return await make_store()
