"""python -m bench [--quick] [--full] [--only GROUP[,GROUP]] [--profile DIR]

Runs the set against the gateway and its baselines side by side, prints a table and one JSON
line per figure. Groups: small, big, mpu, list, delete, rss, cloud, durability, encryption."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import fill, servers
from bench.load import Pool
from bench.measure import Figure, MiB, Profiler, best, md5_speed, measure
from bench.servers import Server

GROUPS = ("small", "big", "mpu", "list", "delete", "rss", "cloud", "durability", "encryption")
DURABILITY_MODES = ("durable", "relaxed")  # config.json storage.durability
BUCKET = "bench"
LIST_BUCKET = "list10k"
MILLION_BUCKET = "list1m"
CLOUD_BUCKET = "bench-cloud"
MOTO_BACKEND = "gateway-backend"
GiB = 1024 * MiB


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.rounds = 1 if args.quick else 2
        self.window = 2.0 if args.quick else 4.0
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        self.targets: list[tuple[str, str, float | None, str, bool | None]] = []
        self.servers: dict[str, Server] = {}
        self.base = Path(tempfile.mkdtemp(prefix="s3gw-bench-"))
        self.profiler = Profiler(Path(args.profile) if args.profile else None)
        self.pool: Pool | None = None

    # -- set-up ---------------------------------------------------------------------------
    def start(self, groups: set[str]) -> None:
        # The durability and encryption groups bring their own gateways (encryption also
        # runs in-process, bench/encryption.py) and need no baseline.
        shared = bool(groups - {"durability", "encryption"})
        starters: list[tuple[str, Callable[[Path], Server]]] = [
            ("bare", servers.start_bare), ("nginx", servers.start_nginx),
            ("moto", servers.start_moto), ("s3rver", servers.start_s3rver)] if shared else []
        for name, starter in starters:
            try:
                self.servers[name] = starter(self.base)
            except Exception as exc:  # a missing baseline is a note, not a failure
                self.note(f"{name} skipped: {str(exc).splitlines()[0]}")
        moto = self.servers.get("moto")
        if moto is not None and "cloud" in groups:
            moto.create_bucket(MOTO_BACKEND)
            moto.enable_versioning(MOTO_BACKEND)  # as the aws_s3 location asks by default
        if "list" in groups:
            count = self.args.million
            seconds = fill.fill(servers.gateway_metadata_dir(self.base), MILLION_BUCKET, count)
            self.note(f"{MILLION_BUCKET}: {count} keys written straight into the gateway's SQLite "
                      f"through SQLiteStore in {seconds:.0f}s (not through PUT)")
        if shared:
            self.servers["gateway"] = servers.start_gateway(
                self.base, moto if "cloud" in groups else None, MOTO_BACKEND)
        for server in self.servers.values():
            server.create_bucket(BUCKET)
        self.pool = Pool(2)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.close()
        for server in self.servers.values():
            server.stop()
        if not self.args.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"# {text}", file=sys.stderr, flush=True)

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        print(json.dumps(fig.json()), flush=True)
        return fig

    def targets_for(self, names: tuple[str, ...]) -> list[Server]:
        return [self.servers[n] for n in names if n in self.servers]

    def populate(self, server: Server, bucket: str, keys: list[str], size: int) -> None:
        assert self.pool is not None
        fig = measure(self.pool, server, "populate", "put", bucket, keys, size=size,
                      concurrency=min(32, len(keys)), count=len(keys))
        if fig.errors:
            raise RuntimeError(f"populating {server.name}/{bucket}: {fig.note}")

    def target(self, name: str, value: float | None, goal: str, ok: bool | None,
               unit: str = "x") -> None:
        shown = "n/a" if value is None else (f"{value:.2f}{unit}")
        self.targets.append((name, shown, value, goal, ok))

    # -- the set --------------------------------------------------------------------------
    def small(self) -> None:
        """PUT/GET/HEAD of 4 KiB at concurrency 1 and 32, on every server."""
        assert self.pool is not None
        names = ("gateway", "bare", "nginx", "moto", "s3rver")
        read_keys = [f"small/{i:03d}" for i in range(100)]
        for server in self.targets_for(names):
            self.populate(server, BUCKET, read_keys, 4096)
        put_keys = [f"put/{i:04d}" for i in range(1000)]
        for conc in (1, 32):
            for op in ("put", "get", "head"):
                figure = f"{op}_4k_c{conc}"
                rounds: dict[str, list[Figure]] = {}
                for _ in range(self.rounds):
                    for server in self.targets_for(names):
                        keys = put_keys if op == "put" else read_keys
                        rounds.setdefault(server.name, []).append(measure(
                            self.pool, server, figure, op, BUCKET, keys, size=4096,
                            concurrency=conc, duration=self.window, profiler=self.profiler))
                results = {name: best(figs) for name, figs in rounds.items()}
                self.ratios(results)
                for fig in results.values():
                    self.add(fig)
                gw = results.get("gateway")
                if op in ("get", "head") and gw is not None:
                    s3rver = results.get("s3rver")
                    value = gw.ops_s / s3rver.ops_s if s3rver and s3rver.ops_s else None
                    self.target(f"{figure} ops/s vs s3rver", value, ">= 3x",
                                None if value is None else value >= 3)
                    bare = results.get("bare")
                    value = gw.cpu_ms_op / bare.cpu_ms_op if bare and bare.cpu_ms_op else None
                    self.target(f"{figure} gateway CPU/op vs bare", value, "<= 2.5x",
                                None if value is None else value <= 2.5)

    @staticmethod
    def ratios(results: dict[str, Figure]) -> None:
        gw = results.get("gateway")
        if gw is None:
            return
        for name, fig in results.items():
            if name == "gateway" or fig.errors:
                continue
            if fig.ops_s:
                gw.ratios[f"ops_vs_{name}"] = gw.ops_s / fig.ops_s
            if fig.mb_s and gw.mb_s:
                gw.ratios[f"mbs_vs_{name}"] = gw.mb_s / fig.mb_s
            if fig.cpu_ms_op:
                gw.ratios[f"cpu_vs_{name}"] = gw.cpu_ms_op / fig.cpu_ms_op

    def big(self) -> None:
        """GET and PUT of 256 MiB; the PUT against one core's MD5 speed."""
        assert self.pool is not None
        size = 256 * MiB
        count = 2 if self.quick else 3
        md5 = md5_speed()
        self.note(f"one core's MD5: {md5:.0f} MiB/s (hashlib, 1 MiB updates, best of 3)")
        results: dict[str, dict[str, Figure]] = {"put": {}, "get": {}}
        for server in self.targets_for(("gateway", "bare", "nginx", "moto", "s3rver")):
            for op in ("put", "get"):
                results[op][server.name] = measure(
                    self.pool, server, f"{op}_256m", op, BUCKET, ["big/256m"], size=size,
                    count=count, profiler=self.profiler)
        for op in ("put", "get"):
            self.ratios(results[op])
            for fig in results[op].values():
                self.add(fig)
        gw_put, gw_get = results["put"].get("gateway"), results["get"].get("gateway")
        if gw_put is not None:
            gw_put.ratios["mbs_vs_md5"] = gw_put.mb_s / md5
            self.target("put_256m MB/s vs one core's MD5", gw_put.mb_s / md5, ">= 0.8x",
                        gw_put.mb_s / md5 >= 0.8)
        bare = results["get"].get("bare")
        if gw_get is not None and bare is not None and bare.mb_s:
            value = gw_get.mb_s / bare.mb_s
            self.target("get_256m MB/s vs bare aiohttp stream", value, ">= 0.7x", value >= 0.7)

    def mpu(self) -> None:
        """A 1 GiB multipart upload: 64 parts of 16 MiB, 4 in flight."""
        assert self.pool is not None
        results = {}
        for server in self.targets_for(("gateway", "moto", "s3rver")):
            results[server.name] = measure(self.pool, server, "mpu_1g", "mpu", BUCKET,
                                           ["mpu/1g"], size=GiB, count=1,
                                           profiler=self.profiler)
        self.ratios(results)
        for fig in results.values():
            self.add(fig)

    def listing(self) -> None:
        """ListObjectsV2: first page and full listing at 10k keys (every S3 server) and at
        1M keys (the gateway, metadata filled directly)."""
        assert self.pool is not None
        keys = [fill.key_name(i) for i in range(10000)]
        names = ("gateway", "moto", "s3rver") if not self.quick else ("gateway", "s3rver")
        if self.quick:
            self.note("--quick: moto left out of the 10k listing (populating it is slow)")
        listed = self.targets_for(names)
        for server in listed:
            server.create_bucket(LIST_BUCKET)
            started = time.perf_counter()
            self.populate(server, LIST_BUCKET, keys, 0)
            self.note(f"{LIST_BUCKET} on {server.name}: 10000 PUTs in "
                      f"{time.perf_counter() - started:.0f}s")
        first: dict[str, Figure] = {}
        full: dict[str, Figure] = {}
        for server in listed:
            first[server.name] = measure(self.pool, server, "list_first_10k", "list_first",
                                         LIST_BUCKET, ["-"], duration=self.window,
                                         concurrency=1, profiler=self.profiler)
            full[server.name] = measure(self.pool, server, "list_full_10k", "list_full",
                                        LIST_BUCKET, ["-"], count=2, profiler=self.profiler)
        gateway = self.servers["gateway"]
        first_1m = measure(self.pool, gateway, "list_first_1m", "list_first", MILLION_BUCKET,
                           ["-"], duration=self.window, concurrency=1, profiler=self.profiler)
        for group in (first, full):
            self.ratios(group)
            for fig in group.values():
                self.add(fig)
        self.add(first_1m)
        gw10k = first.get("gateway")
        if gw10k is not None:
            first_1m.ratios["p50_vs_10k"] = first_1m.p50_ms / gw10k.p50_ms
            self.target("list_first_10k p50", gw10k.p50_ms, "<= 20 ms", gw10k.p50_ms <= 20,
                        " ms")
            value = first_1m.p50_ms / gw10k.p50_ms
            self.target("list_first_1m p50 vs 10k", value, "<= 2x", value <= 2)
        if self.args.full:
            self.add(measure(self.pool, gateway, "list_full_1m", "list_full", MILLION_BUCKET,
                             ["-"], count=1, profiler=self.profiler))
        else:
            self.note("list_full_1m left out (--full runs it)")

    def delete(self) -> None:
        """DeleteObjects of 1000 keys (quiet), on freshly written keys."""
        assert self.pool is not None
        keys = [f"del-{i:04d}" for i in range(1000)]  # flat: s3rver races on shared dirs
        results: dict[str, list[Figure]] = {}
        for _ in range(self.rounds):
            for server in self.targets_for(("gateway", "moto", "s3rver")):
                if server.name in results and results[server.name][-1].errors:
                    continue
                self.populate(server, BUCKET, keys, 0)
                results.setdefault(server.name, []).append(measure(
                    self.pool, server, "delete_1000", "delete_multi", BUCKET, keys, count=1,
                    profiler=self.profiler))
        chosen = {name: best(figs) for name, figs in results.items()}
        gw = chosen.get("gateway")
        if gw is not None and gw.errors:
            self.note(f"delete_1000 on the gateway: {gw.note} (DeleteObjects not there yet?)")
        self.ratios(chosen)
        for fig in chosen.values():
            self.add(fig)

    def rss(self) -> None:
        """Peak RSS (VmHWM, reset first) while the gateway takes and then serves one big object."""
        assert self.pool is not None
        size = GiB if self.quick else 5 * GiB
        label = f"{size // GiB}g"
        peaks = []
        for server in self.targets_for(("gateway", "bare")):
            for op in ("put", "get"):
                fig = self.add(measure(self.pool, server, f"rss_{op}_{label}", op, BUCKET,
                                       [f"rss/{label}"], size=size, count=1,
                                       profiler=self.profiler))
                if server.name == "gateway":
                    peaks.append(fig.peak_rss_mib)
        if peaks:
            self.target(f"gateway peak RSS moving {label}", max(peaks), "<= 150 MiB",
                        max(peaks) <= 150, " MiB")

    def cloud(self) -> None:
        """aws_s3 location: client -> gateway -> moto against client -> moto."""
        assert self.pool is not None
        gateway, moto = self.servers.get("gateway"), self.servers.get("moto")
        if moto is None or gateway is None:
            self.note("cloud skipped: no moto")
            return
        try:
            gateway.create_bucket(CLOUD_BUCKET, servers.CLOUD_LOCATION)
            read_keys = [f"small/{i:03d}" for i in range(100)]
            self.populate(gateway, CLOUD_BUCKET, read_keys, 4096)
            self.populate(moto, BUCKET, read_keys, 4096)
        except Exception as exc:
            self.note(f"cloud (aws_s3 -> moto) skipped: {str(exc).splitlines()[0]}")
            return
        size = 64 * MiB if self.quick else 256 * MiB
        plan = [("put_4k_c32", "put", 4096, 32, [f"put/{i:04d}" for i in range(1000)]),
                ("get_4k_c32", "get", 4096, 32, read_keys),
                (f"put_{size // MiB}m", "put", size, 1, ["big/obj"]),
                (f"get_{size // MiB}m", "get", size, 1, ["big/obj"])]
        for name, op, obj_size, conc, keys in plan:
            pair = {}
            for server, bucket in ((gateway, CLOUD_BUCKET), (moto, BUCKET)):
                kwargs = ({"duration": self.window} if obj_size <= MiB else {"count": 2})
                fig = measure(self.pool, server, f"cloud_{name}", op, bucket, keys,
                              size=obj_size, concurrency=conc, profiler=self.profiler, **kwargs)
                fig.target = "gateway->moto" if server is gateway else "moto"
                pair[server.name] = fig
            self.ratios(pair)
            for fig in pair.values():
                self.add(fig)
            gw, direct = pair["gateway"], pair["moto"]
            metric = "ops_s" if obj_size <= MiB else "mb_s"
            if getattr(direct, metric):
                value = getattr(gw, metric) / getattr(direct, metric)
                self.target(f"cloud_{name} via gateway vs direct", value, ">= 0.9x",
                            value >= 0.9)

    def durability(self) -> None:
        """What durability costs: 4 KiB PUT at concurrency 1 and 32, file location + SQLite,
        storage.durability "durable" (file and folder fsynced, SQLite synchronous=FULL, before
        the answer) against "relaxed" (neither), two gateways side by side, rounds interleaved
        (the order flips each round)."""
        assert self.pool is not None
        gateways: dict[str, Server] = {}
        try:
            for mode in DURABILITY_MODES:
                gateways[mode] = servers.start_gateway(self.base, None, None,
                                                       name=f"gateway-{mode}", durability=mode)
                gateways[mode].create_bucket(BUCKET)
            keys = [f"put/{i:04d}" for i in range(1000)]
            for conc in (1, 32):
                figure = f"put_4k_c{conc}_durability"
                rounds: dict[str, list[Figure]] = {}
                for number in range(self.rounds):
                    order = DURABILITY_MODES if number % 2 == 0 else DURABILITY_MODES[::-1]
                    for mode in order:
                        rounds.setdefault(mode, []).append(measure(
                            self.pool, gateways[mode], figure, "put", BUCKET, keys, size=4096,
                            concurrency=conc, duration=self.window, profiler=self.profiler))
                durable, relaxed = best(rounds["durable"]), best(rounds["relaxed"])
                if not durable.errors and not relaxed.errors and relaxed.ops_s:
                    durable.ratios["ops_vs_relaxed"] = durable.ops_s / relaxed.ops_s
                    if relaxed.p50_ms and relaxed.p99_ms:
                        durable.ratios["p50_vs_relaxed"] = durable.p50_ms / relaxed.p50_ms
                        durable.ratios["p99_vs_relaxed"] = durable.p99_ms / relaxed.p99_ms
                    if relaxed.cpu_ms_op:
                        durable.ratios["cpu_vs_relaxed"] = durable.cpu_ms_op / relaxed.cpu_ms_op
                    self.note(
                        f"durability cost, 4 KiB PUT c{conc}: durable {durable.ops_s:.0f} ops/s "
                        f"(p50 {durable.p50_ms:.2f} ms, p99 {durable.p99_ms:.2f} ms) vs relaxed "
                        f"{relaxed.ops_s:.0f} ops/s (p50 {relaxed.p50_ms:.2f} ms, p99 "
                        f"{relaxed.p99_ms:.2f} ms): {durable.ops_s / relaxed.ops_s:.2f}x the ops/s")
                for fig in (durable, relaxed):
                    self.add(fig)
        finally:
            for server in gateways.values():
                server.stop()

    def encryption(self) -> None:
        """gateway/crypto in-process: 256 MiB encrypt+decrypt against plaintext passthrough,
        chunk sizes, ranged-read cost (bench/encryption.py)."""
        from bench import encryption

        figures, notes, targets = encryption.run(self.rounds)
        for fig in figures:
            self.add(fig)
        for text in notes:
            self.note(text)
        for name, value, goal, ok in targets:
            self.target(name, value, goal, ok)
        self.encryption_http()

    def encryption_http(self) -> None:
        """PUT and GET of 256 MiB through one gateway (file location), SSE-S3 against
        plaintext, rounds interleaved (the order flips each round)."""
        assert self.pool is not None
        size, count = 256 * MiB, 1 if self.quick else 2
        sse = {"x-amz-server-side-encryption": "AES256"}
        gateway = servers.start_gateway(self.base, None, None, name="gateway-sse")
        try:
            gateway.create_bucket(BUCKET)
            results: dict[tuple[str, str], list[Figure]] = {}
            for number in range(self.rounds):
                modes = ("plain", "sse") if number % 2 == 0 else ("sse", "plain")
                for op in ("put", "get"):
                    for mode in modes:
                        results.setdefault((op, mode), []).append(measure(
                            self.pool, gateway, f"{op}_256m_{mode}", op, BUCKET,
                            [f"big/{mode}"], size=size, count=count, profiler=self.profiler,
                            extra={"headers": sse if mode == "sse" else {}}))
            for op in ("put", "get"):
                plain, sealed = best(results[(op, "plain")]), best(results[(op, "sse")])
                value = sealed.mb_s / plain.mb_s if plain.mb_s and not sealed.errors else None
                if value is not None:
                    sealed.ratios["mbs_vs_plaintext"] = value
                    if plain.cpu_ms_op:
                        sealed.ratios["cpu_vs_plaintext"] = sealed.cpu_ms_op / plain.cpu_ms_op
                self.add(plain)
                self.add(sealed)
                self.target(f"{op}_256m SSE-S3 MB/s vs plaintext (same gateway)", value,
                            ">= 0.7x", None if value is None else value >= 0.7)
        finally:
            gateway.stop()

    # -- output ---------------------------------------------------------------------------
    def table(self) -> str:
        lines = [f"# s3-multicloud-gateway bench, {time.strftime('%Y-%m-%d %H:%M')}, "
                 f"{platform.node()} ({platform.machine()}, {_cores()} cores, "
                 f"Python {platform.python_version()}){' --quick' if self.quick else ''}", ""]
        lines.append("| figure | target | ops/s | MB/s | p50 ms | p99 ms | CPU ms/op | peak RSS MiB "
                     "| client busy | gateway ratios |")
        lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for f in self.figures:
            ratios = ", ".join(f"{k} {v:.2f}" for k, v in f.ratios.items())
            if f.errors:
                ratios = f"ERRORS {f.errors}: {f.note}"[:120]
            lines.append(f"| {f.figure} | {f.target} | {f.ops_s:.1f} | {f.mb_s:.1f} | "
                         f"{f.p50_ms:.2f} | {f.p99_ms:.2f} | {f.cpu_ms_op:.3f} | "
                         f"{f.peak_rss_mib:.0f} | {f.client_busy:.2f} | {ratios} |")
        if self.targets:
            lines += ["", "| target (file location, SQLite) | measured | goal | met |",
                      "| --- | ---: | --- | --- |"]
            for name, shown, _value, goal, ok in self.targets:
                met = "n/a" if ok is None else ("yes" if ok else "**no**")
                lines.append(f"| {name} | {shown} | {goal} | {met} |")
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="short windows, 1 GiB RSS run")
    parser.add_argument("--full", action="store_true", help="also the full 1M-key listing")
    parser.add_argument("--only", default="", help=f"comma-separated groups: {', '.join(GROUPS)}")
    parser.add_argument("--million", type=int, default=1_000_000, help="keys in the big listing")
    parser.add_argument("--profile", default="", help="py-spy the gateway's figures into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    parser.add_argument("--out", default="", help="also write the table to this file")
    args = parser.parse_args(argv)
    groups = [g for g in GROUPS if not args.only or g in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    run = Run(args)
    started = time.monotonic()
    try:
        run.start(set(groups))
        for group in groups:
            print(f"# {group}...", file=sys.stderr, flush=True)
            try:
                {"small": run.small, "big": run.big, "mpu": run.mpu, "list": run.listing,
                 "delete": run.delete, "rss": run.rss, "cloud": run.cloud,
                 "durability": run.durability, "encryption": run.encryption}[group]()
            except Exception as exc:
                run.note(f"{group} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        run.stop()
    run.note(f"run took {time.monotonic() - started:.0f}s; data and logs in {run.base}"
             + ("" if args.keep else " (removed)"))
    table = run.table()
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
