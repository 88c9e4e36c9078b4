"""Admin commands against a running gateway (its health endpoints on the S3 port):

    python -m gateway locations [--endpoint URL]        every location with its state
    python -m gateway check LOCATION [--endpoint URL]   run LOCATION's health check now

and the one way every admin command (lifecycle, migrate, import, read-through) asks the
running gateway: `ask` (GET or POST /_/<path>), which answers the JSON body or fails the
command with one line (CommandFailed: exit 2 when unreachable, 1 when refused).
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


class CommandFailed(Exception):
    """An admin command's one-line failure and its exit status."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def default_endpoint() -> str:
    """The gateway of this machine's config.json, as a local command reaches it."""
    return load_settings(os.environ).local_url()


def call(endpoint: str, path: str, params: dict[str, str] | None = None, *,
         post: bool = False, timeout: float = 60.0) -> tuple[int, dict[str, Any]]:
    """GET or POST /_/<path> on the gateway: its status and JSON body."""
    url = f"{endpoint.rstrip('/')}/_/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, data=b"" if post else None,
                                     method="POST" if post else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def ask(endpoint: str, path: str, params: dict[str, str] | None = None, *,
        post: bool = False, timeout: float = 60.0) -> dict[str, Any]:
    """call(), answered 200, or CommandFailed with the gateway's error in one line."""
    try:
        status, body = call(endpoint, path, params, post=post, timeout=timeout)
    except OSError as err:
        raise CommandFailed(2, f"cannot reach the gateway at {endpoint}: {err}") from None
    if status != 200:
        raise CommandFailed(1, f"{body.get('error')}: {body.get('message', '')}")
    return body


def fetch_deep(endpoint: str, check: str | None = None) -> tuple[int, dict[str, Any]]:
    return call(endpoint, "healthcheck/deep", {"check": check} if check else None, timeout=30)


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
    endpoint = args.endpoint or default_endpoint()
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
