"""`python -m gateway lifecycle run BUCKET [--endpoint URL]`: one lifecycle pass of BUCKET now.

The running gateway does the work (POST /_/lifecycle/run on its S3 port, loopback or
healthChecks.allowFrom only): it scans the bucket, runs the jobs the scan enqueued, and answers
when no lifecycle job is left. Asking the gateway, rather than opening the metadata store from a
second process, keeps its caches right and its jobs single (SQLite has one writer process).
"""

from __future__ import annotations

import argparse
import sys

from gateway.admin import ask, default_endpoint


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway lifecycle")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("bucket")
    parser.add_argument("--endpoint", help="gateway URL (default: from config.json)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")
    args = parser.parse_args(argv)
    body = ask(args.endpoint or default_endpoint(), "lifecycle/run", {"bucket": args.bucket},
               post=True, timeout=args.timeout)
    enqueued = ", ".join(f"{kind.split('.', 1)[1]} {n}" for kind, n in
                         sorted(body["enqueued"].items())) or "nothing due"
    print(f"lifecycle {args.bucket}: scanned {body['versions']} versions, {body['uploads']} "
          f"uploads; {enqueued}; done in {body['seconds']}s")
    failed = sum(states.get("failed", 0) for states in body["jobs"].values())
    if failed:
        print(f"{failed} job(s) failed for good (see /_/healthcheck/deep)", file=sys.stderr)
    return 0
