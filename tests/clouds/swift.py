"""OpenStack Swift all-in-one for tests: memcached + account, container, object and proxy servers
over a temporary directory, single-replica rings, tempauth (user test:tester / key testing).

The `swift` package lives in its own venv (env SWIFT_VENV, default /opt/swift-venv) because its
pinned dependencies clash with the gateway's. `swift_cloud` is session-scoped; `swift_factory`
starts throwaway clusters (for "the cloud stops mid-test" and short token lifetimes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import swiftclient

from tests.gatewayproc import free_port

SWIFT_USER, SWIFT_KEY = "test:tester", "testing"
_SERVERS = ("account", "container", "object")


def swift_venv() -> Path:
    venv = Path(os.environ.get("SWIFT_VENV", "/opt/swift-venv"))
    if not (venv / "bin" / "swift-proxy-server").exists():
        raise RuntimeError(
            f"OpenStack Swift is not installed in {venv} (env SWIFT_VENV). .ci/run must do: "
            f"`python3 -m venv {venv} && {venv}/bin/pip install swift` and "
            "`apt-get install -y memcached`")
    return venv


def _memcached() -> str:
    path = shutil.which("memcached") or "/usr/bin/memcached"
    if not Path(path).exists():
        raise RuntimeError("memcached is not installed: .ci/run must `apt-get install -y memcached`")
    return path


@dataclass
class SwiftCluster:
    root: Path
    proxy_port: int
    token_life: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/auth/v1.0"

    def details(self, container: str, **extra: Any) -> dict[str, Any]:
        """Location `details` for a swift location on this cluster."""
        return {"authUrl": self.auth_url, "authVersion": 1, "user": SWIFT_USER,
                "key": SWIFT_KEY, "containerName": container, **extra}

    def connection(self) -> swiftclient.Connection:
        """A python-swiftclient connection: the cloud's own SDK, to check native form."""
        return swiftclient.Connection(authurl=self.auth_url, user=SWIFT_USER, key=SWIFT_KEY,
                                      retries=0, timeout=10)

    def make_container(self, name: str) -> str:
        conn = self.connection()
        try:
            conn.put_container(name)
        finally:
            conn.close()
        return name

    def stop(self) -> None:
        # SIGKILL: on SIGTERM the servers wait for open keep-alive connections (seconds each),
        # and a throwaway cluster has nothing to flush.
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.kill()
        for proc in self.processes:
            proc.wait()
        for log in self.logs:
            log.close()
        self.logs.clear()

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.root.glob("*.log"))


def _write_confs(root: Path, ports: dict[str, int], memcached_port: int, token_life: int) -> Path:
    etc, devices = root / "etc", root / "node"
    etc.mkdir(parents=True)
    (devices / "d1").mkdir(parents=True)
    (etc / "swift.conf").write_text(
        "[swift-hash]\nswift_hash_path_prefix = gwtest\nswift_hash_path_suffix = gwtest\n\n"
        # Storage policies come from /etc/swift/swift.conf whatever swift_dir says (Swift 2.38),
        # so the cluster has policy 0 only, named "Policy-0" as Swift calls it without that file.
        "[storage-policy:0]\nname = Policy-0\ndefault = yes\n")
    common = (f"[DEFAULT]\ndevices = {devices}\nmount_check = false\nbind_ip = 127.0.0.1\n"
              f"workers = 0\nuser = {os.environ.get('USER', 'root') if os.getuid() else 'root'}\n"
              f"swift_dir = {etc}\nlog_level = WARNING\ndisable_fallocate = true\n")
    for server in _SERVERS:
        (etc / f"{server}-server.conf").write_text(
            common + f"bind_port = {ports[server]}\n\n[pipeline:main]\npipeline = {server}-server\n\n"
            f"[app:{server}-server]\nuse = egg:swift#{server}\n")
    (etc / "proxy-server.conf").write_text(
        common + f"bind_port = {ports['proxy']}\n\n"
        "[pipeline:main]\npipeline = catch_errors gatekeeper healthcheck proxy-logging cache "
        "listing_formats bulk tempauth copy slo dlo proxy-logging proxy-server\n\n"
        # One single-process node per server on a busy test machine: generous backend timeouts,
        # and no error limiting (it would turn one slow answer into a minute of 503s).
        "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n"
        "conn_timeout = 5\nnode_timeout = 30\nerror_suppression_limit = 100000\n\n"
        f"[filter:tempauth]\nuse = egg:swift#tempauth\ntoken_life = {token_life}\n"
        f"user_test_tester = {SWIFT_KEY} .admin\n\n"
        f"[filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:{memcached_port}\n\n"
        "[filter:catch_errors]\nuse = egg:swift#catch_errors\n\n"
        "[filter:gatekeeper]\nuse = egg:swift#gatekeeper\n\n"
        "[filter:healthcheck]\nuse = egg:swift#healthcheck\n\n"
        "[filter:proxy-logging]\nuse = egg:swift#proxy_logging\n\n"
        "[filter:listing_formats]\nuse = egg:swift#listing_formats\n\n"
        "[filter:bulk]\nuse = egg:swift#bulk\n\n"
        "[filter:copy]\nuse = egg:swift#copy\n\n"
        "[filter:slo]\nuse = egg:swift#slo\n\n"
        "[filter:dlo]\nuse = egg:swift#dlo\n")
    return etc


_RING_SCRIPT = """
import sys
from swift.common.ring import RingBuilder
etc = sys.argv[1]
for name, port in zip(sys.argv[2::2], sys.argv[3::2]):
    builder = RingBuilder(8, 1, 1)
    builder.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port),
                     "device": "d1", "weight": 100})
    builder.rebalance()
    builder.save(f"{etc}/{name}.builder")
    builder.get_ring().save(f"{etc}/{name}.ring.gz")
"""


def _build_rings(venv: Path, etc: Path, ports: dict[str, int]) -> None:
    """Single-replica rings, one device each: what `swift-ring-builder X create 8 1 1; add
    r1z1-127.0.0.1:P/d1 100; rebalance` makes, in one interpreter instead of nine."""
    args = [str(a) for server in _SERVERS for a in (server, ports[server])]
    subprocess.run([str(venv / "bin" / "python"), "-c", _RING_SCRIPT, str(etc), *args],
                   check=True, capture_output=True, timeout=60)


def _wait_ready(cluster: SwiftCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        for proc in cluster.processes:
            if proc.poll() is not None:
                raise RuntimeError(f"swift process {proc.args} exited:\n{cluster.log()}")
        try:
            request = urllib.request.Request(
                cluster.auth_url, headers={"X-Auth-User": SWIFT_USER, "X-Auth-Key": SWIFT_KEY})
            with urllib.request.urlopen(request, timeout=2) as resp:
                url, token = resp.headers["X-Storage-Url"], resp.headers["X-Auth-Token"]
            # A container and an object PUT reach the account, container and object servers.
            for path in ("/readiness-probe", "/readiness-probe/probe"):
                put = urllib.request.Request(url + path, method="PUT", data=b"",
                                             headers={"X-Auth-Token": token})
                with urllib.request.urlopen(put, timeout=5):
                    pass
            return
        except (OSError, urllib.error.URLError, KeyError) as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"swift not ready after {timeout}s: {last}\n{cluster.log()}")


@contextmanager
def start_swift(root: Path, *, token_life: int = 86400, timeout: float = 30) -> Iterator[SwiftCluster]:
    """Run a Swift all-in-one under `root` on free ports; stop it on exit."""
    venv = swift_venv()
    memcached = _memcached()
    ports = {name: free_port() for name in (*_SERVERS, "proxy")}
    memcached_port = free_port()
    etc = _write_confs(root, ports, memcached_port, token_life)
    _build_rings(venv, etc, ports)
    cluster = SwiftCluster(root=root, proxy_port=ports["proxy"], token_life=token_life)
    try:
        log = open(root / "memcached.log", "wb")  # noqa: SIM115 - closed by stop()
        cluster.logs.append(log)
        cluster.processes.append(subprocess.Popen(
            [memcached, "-l", "127.0.0.1", "-p", str(memcached_port), "-U", "0", "-m", "16",
             *(["-u", "root"] if os.getuid() == 0 else [])], stdout=log, stderr=log))
        for server in (*_SERVERS, "proxy"):
            log = open(root / f"{server}.log", "wb")  # noqa: SIM115 - closed by stop()
            cluster.logs.append(log)
            cluster.processes.append(subprocess.Popen(
                [str(venv / "bin" / f"swift-{server}-server"), str(etc / f"{server}-server.conf")],
                stdout=log, stderr=log, cwd=root))
        _wait_ready(cluster, timeout)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def swift_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwiftCluster]:
    """The session's Swift all-in-one."""
    root = tmp_path_factory.mktemp("swift")
    with start_swift(root) as cluster:
        yield cluster
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def swift_factory(tmp_path: Path) -> Iterator[Any]:
    """Start throwaway clusters: `cluster = swift_factory(token_life=2)`; stopped at test end."""
    stack: list[Any] = []

    def start(**kwargs: Any) -> SwiftCluster:
        root = tmp_path / f"swift{len(stack)}"
        manager = start_swift(root, **kwargs)
        cluster = manager.__enter__()
        stack.append(manager)
        return cluster

    yield start
    for manager in reversed(stack):
        manager.__exit__(None, None, None)
