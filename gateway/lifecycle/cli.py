"""`python -m gateway lifecycle run BUCKET [--endpoint URL]`: one lifecycle pass of BUCKET now.

The running gateway does the work (POST /_/lifecycle/run on its S3 port, loopback or
healthChecks.allowFrom only): it scans the bucket, runs the jobs the scan enqueued, and answers
when no lifecycle job is left. Asking the gateway, rather than opening the metadata store from a
second process, keeps its caches right and its jobs single (SQLite has one writer process).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def default_endpoint() -> str:
    from gateway.config import load_settings

    return load_settings(os.environ).local_url()


def run_pass(endpoint: str, bucket: str, timeout: float) -> tuple[int, dict[str, Any]]:
    url = (f"{endpoint.rstrip('/')}/_/lifecycle/run?"
           + urllib.parse.urlencode({"bucket": bucket}))
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway lifecycle")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("bucket")
    parser.add_argument("--endpoint", help="gateway URL (default: from config.json)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")
    args = parser.parse_args(argv)
    endpoint = args.endpoint or default_endpoint()
    try:
        status, body = run_pass(endpoint, args.bucket, args.timeout)
    except OSError as err:
        print(f"cannot reach the gateway at {endpoint}: {err}", file=sys.stderr)
        return 2
    if status != 200:
        print(f"{body.get('error')}: {body.get('message', '')}", file=sys.stderr)
        return 1
    enqueued = ", ".join(f"{kind.split('.', 1)[1]} {n}" for kind, n in
                         sorted(body["enqueued"].items())) or "nothing due"
    print(f"lifecycle {args.bucket}: scanned {body['versions']} versions, {body['uploads']} "
          f"uploads; {enqueued}; done in {body['seconds']}s")
    failed = sum(states.get("failed", 0) for states in body["jobs"].values())
    if failed:
        print(f"{failed} job(s) failed for good (see /_/healthcheck/deep)", file=sys.stderr)
    return 0
