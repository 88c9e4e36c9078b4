"""The B2 test cloud: b2sdk's in-process RawSimulator (no B2 HTTP emulator exists).

The stock simulator is made realistic by subclassing: B2's 5 MiB minimum part size and
5 MiB simple-copy limit (so big copies take the large-file path, as over 5 GB on B2), no
artificial sleep per downloaded chunk, one read of each upload body (a real server reads a
POST once; the stock one reads it twice to mimic a client retry), unknown file ids answered
with FileNotPresent (B2's not_found) instead of a KeyError, copies registered so they can be
deleted by id (a simulator bug), and a `stopped` switch that fails every call the way an
unreachable B2 does. The translator's code path is the one used against real B2: only the raw
API object differs, injected through gateway.translators.b2.RAW_API_FACTORY.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from b2sdk._internal.raw_simulator import FakeResponse
from b2sdk.v2 import (
    B2Api,
    B2HttpApiConfig,
    BucketSimulator,
    FileSimulator,
    InMemoryAccountInfo,
    RawSimulator,
)
from b2sdk.v2.exception import B2ConnectionError, FileNotPresent

import gateway.translators.b2 as b2_module

MiB = 1024 * 1024
BUCKET = "gateway-b2-test"


class _FileSimulator(FileSimulator):
    def finish(self, part_sha1_array: list[str]) -> None:
        super().finish(part_sha1_array)
        self.parts = []  # B2 keeps the assembled file only; holding parts too doubles memory


class _Response(FakeResponse):
    """A download response without the stock random sleep per chunk, failing mid-body when
    the simulator is stopped."""

    def __init__(self, account_auth_token_or_none: Any, file_sim: Any, url: str,
                 range_: Any = None) -> None:
        super().__init__(account_auth_token_or_none, file_sim, url, range_)
        self.simulator: B2Simulator = file_sim.bucket.api

    def iter_content(self, chunk_size: int = 1) -> Iterator[bytes]:
        while True:
            if self.simulator.stopped:
                raise B2ConnectionError("connection reset (simulator stopped)")
            chunk = self.raw.read(chunk_size)
            if not chunk:
                return
            yield chunk


class _BucketSimulator(BucketSimulator):
    MAX_SIMPLE_COPY_SIZE = 5 * MiB
    FILE_SIMULATOR_CLASS = _FileSimulator
    RESPONSE_CLASS = _Response

    def _simulate_chunked_post(self, stream: Any, content_length: int, min_chunks: int = 4,
                               max_chunk_size: int = 8096, simulate_retry: bool = True) -> bytes:
        return super()._simulate_chunked_post(stream, content_length, min_chunks, 256 * 1024,
                                              simulate_retry=False)



class B2Simulator(RawSimulator):
    MIN_PART_SIZE = 5 * MiB
    BUCKET_SIMULATOR_CLASS = _BucketSimulator

    def __init__(self, b2_http: Any = None) -> None:
        super().__init__(b2_http)
        self.stopped = False
        self.latency = 0.0  # seconds every call takes, as over a network

    def copy_file(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = super().copy_file(*args, **kwargs)
        source_file_id = args[2] if len(args) > 2 else kwargs["source_file_id"]
        bucket_id = kwargs.get("destination_bucket_id") or self.file_id_to_bucket_id[source_file_id]
        self.file_id_to_bucket_id[result["fileId"]] = bucket_id
        return result


def _guard(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def guarded(self: B2Simulator, *args: Any, **kwargs: Any) -> Any:
        if self.stopped:
            raise B2ConnectionError("Connection refused (simulator stopped)")
        if self.latency:
            time.sleep(self.latency)
        try:
            return method(self, *args, **kwargs)
        except KeyError as exc:  # the stock simulator's answer to an unknown file id
            raise FileNotPresent(file_id_or_name=str(exc)) from None
    return guarded


for _name in ("authorize_account", "cancel_large_file", "copy_file", "copy_part",
              "delete_file_version", "download_file_from_url", "finish_large_file",
              "get_file_info_by_id", "get_file_info_by_name", "get_upload_part_url",
              "get_upload_url", "hide_file", "list_buckets", "list_file_names",
              "list_file_versions", "list_parts", "list_unfinished_large_files",
              "start_large_file", "upload_file", "upload_part"):
    setattr(B2Simulator, _name, _guard(getattr(B2Simulator, _name)))


@dataclass
class B2Cloud:
    """One simulated B2 account with one bucket."""

    simulator: B2Simulator
    key_id: str
    key: str
    bucket_name: str = BUCKET

    def details(self, **extra: Any) -> dict[str, Any]:
        return {"bucketName": self.bucket_name, "applicationKeyId": self.key_id,
                "applicationKey": self.key, **extra}

    def api(self) -> B2Api:
        """B2's own SDK on this account, to look at objects natively."""
        api = B2Api(InMemoryAccountInfo(),
                    api_config=B2HttpApiConfig(_raw_api_class=lambda http: self.simulator))
        api.authorize_account("production", self.key_id, self.key)
        return api

    def bucket(self) -> Any:
        return self.api().get_bucket_by_name(self.bucket_name)

    @contextmanager
    def stopped(self) -> Iterator[None]:
        self.simulator.stopped = True
        try:
            yield
        finally:
            self.simulator.stopped = False


def new_b2_cloud() -> B2Cloud:
    simulator = B2Simulator()
    key_id, key = simulator.create_account()
    cloud = B2Cloud(simulator, key_id, key)
    cloud.api().create_bucket(BUCKET, "allPrivate")
    return cloud


@contextmanager
def b2_raw_api(cloud: B2Cloud | None) -> Iterator[None]:
    """Translators opened inside this block talk to `cloud` (None: to real B2 over HTTP)."""
    previous = b2_module.RAW_API_FACTORY
    b2_module.RAW_API_FACTORY = None if cloud is None else (lambda http: cloud.simulator)
    try:
        yield
    finally:
        b2_module.RAW_API_FACTORY = previous


@pytest.fixture(scope="session")
def b2_cloud() -> Iterator[B2Cloud]:
    """The shared simulated account; translators opened while it is active use it."""
    cloud = new_b2_cloud()
    with b2_raw_api(cloud):
        yield cloud


@pytest.fixture
def b2_throwaway() -> Iterator[B2Cloud]:
    """A fresh simulated account of its own, for tests that stop it."""
    cloud = new_b2_cloud()
    with b2_raw_api(cloud):
        yield cloud
