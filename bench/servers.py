"""The servers under test, each a child process on a free loopback port with its data in a
temp dir: the gateway (file location, SQLite metadata; plus an aws_s3 location on moto), the
bare aiohttp handler, nginx, moto server and s3rver."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import procstat
from bench.sigv4 import Signer, canonical_query

REPO = Path(__file__).resolve().parent.parent
NODE_PREFIX = REPO / "bench" / ".node"
GATEWAY_KEYS = ("accessKey1", "verySecretKey1")
MOTO_KEYS = ("testing", "testing")
S3RVER_KEYS = ("S3RVER", "S3RVER")
CLOUD_LOCATION = "bench-moto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"not listening on {port} after {timeout}s")


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    keys: tuple[str, str]
    s3: bool  # speaks S3 (buckets, listing, multipart); bare and nginx only store paths
    workdir: Path
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def pids(self) -> list[int]:
        return procstat.tree(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    async def request(self, method: str, path: str, query: dict[str, str] | None = None,
                      body: bytes | None = None) -> tuple[int, bytes]:
        host = f"127.0.0.1:{self.port}"
        qs = canonical_query(query)
        headers = Signer(*self.keys).headers(method, host, path, qs)
        from yarl import URL

        url = URL(f"http://{host}{path}" + (f"?{qs}" if qs else ""), encoded=True)
        async with aiohttp.ClientSession() as session, session.request(
                method, url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    def enable_versioning(self, bucket: str) -> None:
        body = (b"<VersioningConfiguration><Status>Enabled</Status>"
                b"</VersioningConfiguration>")
        status, data = asyncio.run(self.request("PUT", f"/{bucket}", {"versioning": ""}, body))
        if status != 200:
            raise RuntimeError(f"{self.name}: PutBucketVersioning: {status} {data[:200]!r}")

    def create_bucket(self, bucket: str, location: str | None = None) -> None:
        if not self.s3:
            return
        body = None
        if location:
            body = (f"<CreateBucketConfiguration><LocationConstraint>{location}"
                    "</LocationConstraint></CreateBucketConfiguration>").encode()
        status, data = asyncio.run(self.request("PUT", f"/{bucket}", body=body))
        if status != 200:
            raise RuntimeError(f"{self.name}: CreateBucket {bucket}: {status} {data[:200]!r}")


def _spawn(name: str, argv: list[str], workdir: Path, port: int, keys: tuple[str, str],
           s3: bool, env: dict[str, str] | None = None, cwd: Path | None = None,
           launcher: list[str] | None = None) -> Server:
    """`launcher`: a command the server runs under (e.g. valgrind), which also gives it
    longer to start."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [*(launcher or []), *argv]
    with open(workdir / f"{name}.log", "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, cwd=cwd or workdir,
                                   start_new_session=True)
    server = Server(name, port, process, keys, s3, workdir)
    try:
        wait_for_port(port, process, timeout=600 if launcher else 30)
    except BaseException as exc:
        server.stop()
        log_text = (workdir / f"{name}.log").read_text(errors="replace")[-800:]
        raise RuntimeError(f"{name} did not start: {exc}\n{log_text}") from exc
    return server


def start_bare(base: Path, launcher: list[str] | None = None) -> Server:
    port = free_port()
    return _spawn("bare", [sys.executable, "-m", "bench.bare", str(port), str(base / "bare")],
                  base / "bare-run", port, GATEWAY_KEYS, False, cwd=REPO, launcher=launcher)


def start_nginx(base: Path) -> Server:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                       else None)
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install -y nginx-light)")
    port = free_port()
    work = base / "nginx"
    (work / "root").mkdir(parents=True, exist_ok=True)
    (work / "tmp").mkdir(exist_ok=True)
    conf = f"""
worker_processes 1;
user root;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {work}/tmp;
    proxy_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp;
    scgi_temp_path {work}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {work}/root;
        client_max_body_size 0;
        client_body_buffer_size 1m;
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw;
        }}
    }}
}}
"""
    (work / "nginx.conf").write_text(conf)
    server = _spawn("nginx", [binary, "-c", str(work / "nginx.conf"), "-e", str(work / "error.log")],
                    work, port, GATEWAY_KEYS, False)
    server.note = "1 worker process, sendfile on, PUT through the dav module"
    return server


def start_moto(base: Path) -> Server:
    port = free_port()
    return _spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                  base / "moto", port, MOTO_KEYS, True)


def s3rver_binary() -> str | None:
    candidates = [os.environ.get("S3RVER_BIN"), str(NODE_PREFIX / "node_modules" / ".bin" / "s3rver"),
                  str(REPO / "node_modules" / ".bin" / "s3rver"), shutil.which("s3rver")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def install_s3rver() -> str | None:
    """npm install --prefix bench/.node s3rver (once; it is gitignored)."""
    if s3rver_binary() is None and shutil.which("npm"):
        subprocess.run(["npm", "install", "--prefix", str(NODE_PREFIX), "s3rver@3",
                        "--no-audit", "--no-fund"], check=False, capture_output=True, timeout=300)
    return s3rver_binary()


def start_s3rver(base: Path) -> Server:
    binary = install_s3rver()
    if binary is None:
        raise RuntimeError("s3rver is not installed (npm install --prefix bench/.node s3rver@3)")
    port = free_port()
    work = base / "s3rver"
    return _spawn("s3rver", [binary, "-d", str(work / "data"), "-a", "127.0.0.1", "-p", str(port),
                             "--no-vhost-buckets", "--silent"],
                  work, port, S3RVER_KEYS, True,
                  # its ListObjectsV2 continuation tokens use DES, legacy in OpenSSL 3
                  env={"NODE_OPTIONS": "--openssl-legacy-provider"})


def start_gateway(base: Path, moto: Server | None, moto_bucket: str | None,
                  env: dict[str, str] | None = None, name: str = "gateway",
                  durability: str | None = None, profile: Path | None = None,
                  repo: Path = REPO, launcher: list[str] | None = None) -> Server:
    """The gateway as users run it (`python -m gateway`), file location us-east-1, SQLite
    metadata, plus an aws_s3 location on moto when given. Metadata may be pre-filled.
    `name` is also its folder under `base`; `durability` sets config.json storage.durability
    (default: the gateway's own, durable); `profile`: run it under cProfile, stats written
    there when it stops; `repo`: the checkout to run (e.g. a git worktree of a baseline)."""
    port = free_port()
    work = base / name
    work.mkdir(parents=True, exist_ok=True)
    locations: dict[str, Any] = {"us-east-1": {"type": "file", "legacyAwsBehavior": True,
                                               "details": {}}}
    if moto is not None and moto_bucket:
        locations[CLOUD_LOCATION] = {
            "type": "aws_s3", "legacyAwsBehavior": False,
            "details": {"awsEndpoint": f"127.0.0.1:{moto.port}", "bucketName": moto_bucket,
                        "https": False, "pathStyle": True, "bucketMatch": False,
                        "credentials": {"accessKey": MOTO_KEYS[0], "secretKey": MOTO_KEYS[1]}}}
    config = {"port": port, "listenOn": "127.0.0.1",
              "restEndpoints": {"localhost": "us-east-1", "127.0.0.1": "us-east-1"},
              "metadata": {"backend": "sqlite"},
              "healthChecks": {"interval": 30, "timeout": 5}, "metricsPort": 0}
    if durability is not None:
        config["storage"] = {"durability": durability}
    (work / "config.json").write_text(json.dumps(config, indent=2))
    (work / "locationConfig.json").write_text(json.dumps(locations, indent=2))
    gw_env = {"S3_CONFIG_FILE": str(work / "config.json"),
              "S3_LOCATION_FILE": str(work / "locationConfig.json"),
              "S3DATAPATH": str(work / "data"), "S3METADATAPATH": str(work / "metadata"),
              **(env or {})}
    if durability is not None:  # also here: an S3DURABILITY of the caller's would win
        gw_env["S3DURABILITY"] = durability
    argv = [sys.executable, "-m", "gateway"]
    if profile is not None:
        argv[1:1] = ["-m", "cProfile", "-o", str(profile)]
    server = _spawn(name, argv, work, port, GATEWAY_KEYS, True,
                    env=gw_env, cwd=repo, launcher=launcher)
    server.extra["locations"] = list(locations)
    return server


def gateway_metadata_dir(base: Path) -> Path:
    return base / "gateway" / "metadata"
