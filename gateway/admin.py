"""Admin commands against a running gateway (its health endpoints on the S3 port):

    python -m gateway locations [--endpoint URL]        every location with its state
    python -m gateway check LOCATION [--endpoint URL]   run LOCATION's health check now
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

from gateway.config import load_settings


def fetch_deep(endpoint: str, check: str | None = None) -> tuple[int, dict[str, Any]]:
    url = f"{endpoint.rstrip('/')}/_/healthcheck/deep"
    if check:
        url += "?" + urllib.parse.urlencode({"check": check})
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def location_rows(locations: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = [["LOCATION", "TYPE", "STATE", "LAST CHECK", "LATENCY", "MESSAGE"]]
    for name, info in locations.items():
        latency = info.get("latencyMs")
        rows.append([name, info["type"], info["state"], info.get("lastCheck") or "-",
                     f"{latency} ms" if latency is not None else "-", info.get("message") or ""])
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway")
    parser.add_argument("command", choices=["locations", "check"])
    parser.add_argument("location", nargs="?")
    parser.add_argument("--endpoint", help="gateway URL (default: from config.json)")
    args = parser.parse_args(argv)
    endpoint = args.endpoint
    if not endpoint:
        endpoint = load_settings(os.environ).local_url()
    if args.command == "check" and not args.location:
        parser.error("check needs a LOCATION")
    try:
        status, body = fetch_deep(endpoint, args.location if args.command == "check" else None)
    except OSError as err:
        print(f"cannot reach the gateway at {endpoint}: {err}", file=sys.stderr)
        return 2
    if "locations" not in body:
        print(body.get("error", body), file=sys.stderr)
        return 1
    locations = body["locations"]
    if args.command == "check":
        locations = {args.location: locations[args.location]}
    print(table(location_rows(locations)))
    print(f"metadata: {body['metadata']['state']}")
    return 0 if status == 200 and all(v["state"] == "up" for v in locations.values()) else 1
