"""One figure: run a job on the client pool against one server and read what it cost the
server from /proc over the same window."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat
from bench.load import Job, Pool, Result
from bench.servers import Server

MiB = 1024 * 1024


@dataclass
class Figure:
    figure: str
    target: str
    ops_s: float = 0.0
    mb_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_ms_op: float = 0.0
    peak_rss_mib: float = 0.0
    client_busy: float = 0.0  # client CPU / (wall x client processes): near 1 = client-bound
    ops: int = 0
    items_s: float = 0.0
    errors: int = 0
    note: str = ""
    ratios: dict[str, float] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, float):
                data[key] = round(value, 3)
        data["ratios"] = {k: round(v, 3) for k, v in self.ratios.items()}
        return data


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Profiler:
    """py-spy on the gateway during its figures (--profile DIR): raw collapsed stacks."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def start(self, name: str, pid: int) -> subprocess.Popen[bytes] | None:
        if self.directory is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            ["py-spy", "record", "-p", str(pid), "-r", "250", "-f", "raw", "--nonblocking",
             "-o", str(self.directory / f"{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def stop(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(pool: Pool, server: Server, figure: str, op: str, bucket: str, keys: list[str],
            size: int = 0, concurrency: int = 1, duration: float = 0.0, count: int = 0,
            warmup: float = 0.5, profiler: Profiler | None = None, **extra: Any) -> Figure:
    """Window mode (duration > 0): every client process runs from start to end, only requests
    started after the warm-up count, and the server's CPU is sampled at the window's edges.
    Count mode: exactly `count` operations, CPU from before the first to after the last."""
    procs = pool.size if concurrency >= 8 and not count else 1
    per_proc = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    pids = server.pids()
    procstat.reset_peak(pids)
    access, secret = server.keys
    spy = None
    if profiler is not None and server.name.startswith("gateway"):
        spy = profiler.start(f"{figure}", server.process.pid)
        time.sleep(0.5)
    now = time.time()
    jobs = []
    for index, conc in enumerate(per_proc):
        mine = keys[index::procs] if op in ("put", "get", "head") and len(keys) >= procs else keys
        job = Job(port=server.port, bucket=bucket, op=op, keys=mine, size=size, concurrency=conc,
                  access=access, secret=secret, count=count, **extra)
        if duration:
            job.start_at = now + 0.3
            job.measure_at = job.start_at + warmup
            job.end_at = job.measure_at + duration
        jobs.append(job)
    if duration:
        futures = pool.submit(jobs)
        time.sleep(max(0.0, jobs[0].measure_at - time.time()))
        cpu0 = procstat.cpu_seconds(pids)
        time.sleep(max(0.0, jobs[0].end_at - time.time()))
        cpu1 = procstat.cpu_seconds(pids)
        results: list[Result] = [f.result() for f in futures]
        wall = duration
    else:
        cpu0 = procstat.cpu_seconds(pids)
        results = pool.run(jobs)
        cpu1 = procstat.cpu_seconds(pids)
        wall = max(r.wall for r in results)
    Profiler.stop(spy)
    peak = procstat.peak_rss_mib(pids)
    latencies = [lat for r in results for lat in r.latencies]
    ops = len(latencies)
    moved = sum(r.nbytes for r in results)
    errors = sum(r.errors for r in results)
    fig = Figure(figure=figure, target=server.name, ops=ops, errors=errors, peak_rss_mib=peak)
    if wall > 0:
        fig.ops_s = ops / wall
        fig.mb_s = moved / MiB / wall
        fig.items_s = sum(r.items for r in results) / wall
        fig.client_busy = sum(r.client_cpu for r in results) / (max(r.wall for r in results) * procs)
    fig.p50_ms = percentile(latencies, 0.5) * 1000
    fig.p99_ms = percentile(latencies, 0.99) * 1000
    fig.cpu_ms_op = (cpu1 - cpu0) * 1000 / ops if ops else 0.0
    if errors:
        fig.note = next(r.first_error for r in results if r.first_error)
    return fig


def best(figures: list[Figure]) -> Figure:
    """The best of several rounds (noise on a shared machine only ever slows things down)."""
    good = [f for f in figures if not f.errors] or figures
    chosen = max(good, key=lambda f: (f.ops_s, -f.cpu_ms_op))
    if len(good) > 1:
        chosen.cpu_ms_op = statistics.median(f.cpu_ms_op for f in good)
    return chosen


def md5_speed(size: int = 256 * MiB) -> float:
    """One core's MD5 speed in MiB/s (best of 3), 1 MiB updates as the gateway does."""
    import hashlib

    chunk = os.urandom(MiB)
    speeds = []
    for _ in range(3):
        md5 = hashlib.md5()
        started = time.perf_counter()
        for _ in range(size // MiB):
            md5.update(chunk)
        speeds.append(size / MiB / (time.perf_counter() - started))
    return max(speeds)
