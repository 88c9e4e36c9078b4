"""python -m bench.workers [--rounds N] [--window S] [--conc C]: 4 KiB GET (and HEAD) at
concurrency 32 through one gateway with `workers: 1` and one with `workers: 2`, side by side
(interleaved rounds, best of each), file location and SQLite, as bench/__main__.py measures
the other figures. Prints one JSON line per figure, then the scaling ratio (2 workers over 1)
against the target 0.8 x N where the cores allow it.

On a 2-core machine the load generator (2 client processes) shares the cores with the
gateway: one worker already competes with the clients for 2 cores, so 2 workers can gain at
most what the clients leave; the note printed says how busy the clients were.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from bench import servers
from bench.load import Pool
from bench.measure import Figure, best, measure

BUCKET = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--conc", type=int, default=32)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="s3gw-bench-workers-"))
    pool = Pool(2)
    gateways = {}
    try:
        for count in (1, 2):
            name = f"gateway_w{count}"
            gateways[name] = servers.start_gateway(base, None, None, name=name,
                                                   env={"S3_WORKERS": str(count)})
        keys = [f"small/{i:03d}" for i in range(100)]
        for server in gateways.values():
            server.create_bucket(BUCKET)
            fig = measure(pool, server, "populate", "put", BUCKET, keys, size=4096,
                          concurrency=32, count=len(keys))
            if fig.errors:
                raise RuntimeError(f"populating {server.name}: {fig.note}")
        results: dict[str, dict[str, Figure]] = {}
        for op in ("get", "head"):
            figure = f"{op}_4k_c{args.conc}"
            rounds: dict[str, list[Figure]] = {}
            for _ in range(args.rounds):
                for name, server in gateways.items():
                    rounds.setdefault(name, []).append(measure(
                        pool, server, figure, op, BUCKET, keys, size=4096,
                        concurrency=args.conc, duration=args.window))
            results[op] = {name: best(figs) for name, figs in rounds.items()}
            one, two = results[op]["gateway_w1"], results[op]["gateway_w2"]
            two.ratios["ops_vs_1_worker"] = two.ops_s / one.ops_s if one.ops_s else 0.0
            if one.cpu_ms_op:
                two.ratios["cpu_vs_1_worker"] = two.cpu_ms_op / one.cpu_ms_op
            for fig in (one, two):
                print(json.dumps(fig.json()), flush=True)
        cores = len(os.sched_getaffinity(0))
        print(f"\ncores: {cores} (shared by the gateway and 2 load-generator processes)")
        print("| figure | workers | ops/s | p50 ms | p99 ms | CPU ms/op | client busy | "
              "vs 1 worker |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for figs in results.values():
            for name, fig in figs.items():
                ratio = fig.ratios.get("ops_vs_1_worker")
                print(f"| {fig.figure} | {name[-1]} | {fig.ops_s:.1f} | {fig.p50_ms:.2f} | "
                      f"{fig.p99_ms:.2f} | {fig.cpu_ms_op:.3f} | {fig.client_busy:.2f} | "
                      f"{'' if ratio is None else f'{ratio:.2f}x'} |")
        ratio = results["get"]["gateway_w2"].ratios["ops_vs_1_worker"]
        load = os.getloadavg()[0]
        print(f"\nget_4k_c{args.conc}: 2 workers / 1 worker = {ratio:.2f}x (target 0.8 x N = "
              f"1.6x where 2 cores are free for the gateway; here {cores} cores also run the "
              f"2 load-generator processes; load average {load:.1f} at the end)")
    finally:
        pool.close()
        for server in gateways.values():
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
