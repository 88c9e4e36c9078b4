"""`python -m gateway migrate`: move a bucket to another location while it stays in use.

    migrate BUCKET --to LOCATION [--delete-source | --keep-source] [--detach]
    migrate --status [BUCKET] [--json]
    migrate --cancel BUCKET

The running gateway does the work (POST /_/migrate/start, /_/migrate/cancel, GET /_/migrate
on its S3 port, loopback or healthChecks.allowFrom only): asking it, rather than opening the
metadata store from a second process, keeps its caches right (SQLite has one writer process).
Starting follows the progress until the migration ends (Ctrl-C stops watching, not the
migration); --detach returns at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from gateway.admin import CommandFailed, ask, default_endpoint


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def line(m: dict[str, Any]) -> str:
    """One progress line: bucket, route, state, objects, bytes, rate, ETA."""
    objects, nbytes = m["objects"], m["bytes"]
    text = (f"migrate {m['bucket']}: {m['from']} -> {m['to']} {m['state']}: "
            f"{objects['done']}/{objects['total']} objects, "
            f"{size(nbytes['done'])}/{size(nbytes['total'])}, {m['MBps']} MB/s")
    if m["state"] == "copying":
        eta = m.get("etaSeconds")
        text += ", ETA " + ("unknown" if eta is None else f"{eta:.0f}s")
        if not m.get("scanned"):
            text += " (counting)"
    else:
        text += f", {m['seconds']:.1f}s"
    if m["state"] == "done":
        text += "; source copies " + ("kept" if m["source"] == "keep" else
                                      "deleted (after storage.readGraceSeconds)")
    if m.get("error"):
        text += f"; {m['error']}"
    return text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway migrate",
        description="Move a bucket to another location while clients keep using it: new "
        "writes go to LOCATION at once, existing object versions are copied in the "
        "background, verified and switched one by one.")
    parser.add_argument("bucket", nargs="?")
    parser.add_argument("--to", metavar="LOCATION", help="the location to move to")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--delete-source", action="store_true",
                        help="delete the source copies once switched (the default)")
    source.add_argument("--keep-source", action="store_true",
                        help="leave the source copies where they are")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true",
                      help="show the migration of BUCKET (or every one known)")
    what.add_argument("--cancel", action="store_true", help="stop the migration of BUCKET")
    parser.add_argument("--detach", action="store_true",
                        help="start and return; do not follow the progress")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--endpoint", help="gateway URL (default: from config.json)")
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between progress lines")
    args = parser.parse_args(argv)
    if not args.status and not args.bucket:
        parser.error("BUCKET is required")
    if not args.status and not args.cancel and not args.to:
        parser.error("--to LOCATION is required to start a migration")
    if (args.status or args.cancel) and (args.to or args.keep_source or args.delete_source):
        parser.error("--to, --keep-source and --delete-source only go with starting")
    endpoint = args.endpoint or default_endpoint()
    if args.status:
        body = ask(endpoint, "migrate", {"bucket": args.bucket} if args.bucket else {})
    elif args.cancel:
        body = ask(endpoint, "migrate/cancel", {"bucket": args.bucket}, post=True)
    else:
        body = ask(endpoint, "migrate/start",
                   {"bucket": args.bucket, "to": args.to,
                    "source": "keep" if args.keep_source else "delete"}, post=True)
    if args.status:
        migrations = body["migrations"]
        if args.json:
            print(json.dumps(migrations, indent=1))
        elif not migrations:
            print("no migrations")
        for m in [] if args.json else migrations:
            print(line(m))
        return 0
    if args.json and (args.cancel or args.detach):
        print(json.dumps(body, indent=1))
        return 0
    print(line(body))
    if args.cancel or args.detach:
        return 0
    return follow(endpoint, args.bucket, body["id"], args.interval, args.json)


def follow(endpoint: str, bucket: str, migration_id: str, interval: float,
           as_json: bool) -> int:
    """Print the progress until the migration ends; its exit status (0: done)."""
    try:
        while True:
            time.sleep(interval)
            try:
                body = ask(endpoint, "migrate", {"bucket": bucket})
            except CommandFailed as failed:
                if failed.exit_code != 2:
                    raise
                # a restart: the migration goes on, so does watching
                print(f"({failed}; still watching)", file=sys.stderr)
                continue
            m = body["migrations"][0]
            if m["id"] != migration_id:
                print(f"migrate {bucket}: another migration replaced this one", file=sys.stderr)
                return 1
            print(json.dumps(m) if as_json else line(m), flush=True)
            if m["state"] != "copying":
                return 0 if m["state"] == "done" else 1
    except KeyboardInterrupt:
        print(f"(stopped watching; the migration goes on: python -m gateway migrate --status "
              f"{bucket})", file=sys.stderr)
        return 0
