"""docker/compose.yaml end to end: the images built from docker/, the stack up, boto3 through the
gateway's published port on every location of docker/locationConfig.json, each object's bytes
seen on its emulator, metadata in the stack's PostgreSQL, and a SIGTERM that lets an upload in
flight finish.

The module fixture runs `docker/ci-smoke.sh up` (it installs podman from apt when missing, builds
the images: minutes cold, seconds warm) and `down` afterwards. With S3GW_STACK=up the stack is
already up (docker/ci-smoke.sh runs this file that way; ports from the environment).
S3GW_SKIP_DOCKER=1 skips the module.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.gatewayproc import free_port

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docker" / "ci-smoke.sh"
# The stack's locations: docker/ci-smoke.sh runs the swift profile too (every location type).
LOCATION_FILE = os.environ.get("S3GW_LOCATIONS", "locationConfig.swift.json")
LOCATIONS: dict[str, Any] = json.loads((REPO / "docker" / LOCATION_FILE).read_text())
PORT_NAMES = ("GATEWAY_PORT", "GATEWAY_METRICS_PORT", "POSTGRES_PORT", "MOTO_PORT",
              "AZURITE_PORT", "FAKE_GCS_PORT", "SWIFT_PORT")
KEYS = ("accessKey1", "verySecretKey1")  # conf/authdata.json, baked into the image
BACKEND_CONTAINER = "gateway-data"  # every cloud location's bucket/container in the stack
STACK_TIMEOUT = 1500  # a cold build on this 2-core machine is ~5 min; apt adds ~30 s


@dataclass
class Stack:
    ports: dict[str, int]
    env: dict[str, str]
    project: str

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['GATEWAY_PORT']}"

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.gateway_url, region_name="us-east-1",
                            aws_access_key_id=KEYS[0], aws_secret_access_key=KEYS[1],
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"total_max_attempts": 1}))

    def podman(self, *args: str, timeout: float = 60) -> str:
        command = ["podman", *args]
        if os.geteuid() != 0:
            command = ["sudo", "-E", *command]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=True)
        return done.stdout

    def container(self, service: str) -> str:
        """The id of one compose service's container."""
        ids = self.podman("ps", "-a", "-q", "--filter", f"label=io.podman.compose.project={self.project}",
                          "--filter", f"label=com.docker.compose.service={service}").split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]


def run_script(command: str, env: dict[str, str]) -> None:
    done = subprocess.run(["bash", str(SCRIPT), command], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=STACK_TIMEOUT)
    print(done.stderr[-4000:])
    assert done.returncode == 0, f"docker/ci-smoke.sh {command}: {done.stdout[-3000:]}{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(REPO / "docker" / "ci" / "containers.conf")
    env["S3GW_LOCATIONS"] = LOCATION_FILE
    project = env.get("S3GW_COMPOSE_PROJECT", "s3gw-ci")
    if env.get("S3GW_STACK") == "up":
        yield Stack({name: int(env[name]) for name in PORT_NAMES}, env, project)
        return
    if env.get("S3GW_SKIP_DOCKER"):
        pytest.skip("S3GW_SKIP_DOCKER is set")
    for name in PORT_NAMES:
        env[name] = str(free_port())
    try:
        run_script("up", env)
        yield Stack({name: int(env[name]) for name in PORT_NAMES}, env, project)
    finally:
        run_script("down", env)


def backend_names(stack: Stack, location: str, prefix: str) -> list[str]:
    """Object names under `prefix` in the location's bucket/container, read from its emulator
    through the port the stack publishes (the cloud's own view, not the gateway's)."""
    kind = LOCATIONS[location]["type"]
    if kind == "aws_s3":
        moto = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{stack.ports['MOTO_PORT']}",
                            region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")
        listed = moto.list_objects_v2(Bucket=BACKEND_CONTAINER, Prefix=prefix)
        return [item["Key"] for item in listed.get("Contents", [])]
    if kind == "azure":
        from azure.storage.blob.aio import ContainerClient

        details = LOCATIONS[location]["details"]

        async def names() -> list[str]:
            async with ContainerClient(
                    f"http://127.0.0.1:{stack.ports['AZURITE_PORT']}/devstoreaccount1",
                    BACKEND_CONTAINER, retry_total=0,
                    credential={"account_name": details["azureStorageAccountName"],
                                "account_key": details["azureStorageAccessKey"]}) as client:
                return [blob.name async for blob in client.list_blobs(name_starts_with=prefix)]

        return asyncio.run(names())
    if kind == "gcp":
        url = (f"http://127.0.0.1:{stack.ports['FAKE_GCS_PORT']}/storage/v1/b/"
               f"{BACKEND_CONTAINER}/o?prefix={prefix}")
        with urllib.request.urlopen(url, timeout=5) as response:
            return [item["name"] for item in json.load(response).get("items", [])]
    if kind == "swift":
        from swiftclient.client import Connection

        details = LOCATIONS[location]["details"]
        swift = Connection(authurl=f"http://127.0.0.1:{stack.ports['SWIFT_PORT']}/auth/v1.0",
                           user=details["user"], key=details["key"], retries=0, timeout=10)
        try:
            return [item["name"] for item in
                    swift.get_container(BACKEND_CONTAINER, prefix=prefix)[1]]
        finally:
            swift.close()
    raise AssertionError(f"no emulator view for {location} ({kind})")


def test_every_location_is_up(stack: Stack) -> None:
    # From the host, through the published port: allowFrom in docker/config.json admits it.
    with urllib.request.urlopen(f"{stack.gateway_url}/_/healthcheck/deep", timeout=10) as response:
        body = json.load(response)
    assert body["metadata"]["state"] == "up"
    states = {name: row["state"] for name, row in body["locations"].items()} \
        if isinstance(body["locations"], dict) \
        else {row["name"]: row["state"] for row in body["locations"]}
    assert states == {name: "up" for name in LOCATIONS}


@pytest.mark.parametrize("location", list(LOCATIONS))
def test_location_round_trip(stack: Stack, location: str) -> None:
    s3 = stack.s3()
    bucket = f"smoke-{location.lower()}-{uuid.uuid4().hex[:8]}"
    if location == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": location})
    assert (s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1") \
        == location

    small = os.urandom(4096)
    s3.put_object(Bucket=bucket, Key="dir/small.bin", Body=small)
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1024)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big.bin")
    etags = [s3.upload_part(Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"],
                            PartNumber=n, Body=body)["ETag"] for n, body in enumerate(parts, 1)]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]})

    assert s3.get_object(Bucket=bucket, Key="dir/small.bin")["Body"].read() == small
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == b"".join(parts)
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [item["Key"] for item in listed["Contents"]] == ["big.bin", "dir/small.bin"]
    if location != "us-east-1":  # the file location's disk is inside the gateway container
        names = backend_names(stack, location, f"{bucket}/")
        assert any(re.fullmatch(rf"{bucket}/dir/small\.bin~[0-9a-f]{{24}}", name) for name in names), names

    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "big.bin"}, {"Key": "dir/small.bin"}]})
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    s3.delete_bucket(Bucket=bucket)


def test_metadata_lives_in_the_stacks_postgres(stack: Stack) -> None:
    import asyncpg

    s3 = stack.s3()
    bucket = f"smoke-pg-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "azure"})

    async def location_of_bucket() -> str | None:
        connection = await asyncpg.connect(
            f"postgresql://gateway:gateway@127.0.0.1:{stack.ports['POSTGRES_PORT']}/gateway")
        try:
            return await connection.fetchval("SELECT location FROM buckets WHERE name = $1", bucket)
        finally:
            await connection.close()

    assert asyncio.run(location_of_bucket()) == "azure"
    s3.delete_bucket(Bucket=bucket)


def test_sigterm_lets_an_upload_in_flight_finish(stack: Stack) -> None:
    """`podman stop` (SIGTERM) while a PUT's body is half sent: the PUT still succeeds and its
    bytes are there after the gateway starts again. Last in the module: it restarts the gateway."""
    s3 = stack.s3()
    bucket = f"smoke-drain-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "aws"})
    body = os.urandom(2 * 1024 * 1024)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "drain.bin"},
                                    ExpiresIn=600)
    path = url.split(str(stack.ports["GATEWAY_PORT"]), 1)[1]
    gateway = stack.container("gateway")

    connection = http.client.HTTPConnection("127.0.0.1", stack.ports["GATEWAY_PORT"], timeout=60)
    connection.putrequest("PUT", path, skip_accept_encoding=True)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders()
    connection.send(body[: len(body) // 2])
    time.sleep(0.5)  # the request is in the handler, its body half read
    stopping = threading.Thread(target=stack.podman, args=("stop", "-t", "30", gateway),
                                kwargs={"timeout": 60})
    stopping.start()
    time.sleep(1.0)  # SIGTERM delivered: the gateway is draining
    assert stopping.is_alive(), "the gateway exited without waiting for the upload in flight"
    connection.send(body[len(body) // 2:])
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    stopping.join(60)
    assert not stopping.is_alive()

    stack.podman("start", gateway)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{stack.gateway_url}/_/healthcheck", timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the gateway did not come back"
            time.sleep(0.2)
    got = s3.get_object(Bucket=bucket, Key="drain.bin")["Body"].read()
    assert hashlib.md5(got).digest() == hashlib.md5(body).digest()
    s3.delete_object(Bucket=bucket, Key="drain.bin")
    s3.delete_bucket(Bucket=bucket)
