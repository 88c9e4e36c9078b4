"""Create the bucket or container each cloud location names, on the emulators of
docker/compose.yaml, then exit. The gateway needs them to exist (and versioning on for aws_s3);
emulators start empty. Idempotent; waits for each emulator to answer (compose starts services in
parallel and, without systemd, podman ignores health conditions).

Also waits for the PostgreSQL metadata store when S3METADATA=postgres.

Usage (compose runs it before the gateway): python docker/seed_backends.py [locationConfig.json]
Only for emulators: against real clouds, create buckets yourself.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

WAIT_SECONDS = float(os.environ.get("SEED_WAIT_SECONDS", "120"))


def seed_aws_s3(details: dict[str, Any]) -> None:
    import botocore.session
    from botocore.config import Config

    scheme = "https" if details.get("https", True) else "http"
    credentials = details.get("credentials") or {}
    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=f"{scheme}://{details['awsEndpoint']}", region_name="us-east-1",
        aws_access_key_id=credentials.get("accessKey"),
        aws_secret_access_key=credentials.get("secretKey"),
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
    bucket = details["bucketName"]
    try:
        client.create_bucket(Bucket=bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    # The translator keeps S3 versions (every write is pinned to its VersionId).
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def seed_azure(details: dict[str, Any]) -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(
        details["azureStorageEndpoint"], retry_total=0,
        credential={"account_name": details["azureStorageAccountName"],
                    "account_key": details["azureStorageAccessKey"]})
    try:
        service.create_container(details["azureContainerName"])
    except ResourceExistsError:
        pass


def seed_gcp(details: dict[str, Any]) -> None:
    endpoint = details["gcpEndpoint"].rstrip("/")
    request = urllib.request.Request(
        f"{endpoint}/storage/v1/b?project=playground",
        data=json.dumps({"name": details["bucketName"]}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except urllib.error.HTTPError as err:
        if err.code != 409:  # 409: the bucket exists
            raise


def seed_swift(details: dict[str, Any], location: str) -> None:
    from swiftclient.client import Connection

    key = os.environ.get(f"{location}_SWIFT_KEY") or details.get("key")
    connection = Connection(authurl=details["authUrl"], user=details["user"], key=key,
                            retries=0, timeout=5)
    connection.put_container(details["containerName"])


SEEDERS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "aws_s3": lambda details, _: seed_aws_s3(details),
    "azure": lambda details, _: seed_azure(details),
    "gcp": lambda details, _: seed_gcp(details),
    "swift": seed_swift,
}


def wait_for_metadata(dsn: str, deadline: float) -> None:
    """PostgreSQL starts beside the gateway: wait until it takes a connection."""
    import asyncio

    import asyncpg

    async def connect() -> None:
        connection = await asyncpg.connect(dsn, timeout=5)
        await connection.close()

    while True:
        try:
            asyncio.run(connect())
            print("seed: metadata store ready", flush=True)
            return
        except Exception as err:
            if time.monotonic() > deadline:
                print(f"seed: metadata store not reachable: {type(err).__name__}", file=sys.stderr)
                return
            time.sleep(0.5)


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ["S3_LOCATION_FILE"])
    locations: dict[str, Any] = json.loads(path.read_text())
    deadline = time.monotonic() + WAIT_SECONDS
    if os.environ.get("S3METADATA") == "postgres" and os.environ.get("S3METADATA_DSN"):
        wait_for_metadata(os.environ["S3METADATA_DSN"], deadline)
    for name, location in locations.items():
        seed = SEEDERS.get(location.get("type"))
        if seed is None:
            continue
        while True:
            try:
                seed(location.get("details", {}), name)
                print(f"seed: location {name} ({location['type']}) ready", flush=True)
                break
            except Exception as err:  # the emulator is still starting: retry until the deadline
                if time.monotonic() > deadline:
                    # Only the error's type: messages of some SDKs carry request headers.
                    print(f"seed: location {name} ({location['type']}) not reachable after "
                          f"{WAIT_SECONDS:.0f} s: {type(err).__name__}", file=sys.stderr)
                    return 1
                time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
