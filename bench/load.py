"""The load generator: raw aiohttp requests signed by bench.sigv4, run by a pool of client
processes. One job = one operation at a concurrency, either for a time window (small objects:
the parent samples the server's CPU at the window's edges) or for a count (big transfers).
Every loop is bounded by time or count; targets are 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
import time
from base64 import b64encode
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import aiohttp
from yarl import URL

from bench.sigv4 import Signer, canonical_query

CHUNK = 1024 * 1024
_PAYLOAD = os.urandom(CHUNK)
_TOKEN_RE = re.compile(rb"<NextContinuationToken>([^<]+)</NextContinuationToken>")
_TRUNC_RE = re.compile(rb"<IsTruncated>true</IsTruncated>")
_UPLOAD_RE = re.compile(rb"<UploadId>([^<]+)</UploadId>")
_KEYS_RE = re.compile(rb"<Key>")
REQUEST_TIMEOUT = 600


@dataclass
class Job:
    """What one client process does. `keys` are cycled; `start_at`/`end_at` are wall clock."""

    port: int
    bucket: str
    op: str  # put, get, head, list_first, list_full, mpu, delete_multi
    keys: list[str]
    size: int = 0
    concurrency: int = 1
    access: str = "accessKey1"
    secret: str = "verySecretKey1"
    start_at: float = 0.0
    measure_at: float = 0.0
    end_at: float = 0.0
    count: int = 0  # >0: do exactly this many ops instead of running until end_at
    part_size: int = 16 * CHUNK
    part_concurrency: int = 4
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    latencies: list[float]
    started: list[float]
    nbytes: int
    errors: int
    first_error: str
    client_cpu: float
    wall: float
    items: int = 0  # keys listed / deleted


class Client:
    def __init__(self, job: Job, session: aiohttp.ClientSession) -> None:
        self.job = job
        self.session = session
        self.host = f"127.0.0.1:{job.port}"
        self.signer = Signer(job.access, job.secret)
        self.items = 0

    async def call(self, method: str, path: str, query: dict[str, str] | None = None,
                   body: Any = None, size: int | None = None,
                   headers: dict[str, str] | None = None, read: bool = True) -> tuple[int, bytes, int]:
        """One request; returns (status, body if read else b"", bytes received)."""
        qs = canonical_query(query)
        url = URL(f"http://{self.host}{path}" + (f"?{qs}" if qs else ""), encoded=True)
        signed = {k: v for k, v in (headers or {}).items() if k.lower().startswith("x-amz-")}
        hdrs = self.signer.headers(method, self.host, path, qs, signed)
        if headers:
            hdrs.update(headers)
        if size is not None:
            hdrs["Content-Length"] = str(size)
        async with self.session.request(method, url, data=body, headers=hdrs) as resp:
            if read:
                data = await resp.read()
                return resp.status, data, len(data)
            received = 0
            async for chunk in resp.content.iter_any():
                received += len(chunk)
            return resp.status, b"", received

    async def op(self, key: str) -> int:
        """One operation; returns bytes moved; raises on an unexpected status."""
        job = self.job
        path = f"/{job.bucket}/{key}"
        if job.op == "put":
            body = _PAYLOAD[:job.size] if job.size <= CHUNK else stream(job.size)
            status, data, _ = await self.call("PUT", path, body=body, size=job.size,
                                              headers=job.extra.get("headers"))
            check(status, data, (200, 201, 204))
            return job.size
        if job.op == "get":
            status, data, received = await self.call("GET", path, read=job.size <= CHUNK)
            check(status, data, (200,))
            return received
        if job.op == "head":
            status, data, _ = await self.call("HEAD", path)
            check(status, data, (200,))
            return 0
        if job.op in ("list_first", "list_full"):
            return await self.listing(job.op == "list_full")
        if job.op == "mpu":
            return await self.multipart(path)
        if job.op == "delete_multi":
            return await self.delete_multi()
        raise ValueError(job.op)

    async def listing(self, full: bool) -> int:
        query = {"list-type": "2", "max-keys": "1000"}
        moved = 0
        while True:
            status, data, received = await self.call("GET", f"/{self.job.bucket}", query)
            check(status, data, (200,))
            moved += received
            self.items += len(_KEYS_RE.findall(data))
            token = _TOKEN_RE.search(data)
            if not full or not _TRUNC_RE.search(data) or not token:
                return moved
            query["continuation-token"] = token.group(1).decode().replace("&amp;", "&")

    async def multipart(self, path: str) -> int:
        job = self.job
        status, data, _ = await self.call("POST", path, {"uploads": ""})
        check(status, data, (200,))
        upload_id = _UPLOAD_RE.search(data).group(1).decode()
        sizes = [job.part_size] * (job.size // job.part_size)
        if job.size % job.part_size:
            sizes.append(job.size % job.part_size)
        etags: dict[int, str] = {}
        numbers = iter(range(1, len(sizes) + 1))

        async def uploader() -> None:
            for number in numbers:
                size = sizes[number - 1]
                async with self.session.put(
                        URL(f"http://{self.host}{path}?{canonical_query({'partNumber': str(number), 'uploadId': upload_id})}", encoded=True),
                        data=stream(size),
                        headers={**self.signer.headers(
                            "PUT", self.host, path,
                            canonical_query({"partNumber": str(number), "uploadId": upload_id})),
                            "Content-Length": str(size)}) as resp:
                    body = await resp.read()
                    check(resp.status, body, (200,))
                    etags[number] = resp.headers["ETag"]

        await asyncio.gather(*(uploader() for _ in range(job.part_concurrency)))
        xml = "<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etags[n]}</ETag></Part>"
            for n in sorted(etags)) + "</CompleteMultipartUpload>"
        status, data, _ = await self.call("POST", path, {"uploadId": upload_id},
                                          body=xml.encode())
        check(status, data, (200,))
        if b"<Error>" in data:
            raise RuntimeError(f"complete failed: {data[:300]!r}")
        return job.size

    async def delete_multi(self) -> int:
        job = self.job
        xml = ("<Delete><Quiet>true</Quiet>" + "".join(
            f"<Object><Key>{k}</Key></Object>" for k in job.keys) + "</Delete>").encode()
        md5 = b64encode(hashlib.md5(xml).digest()).decode()
        status, data, _ = await self.call("POST", f"/{job.bucket}", {"delete": ""}, body=xml,
                                          headers={"Content-MD5": md5,
                                                   "Content-Type": "application/xml"})
        check(status, data, (200,))
        self.items += len(job.keys)
        return 0


class StatusError(Exception):
    pass


def check(status: int, data: bytes, ok: tuple[int, ...]) -> None:
    if status not in ok:
        code = re.search(rb"<Code>([^<]+)</Code>", data or b"")
        raise StatusError(f"HTTP {status} {code.group(1).decode() if code else data[:120]!r}")


async def stream(size: int):
    full, rest = divmod(size, CHUNK)
    for _ in range(full):
        yield _PAYLOAD
    if rest:
        yield _PAYLOAD[:rest]


async def _run(job: Job) -> Result:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    latencies: list[float] = []
    started: list[float] = []
    moved = 0
    errors = 0
    first_error = ""
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False,
                                     skip_auto_headers=("User-Agent", "Accept-Encoding",
                                                        "Content-Type")) as session:
        client = Client(job, session)
        if job.start_at:
            await asyncio.sleep(max(0.0, job.start_at - time.time()))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        keys = itertools.cycle(job.keys)
        todo = iter(range(job.count)) if job.count else None

        async def loop() -> None:
            nonlocal moved, errors, first_error
            while True:
                if todo is not None:
                    if next(todo, None) is None:
                        return
                elif time.time() >= job.end_at:
                    return
                key = next(keys)
                t0 = time.perf_counter()
                wall = time.time()
                try:
                    nbytes = await client.op(key)
                except Exception as exc:  # counted and reported, never retried
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"
                    if errors > 50:
                        return
                    continue
                if todo is not None or wall >= job.measure_at:
                    latencies.append(time.perf_counter() - t0)
                    started.append(wall)
                    moved += nbytes

        await asyncio.gather(*(loop() for _ in range(job.concurrency)))
        return Result(latencies, started, moved, errors, first_error,
                      time.process_time() - cpu0, time.perf_counter() - wall0, client.items)


def run_job(job: Job) -> Result:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_run(job))


def warm(_: int) -> int:
    time.sleep(0.2)  # so every process of the pool is started and has imported aiohttp
    return os.getpid()


class Pool:
    """Client processes, started once (spawn: nothing inherited from the parent)."""

    def __init__(self, processes: int) -> None:
        self.size = processes
        self.executor = ProcessPoolExecutor(processes, mp_context=get_context("spawn"))
        self.pids = list(self.executor.map(warm, range(processes * 4)))

    def submit(self, jobs: list[Job]) -> list[Any]:
        return [self.executor.submit(run_job, job) for job in jobs]

    def run(self, jobs: list[Job]) -> list[Result]:
        return [f.result() for f in self.submit(jobs)]

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
