"""Races tested as races: each scenario is a plain function taking a boto3 client on a gateway
and a bucket, so it runs on any location and any metadata store. A scenario runs a bounded
number of trials of real concurrent requests (threads), judges every answer, and returns what
each key must hold from now on (`Outcome.expected`), for the caller to read again once the
collector is done (`verify`): acknowledged bytes must survive the garbage collection too.

The order of two requests is judged from the client's side: a request is in force somewhere
between when it was sent and when its answer came back (`Timed.start` / `Timed.end`). So after
concurrent PUTs the current bytes may be those of any PUT that ended after the last one began,
and of no other (`last_writers`).

An optional second client (`alt`, e.g. on a second gateway sharing the metadata) takes half of
the requests, so the races also cross processes.

The second half of the module holds the gateway-side checks the tests share: waiting for the
collector (`quiesce`) and running `python -m gateway fsck --json` (`fsck`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


# --- small helpers -----------------------------------------------------------------------------

def body(seed: object, size: int) -> bytes:
    """Bytes of its own for every (seed, size): a misplaced or mixed-up body shows."""
    return random.Random(repr(seed)).randbytes(size)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def etag_of(data: bytes) -> str:
    return f'"{md5(data)}"'


def multipart_etag(parts: list[bytes]) -> str:
    return f'"{md5(b"".join(bytes.fromhex(md5(p)) for p in parts))}-{len(parts)}"'


def code_of(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def status_of(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def describe(data: bytes | None) -> str:
    return "absent" if data is None else f"{len(data)} bytes md5 {md5(data)}"


@dataclass
class Timed:
    """One request as the client saw it: sent at `start`, answered at `end` (monotonic)."""

    start: float
    end: float
    ok: bool
    code: str = ""
    status: int = 0
    value: Any = None

    def outcome(self) -> str:
        return "ok" if self.ok else f"{self.status} {self.code}"


def timed(call: Callable[[], Any]) -> Timed:
    start = time.monotonic()
    try:
        value = call()
    except ClientError as err:
        return Timed(start, time.monotonic(), False, code_of(err), status_of(err), err)
    return Timed(start, time.monotonic(), True, value=value)


def last_writers(ops: list[Timed]) -> list[int]:
    """Indexes of the acknowledged writes that may be the last in force: those that ended after
    every other acknowledged write began (one that ended before another began came first)."""
    latest_start = max(op.start for op in ops if op.ok)
    return [i for i, op in enumerate(ops) if op.ok and op.end >= latest_start]


def get(s3: Any, bucket: str, key: str) -> tuple[bytes, str] | None:
    """(bytes, ETag) of the key's current version; None for 404 NoSuchKey."""
    try:
        got = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if code_of(err) == "NoSuchKey":
            return None
        raise
    data = got["Body"].read()
    assert len(data) == got["ContentLength"], f"{bucket}/{key}: short body"
    return data, got["ETag"]


def read_checked(s3: Any, bucket: str, key: str) -> bytes | None:
    """The key's bytes, whose MD5 must be the ETag served with them (single-part objects)."""
    got = get(s3, bucket, key)
    if got is None:
        return None
    data, etag = got
    assert etag == etag_of(data), f"{bucket}/{key}: ETag {etag} but the bytes are {describe(data)}"
    return data


def verify(s3: Any, bucket: str, expected: dict[str, bytes | None]) -> None:
    """Every key holds exactly its expected bytes (None: absent), ETag included."""
    for key, want in expected.items():
        got = get(s3, bucket, key)
        have = None if got is None else got[0]
        assert have == want, f"{bucket}/{key}: expected {describe(want)}, found {describe(have)}"


def run_together(*calls: Callable[[], Any], timeout: float = 120) -> list[Any]:
    """Run the calls in threads of their own, released at the same instant."""
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(released, call) for call in calls]
        return [f.result(timeout) for f in futures]


@dataclass
class Outcome:
    """What a scenario leaves: the bytes each key must hold from now on, and counts of how
    the races went (for the report)."""

    expected: dict[str, bytes | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def new_bucket(s3: Any, location: str | None, prefix: str = "race") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    create_bucket(s3, name, location)
    return name


def create_bucket(s3: Any, name: str, location: str | None) -> Any:
    if location:
        return s3.create_bucket(Bucket=name,
                                CreateBucketConfiguration={"LocationConstraint": location})
    return s3.create_bucket(Bucket=name)


# --- hand-made requests: slow, cut-off and mis-signed bodies --------------------------------------

def signed_headers(s3: Any, method: str, bucket: str, key: str, headers: dict[str, str],
                   payload_hash: str = "UNSIGNED-PAYLOAD") -> tuple[str, dict[str, str]]:
    """URL and SigV4 headers for a request by the client's account, signing `payload_hash`
    as the body's hash (true or not)."""
    url = f"{s3.meta.endpoint_url}/{bucket}/{quote(key)}"
    credentials = s3._request_signer._credentials.get_frozen_credentials()
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    signer = S3SigV4Auth(credentials, "s3", s3.meta.region_name or "us-east-1")
    signer.payload = lambda _request: payload_hash  # type: ignore[method-assign]
    signer.add_auth(request)
    return url, dict(request.headers.items())


_CODE = re.compile(rb"<Code>([^<]*)</Code>")


def streaming_put(s3: Any, bucket: str, key: str, chunks: list[bytes], pause: float, *,
                  declared: int | None = None, cut: bool = False,
                  sent: list[float] | None = None) -> tuple[int, str] | None:
    """PUT a body sent chunk by chunk with `pause` s between chunks (a slow client). With
    `cut`, close the connection after the chunks (Content-Length `declared`, more than sent):
    a client gone mid-body, which gets no answer (None). Else (status, S3 error code or "").
    `sent` gets the (monotonic) time each chunk went out."""
    size = sum(len(c) for c in chunks)
    url, headers = signed_headers(s3, "PUT", bucket, key,
                                  {"Content-Length": str(declared or size)})
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest("PUT", parts.path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        try:
            for index, chunk in enumerate(chunks):
                if index:
                    time.sleep(pause)
                conn.send(chunk)
                if sent is not None:
                    sent.append(time.monotonic())
        except OSError:
            pass  # answered early (and the connection closed): the answer is still readable
        if cut:
            time.sleep(pause)
            return None
        response = conn.getresponse()
        text = response.read()
        match = _CODE.search(text)
        return response.status, match.group(1).decode() if match else ""
    finally:
        conn.close()


def put_with_signed_hash(s3: Any, bucket: str, key: str, data: bytes,
                         payload_hash: str) -> tuple[int, str]:
    """PUT `data` with x-amz-content-sha256 = `payload_hash`, signed: a body that does not
    match what was signed is only found out once all of it has been streamed."""
    url, headers = signed_headers(s3, "PUT", bucket, key, {"Content-Length": str(len(data))},
                                  payload_hash)
    response = requests.put(url, data=data, headers=headers, timeout=60)
    match = _CODE.search(response.content)
    return response.status_code, match.group(1).decode() if match else ""


# --- 1. concurrent PUT storm on one key ---------------------------------------------------------

def put_storm(s3: Any, bucket: str, *, rounds: int, writers: int = 8,
              sizes: tuple[int, ...] = (2_000, 70_000, 300_000), readers: int = 2,
              stagger: float = 0.08, alt: Any = None) -> Outcome:
    """`rounds` rounds of `writers` PUTs of one key released at once (each after a random
    delay up to `stagger` s), distinct bodies, while `readers` threads GET, HEAD and range-GET
    it without pause.

    Every read must serve bytes whose MD5 is the ETag they came with, of a body some PUT sent,
    and never older than the last round completed before the read began. After each round the
    key holds (for every client) the body of one of the round's last writers, byte-exact."""
    clients = [s3, alt or s3]
    key = f"storm-{uuid.uuid4().hex[:8]}"
    outcome = Outcome()
    known: dict[str, tuple[int, bytes]] = {}  # md5 -> (round, body), filled before it is sent
    seed = body((key, "seed"), sizes[0])
    known[md5(seed)] = (-1, seed)
    s3.put_object(Bucket=bucket, Key=key, Body=seed)
    floor = [-1]  # the last round all of whose PUTs are acknowledged
    stop = threading.Event()
    failures: list[str] = []
    reads = [0] * readers

    def judge(kind: str, etag: str, low: int, data: bytes | None, first: int = 0) -> None:
        entry = known.get(etag.strip('"'))
        if entry is None:
            failures.append(f"{kind}: ETag {etag} is no body ever sent")
            return
        written_round, sent = entry
        if written_round < low:
            failures.append(f"{kind}: stale read, round {written_round} after round {low} "
                            "was acknowledged")
        if data is not None and data != sent[first:first + len(data)]:
            failures.append(f"{kind}: bytes {first}+{len(data)} are not those of ETag {etag}")

    def reader(number: int) -> None:
        client = clients[number % len(clients)]
        rng = random.Random(number)
        while not stop.is_set():
            low = floor[0]
            kind = ("get", "head", "range")[reads[number] % 3]
            try:
                if kind == "get":
                    got = client.get_object(Bucket=bucket, Key=key)
                    data = got["Body"].read()
                    if etag_of(data) != got["ETag"]:
                        failures.append(f"get: ETag {got['ETag']} for bytes md5 {md5(data)}")
                    judge(kind, got["ETag"], low, data)
                elif kind == "head":
                    head = client.head_object(Bucket=bucket, Key=key)
                    entry = known.get(head["ETag"].strip('"'))
                    if entry is not None and head["ContentLength"] != len(entry[1]):
                        failures.append(f"head: ETag {head['ETag']} with length "
                                        f"{head['ContentLength']} != {len(entry[1])}")
                    judge(kind, head["ETag"], low, None)
                else:
                    first = rng.randrange(0, sizes[0])
                    last = first + rng.randrange(0, 100_000)
                    got = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
                    judge(kind, got["ETag"], low, got["Body"].read(), first)
            except ClientError as err:  # the key always exists: no error is right
                failures.append(f"{kind}: {status_of(err)} {code_of(err)}")
            except Exception as exc:  # a cut connection, a short body: the same
                failures.append(f"{kind}: {type(exc).__name__}: {exc}")
            reads[number] += 1

    rng = random.Random(key)
    with ThreadPoolExecutor(readers) as reading, ThreadPoolExecutor(writers) as writing:
        reader_futures = [reading.submit(reader, n) for n in range(readers)]
        try:
            for round_ in range(rounds):
                bodies = [body((key, round_, w), rng.choice(sizes)) for w in range(writers)]
                for data in bodies:
                    known[md5(data)] = (round_, data)
                barrier = threading.Barrier(writers)

                # Staggered by up to `stagger` s: some PUTs end before others begin, so
                # the last-writer rule below has something to rule out.
                delays = [rng.uniform(0, stagger) for _ in range(writers)]

                def write(w: int, bodies: list[bytes] = bodies, delays: list[float] = delays,
                          barrier: threading.Barrier = barrier) -> Timed:
                    barrier.wait(60)
                    time.sleep(delays[w])
                    client = clients[w % len(clients)]
                    return timed(lambda: client.put_object(Bucket=bucket, Key=key,
                                                           Body=bodies[w]))

                ops = list(writing.map(write, range(writers)))
                for w, op in enumerate(ops):
                    assert op.ok, f"round {round_}: PUT {w} answered {op.outcome()}"
                    assert op.value["ETag"] == etag_of(bodies[w])
                floor[0] = round_
                allowed = {md5(bodies[i]) for i in last_writers(ops)}
                outcome.count(f"{len(allowed)} possible last writers")
                for client in clients:
                    data = read_checked(client, bucket, key)
                    assert data is not None, f"round {round_}: the key is gone"
                    assert md5(data) in allowed, (
                        f"round {round_}: the key holds {describe(data)}, not the body of a "
                        f"PUT that ended after every other began ({sorted(allowed)})")
                assert not failures, failures[:10]
        finally:
            stop.set()
            for future in reader_futures:
                future.result(60)
    assert not failures, failures[:10]
    assert all(reads), f"a reader read nothing: {reads}"
    outcome.counts["puts"] = rounds * writers + 1
    outcome.counts["reads"] = sum(reads)
    outcome.expected[key] = read_checked(s3, bucket, key)
    return outcome


# --- 2. DELETE during overwrite -----------------------------------------------------------------

def delete_during_overwrite(s3: Any, bucket: str, *, trials: int, puts: int = 4,
                            alt: Any = None) -> Outcome:
    """Per trial, one key: a writer PUTs `puts` bodies one after the other while a deleter
    DELETEs the key in a loop. Afterwards the key is either absent, and then some DELETE ended
    after the last PUT began, or it holds the last PUT's bytes (its ETag's), and then no DELETE
    began after that PUT was acknowledged."""
    outcome = Outcome()
    rng = random.Random(bucket)
    for trial in range(trials):
        key = f"dow-{uuid.uuid4().hex[:8]}-{trial}"
        writer, deleter = (s3, alt or s3) if trial % 2 else (alt or s3, s3)
        bodies = [body((key, i), rng.choice((1_000, 40_000, 150_000))) for i in range(puts)]
        data = _delete_during_overwrite(writer, deleter, bucket, key, bodies,
                                        rng.uniform(0, 0.004), trial, outcome)
        assert read_checked(alt or s3, bucket, key) == data, f"trial {trial}: clients disagree"
        outcome.expected[key] = data
    return outcome


def _delete_during_overwrite(writer: Any, deleter: Any, bucket: str, key: str,
                             bodies: list[bytes], pause: float, trial: int,
                             outcome: Outcome) -> bytes | None:
    done = threading.Event()

    def put(data: bytes) -> Timed:
        return timed(lambda: writer.put_object(Bucket=bucket, Key=key, Body=data))

    def write() -> list[Timed]:
        try:
            return [put(data) for data in bodies]
        finally:
            done.set()

    def delete() -> list[Timed]:
        ops: list[Timed] = []
        while not done.is_set() and len(ops) < 200:
            ops.append(timed(lambda: deleter.delete_object(Bucket=bucket, Key=key)))
            time.sleep(pause)
        return ops

    put_ops, delete_ops = run_together(write, delete)
    for op in put_ops + delete_ops:
        assert op.ok, f"trial {trial}: {op.outcome()}"
    outcome.counts["deletes"] = outcome.counts.get("deletes", 0) + len(delete_ops)
    last = put_ops[-1]
    data = read_checked(writer, bucket, key)
    if data is None:
        assert any(d.end > last.start for d in delete_ops), (
            f"trial {trial}: the last acknowledged PUT is gone, and every DELETE was "
            "acknowledged before it began")
        outcome.count("deleted")
        return None
    assert data == bodies[-1], (
        f"trial {trial}: holds {describe(data)}, not the last PUT's {describe(bodies[-1])}")
    late = [d for d in delete_ops if d.start > last.end]
    assert not late, (f"trial {trial}: a DELETE sent after the last PUT was acknowledged was "
                      "acknowledged too, yet the data is still there")
    outcome.count("kept")
    return data


# --- 3. CompleteMultipartUpload vs AbortMultipartUpload ---------------------------------------

def _one_part_upload(s3: Any, bucket: str, key: str, part: bytes) -> tuple[str, str]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                          Body=part)["ETag"]
    assert etag == etag_of(part)
    return upload_id, etag


def _open_uploads(s3: Any, bucket: str, prefix: str) -> list[str]:
    listing = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [u["UploadId"] for u in listing.get("Uploads", [])]


def _complete(s3: Any, bucket: str, key: str, upload_id: str, etags: list[str]) -> Any:
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})


def _after(delay: float, call: Callable[[], Any]) -> Callable[[], Timed]:
    def run() -> Timed:
        time.sleep(delay)
        return timed(call)
    return run


def _race_pair(rng: random.Random, first: Callable[[], Any],
               second: Callable[[], Any]) -> tuple[Timed, Timed]:
    """Run two requests at once, one of them (chosen at random) up to 4 ms later."""
    delays = [rng.uniform(0, 0.004), 0.0]
    rng.shuffle(delays)
    a, b = run_together(_after(delays[0], first), _after(delays[1], second))
    return a, b


def complete_vs_abort(s3: Any, bucket: str, *, trials: int, part_size: int = 100_000,
                      alt: Any = None) -> Outcome:
    """Per trial, an upload of one part, completed and aborted at once: exactly one wins and
    the other answers 404 NoSuchUpload; a won Complete leaves the object readable, byte-exact,
    with the multipart ETag; a won Abort leaves no object. Either way the upload is gone."""
    outcome = Outcome()
    rng = random.Random(bucket + "cva")
    for trial in range(trials):
        key = f"cva-{uuid.uuid4().hex[:8]}-{trial}"
        part = body((key, 1), part_size)
        upload_id, etag = _one_part_upload(s3, bucket, key, part)
        completer, aborter = (s3, alt or s3) if trial % 2 else (alt or s3, s3)
        done, aborted = _race_pair(
            rng, partial(_complete, completer, bucket, key, upload_id, [etag]),
            partial(aborter.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id))
        assert done.ok != aborted.ok, (f"trial {trial}: exactly one must win: complete "
                                       f"{done.outcome()}, abort {aborted.outcome()}")
        loser = aborted if done.ok else done
        assert (loser.status, loser.code) == (404, "NoSuchUpload"), (
            f"trial {trial}: the loser answered {loser.outcome()}")
        got = get(s3, bucket, key)
        if done.ok:
            assert done.value["ETag"] == multipart_etag([part])
            assert got is not None, f"trial {trial}: Complete acknowledged, object missing"
            assert got[0] == part, f"trial {trial}: {describe(got[0])} != {describe(part)}"
            assert got[1] == multipart_etag([part])
            outcome.count("complete won")
            outcome.expected[key] = part
        else:
            assert got is None, f"trial {trial}: Abort won, yet {describe(got[0])} is readable"
            outcome.count("abort won")
            outcome.expected[key] = None
        assert upload_id not in _open_uploads(s3, bucket, key), f"trial {trial}: upload listed"
    return outcome


# --- 4. CompleteMultipartUpload vs a retried UploadPart of a listed part ---------------------

def complete_vs_part_retry(s3: Any, bucket: str, *, trials: int, part_size: int = 100_000,
                           alt: Any = None) -> Outcome:
    """Per trial, an upload of one part, completed while the same part (same bytes) is sent
    again. The Complete always succeeds (its part is there either way); the retried part is
    acknowledged or refused with 404 NoSuchUpload; the object is the part, byte-exact."""
    outcome = Outcome()
    rng = random.Random(bucket + "cvp")
    for trial in range(trials):
        key = f"cvp-{uuid.uuid4().hex[:8]}-{trial}"
        part = body((key, 1), part_size)
        upload_id, etag = _one_part_upload(s3, bucket, key, part)
        completer, retrier = (s3, alt or s3) if trial % 2 else (alt or s3, s3)
        done, retried = _race_pair(
            rng, partial(_complete, completer, bucket, key, upload_id, [etag]),
            partial(retrier.upload_part, Bucket=bucket, Key=key, UploadId=upload_id,
                    PartNumber=1, Body=part))
        assert done.ok, f"trial {trial}: Complete answered {done.outcome()}"
        assert done.value["ETag"] == multipart_etag([part])
        if retried.ok:
            assert retried.value["ETag"] == etag
            outcome.count("part acknowledged")
        else:
            assert (retried.status, retried.code) == (404, "NoSuchUpload"), (
                f"trial {trial}: the retried part answered {retried.outcome()}")
            outcome.count("part refused")
        for client in (s3, alt or s3):
            got = get(client, bucket, key)
            assert got is not None, f"trial {trial}: Complete acknowledged, object missing"
            assert got[0] == part, f"trial {trial}: {describe(got[0])} != {describe(part)}"
        assert upload_id not in _open_uploads(s3, bucket, key)
        outcome.expected[key] = part
    return outcome


# --- 5. DeleteBucket vs a streaming PUT ----------------------------------------------------------

def delete_bucket_vs_streaming_put(s3: Any, other: Any, *, trials: int,
                                   location: str | None = None, chunks: int = 4,
                                   chunk_size: int = 64 * 1024, pause: float = 0.025,
                                   alt: Any = None) -> Outcome:
    """Per trial, a fresh bucket; a PUT whose body arrives slowly (`chunks` chunks, `pause` s
    apart) and, at a random moment before, during or after it, a DeleteBucket which, when it
    succeeds, is followed at once by another account (`other`) creating the bucket again.
    Never do both the PUT and the DeleteBucket succeed. A won PUT leaves its object readable in
    the old bucket; a won DeleteBucket leaves the other account's new bucket empty, even once
    the PUT has answered (its commit found the bucket gone or another incarnation)."""
    outcome = Outcome()
    span = chunks * pause
    for trial in range(trials):
        name = new_bucket(s3, location, "dbsp")
        data = body((name, "obj"), chunks * chunk_size)
        pieces = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
        delay = (trial + 0.5) / trials * span * 1.5  # from before the body to past its end
        sent: list[float] = []
        put_op, (removed, again) = run_together(
            partial(timed, partial(streaming_put, s3, name, "obj", pieces, pause, sent=sent)),
            partial(_delete_and_recreate, alt or s3, other, name, location, delay))
        when = ("before the body" if not sent or removed.start < sent[0] else
                "mid-body" if removed.start < sent[-1] else "after the body")
        put_status, put_code = put_op.value
        if put_status == 200:
            assert not removed.ok, (f"trial {trial}: the PUT and the DeleteBucket (sent "
                                    f"{when}) both succeeded: the object outlived its bucket")
            assert removed.code == "BucketNotEmpty", f"trial {trial}: {removed.outcome()}"
            assert read_checked(s3, name, "obj") == data, f"trial {trial}: PUT lost"
            s3.delete_object(Bucket=name, Key="obj")
            s3.delete_bucket(Bucket=name)
            outcome.count(f"put won, delete sent {when}")
            continue
        assert removed.ok, (f"trial {trial}: neither won: PUT {put_status} {put_code}, "
                            f"DeleteBucket {removed.outcome()}")
        assert (put_status, put_code) in ((404, "NoSuchBucket"), (403, "AccessDenied")), (
            f"trial {trial}: the refused PUT answered {put_status} {put_code}")
        assert again is not None and again.ok, f"trial {trial}: recreate {again}"
        listing = other.list_objects_v2(Bucket=name)
        assert listing["KeyCount"] == 0, f"trial {trial}: the new bucket holds {listing}"
        assert get(other, name, "obj") is None
        assert not _open_uploads(other, name, "")
        other.delete_bucket(Bucket=name)  # empty: nothing hidden in it either
        outcome.count(f"delete won {when}, put {put_code}")
    return outcome


def _delete_and_recreate(s3: Any, other: Any, name: str, location: str | None,
                         delay: float) -> tuple[Timed, Timed | None]:
    """After `delay` s, DeleteBucket; when it succeeds, `other` creates the bucket again."""
    time.sleep(delay)
    removed = timed(lambda: s3.delete_bucket(Bucket=name))
    again = timed(lambda: create_bucket(other, name, location)) if removed.ok else None
    return removed, again


# --- 6. a refused PUT keeps the live object -----------------------------------------------------

REFUSALS = ("BadDigest", "XAmzContentSHA256Mismatch", "cut-off")


def refused_put_keeps_live(s3: Any, bucket: str, *, trials: int,
                           sizes: tuple[int, ...] = (1_000, 100_000, 400_000),
                           alt: Any = None) -> Outcome:
    """Per trial: PUT v1; then a PUT of v2 that the gateway refuses only once its body has
    streamed in (wrong Content-MD5 -> BadDigest; wrong signed payload hash ->
    XAmzContentSHA256Mismatch) or that the client cuts off mid-body. Meanwhile a reader reads
    v1, and only v1, byte-exact; afterwards v1 is still the object."""
    outcome = Outcome()
    rng = random.Random(bucket + "refused")
    for trial in range(trials):
        key = f"ref-{uuid.uuid4().hex[:8]}-{trial}"
        v1 = body((key, 1), rng.choice(sizes))
        v2 = body((key, 2), max(rng.choice(sizes), 64 * 1024))
        s3.put_object(Bucket=bucket, Key=key, Body=v1)
        kind = REFUSALS[trial % len(REFUSALS)]
        seen = _read_during(alt or s3, bucket, key, partial(_refused_put, s3, bucket, key, v2,
                                                             kind))
        assert seen, f"trial {trial}: the reader read nothing"
        wrong_reads = [s for s in seen if s != md5(v1)]
        assert not wrong_reads, f"trial {trial} ({kind}): reads {wrong_reads[:5]} != {md5(v1)}"
        assert read_checked(s3, bucket, key) == v1, f"trial {trial} ({kind}): v1 lost"
        outcome.count(kind)
        outcome.counts["reads"] = outcome.counts.get("reads", 0) + len(seen)
        outcome.expected[key] = v1
    return outcome


def _read_during(s3: Any, bucket: str, key: str, action: Callable[[], None]) -> list[str]:
    """Read the key without pause while `action` runs; the MD5s read (or what went wrong)."""
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                data = read_checked(s3, bucket, key)
                seen.append("absent" if data is None else md5(data))
            except Exception as exc:
                seen.append(f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(reader)
        try:
            action()
        finally:
            stop.set()
            reading.result(60)
    return seen


def _refused_put(s3: Any, bucket: str, key: str, data: bytes, kind: str) -> None:
    if kind == "BadDigest":
        wrong = base64.b64encode(hashlib.md5(data + b"!").digest()).decode()
        op = timed(lambda: s3.put_object(Bucket=bucket, Key=key, Body=data, ContentMD5=wrong))
        assert (op.status, op.code) == (400, "BadDigest"), op.outcome()
    elif kind == "XAmzContentSHA256Mismatch":
        answer = put_with_signed_hash(s3, bucket, key, data,
                                      hashlib.sha256(data + b"!").hexdigest())
        assert answer == (400, kind), answer
    else:  # the client goes away after half of its body
        half = data[: len(data) // 2]
        streaming_put(s3, bucket, key, [half[:1024], half[1024:]], 0.02, declared=len(data),
                      cut=True)


# --- 7. lost updates of bucket settings ---------------------------------------------------------

def bucket_settings_race(s3: Any, bucket: str, *, writes: int, alt: Any = None) -> Outcome:
    """Four writers, each setting one of the bucket's settings `writes` times with a new value
    every time (policy, versioning, tags, CORS), all at once and through both clients. Each
    setting must end as its writer last set it: none undone by a concurrent write of another."""
    clients = [s3, alt or s3]
    outcome = Outcome()

    def policy(i: int) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": f"s{i}", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/p{i}/*"}]})

    def versioning(i: int) -> str:
        return "Enabled" if i % 2 == 0 else "Suspended"

    def cors(i: int) -> list[dict[str, Any]]:
        return [{"AllowedMethods": ["GET"], "AllowedOrigins": [f"https://o{i}.example"],
                 "MaxAgeSeconds": i}]

    setters: dict[str, Callable[[Any, int], Any]] = {
        "policy": lambda c, i: c.put_bucket_policy(Bucket=bucket, Policy=policy(i)),
        "versioning": lambda c, i: c.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": versioning(i)}),
        "tagging": lambda c, i: c.put_bucket_tagging(
            Bucket=bucket, Tagging={"TagSet": [{"Key": "round", "Value": str(i)}]}),
        "cors": lambda c, i: c.put_bucket_cors(
            Bucket=bucket, CORSConfiguration={"CORSRules": cors(i)}),
    }

    def writer(name: str, number: int) -> list[Timed]:
        return [timed(lambda i=i: setters[name](clients[(i + number) % 2], i))
                for i in range(writes)]

    results = run_together(*[lambda name=name, n=n: writer(name, n)
                             for n, name in enumerate(setters)])
    for name, ops in zip(setters, results, strict=True):
        for op in ops:
            assert op.ok, f"{name}: {op.outcome()}"
    final = writes - 1
    for client in clients:
        got_policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
        assert got_policy == json.loads(policy(final)), f"policy lost: {got_policy}"
        assert client.get_bucket_versioning(Bucket=bucket)["Status"] == versioning(final)
        assert client.get_bucket_tagging(Bucket=bucket)["TagSet"] == [
            {"Key": "round", "Value": str(final)}]
        rules = client.get_bucket_cors(Bucket=bucket)["CORSRules"]
        assert [(r["AllowedOrigins"], r.get("MaxAgeSeconds")) for r in rules] == [
            ([f"https://o{final}.example"], final)], f"CORS lost: {rules}"
    outcome.counts["writes"] = writes * len(setters)
    return outcome


# --- 8 / crash: writes in flight while the gateway goes away ------------------------------------

@dataclass
class Attempt:
    data: bytes
    acked: bool = False


@dataclass
class UploadAttempt:
    key: str
    parts: list[bytes]
    upload_id: str | None = None
    etags: list[str] = field(default_factory=list)
    complete_sent: bool = False
    complete_acked: bool = False


class WriteLoad:
    """Threads writing into one bucket until the gateway goes away (or `seconds` pass): PUTs of
    new keys and overwrites of a few hot keys, and multipart uploads (create, parts,
    complete). Every request is remembered before it is sent and marked when acknowledged.
    A thread stops at the first request without an answer (the gateway is gone); an HTTP
    error answer is a failure of its own (`unexpected`)."""

    def __init__(self, s3: Any, bucket: str, prefix: str, *, put_threads: int = 4,
                 upload_threads: int = 2, seconds: float = 30.0,
                 sizes: tuple[int, ...] = (1_000, 60_000, 300_000),
                 big_part: int = 5 * MiB) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        self.put_threads, self.upload_threads = put_threads, upload_threads
        self.sizes, self.big_part = sizes, big_part
        self.deadline = time.monotonic() + seconds
        self.attempts: dict[str, list[Attempt]] = {}
        self.uploads: list[UploadAttempt] = []
        self.unexpected: list[str] = []
        self.stopped_by: list[str] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> WriteLoad:
        for n in range(self.put_threads):
            self._threads.append(threading.Thread(target=self._guard, args=(self._puts, n)))
        for n in range(self.upload_threads):
            self._threads.append(threading.Thread(target=self._guard, args=(self._uploads, n)))
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float = 60) -> None:
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a load thread did not stop"

    def acked(self) -> int:
        return (sum(a.acked for atts in self.attempts.values() for a in atts)
                + sum(u.complete_acked for u in self.uploads))

    def _guard(self, work: Callable[[int], None], number: int) -> None:
        try:
            work(number)
        except ClientError as err:
            self.unexpected.append(f"{err.operation_name}: {status_of(err)} {code_of(err)}")
        except (BotoCoreError, OSError) as exc:  # no answer: the gateway went away
            self.stopped_by.append(type(exc).__name__)
        except Exception as exc:
            self.unexpected.append(f"{type(exc).__name__}: {exc}")

    def _puts(self, number: int) -> None:
        rng = random.Random(f"{self.prefix}{number}")
        hot = [f"{self.prefix}hot-{number}-{i}" for i in range(3)]
        count = 0
        while time.monotonic() < self.deadline:
            key = rng.choice(hot) if rng.random() < 0.5 else f"{self.prefix}new-{number}-{count}"
            attempt = Attempt(body((key, count), rng.choice(self.sizes)))
            self.attempts.setdefault(key, []).append(attempt)
            count += 1
            answer = self.s3.put_object(Bucket=self.bucket, Key=key, Body=attempt.data)
            if answer["ETag"] != etag_of(attempt.data):
                self.unexpected.append(f"PUT {key}: ETag {answer['ETag']}")
            attempt.acked = True

    def _uploads(self, number: int) -> None:
        rng = random.Random(f"{self.prefix}mpu{number}")
        count = 0
        while time.monotonic() < self.deadline:
            key = f"{self.prefix}mpu-{number}-{count}"
            count += 1
            last = body((key, "last"), rng.choice(self.sizes))
            parts = [body((key, "big"), self.big_part), last] if rng.random() < 0.2 else [last]
            upload = UploadAttempt(key, parts)
            self.uploads.append(upload)
            upload.upload_id = self.s3.create_multipart_upload(Bucket=self.bucket,
                                                               Key=key)["UploadId"]
            for number_, part in enumerate(parts, 1):
                etag = self.s3.upload_part(Bucket=self.bucket, Key=key,
                                           UploadId=upload.upload_id, PartNumber=number_,
                                           Body=part)["ETag"]
                upload.etags.append(etag)
            upload.complete_sent = True
            answer = self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload.upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                           for n, e in enumerate(upload.etags, 1)]})
            if answer["ETag"] != multipart_etag(parts):
                self.unexpected.append(f"Complete {key}: ETag {answer['ETag']}")
            upload.complete_acked = True


def verify_load(s3: Any, bucket: str, load: WriteLoad) -> Outcome:
    """After the gateway is back: every PUT key holds its last acknowledged body or the body of
    a later PUT that was in flight (absent only when none was acknowledged); every acknowledged
    Complete's object is readable byte-exact. Uploads left behind must be finishable: a Complete
    cut off is retried (it succeeds, or answers NoSuchUpload because it had committed: then the
    object is there), any other upload aborts. No upload is left open."""
    outcome = Outcome()
    for key, attempts in load.attempts.items():
        acked = [i for i, a in enumerate(attempts) if a.acked]
        first = acked[-1] if acked else None
        allowed: list[bytes | None] = [] if first is not None else [None]
        allowed += [a.data for a in attempts[first if first is not None else 0:]]
        data = read_checked(s3, bucket, key)
        assert data in allowed, (f"{key}: holds {describe(data)}; allowed: "
                                 f"{[describe(a) for a in allowed]}")
        outcome.count("in-flight PUT landed" if data is not None and first is not None
                      and data != attempts[first].data else "PUT as acknowledged")
        outcome.expected[key] = data
    for upload in load.uploads:
        whole = b"".join(upload.parts)
        if upload.complete_acked:
            got = get(s3, bucket, upload.key)
            assert got is not None and got[0] == whole, (
                f"{upload.key}: acknowledged multipart object is "
                f"{describe(got[0] if got else None)}")
            outcome.count("complete acknowledged")
            outcome.expected[upload.key] = whole
            continue
        if upload.upload_id is None:
            continue  # its creation was not answered: found in the listing below
        if upload.complete_sent:
            again = timed(lambda u=upload: s3.complete_multipart_upload(
                Bucket=bucket, Key=u.key, UploadId=u.upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                           for n, e in enumerate(u.etags, 1)]}))
            got = get(s3, bucket, upload.key)
            if not again.ok:
                assert again.code == "NoSuchUpload", f"{upload.key}: retry {again.outcome()}"
                assert got is not None and got[0] == whole, (
                    f"{upload.key}: the Complete cut off by the stop answers NoSuchUpload on "
                    f"retry, yet the object is {describe(got[0] if got else None)}: the "
                    "upload can be neither completed nor aborted")
                outcome.count("cut-off complete had committed")
            else:
                assert got is not None and got[0] == whole
                outcome.count("cut-off complete retried")
            outcome.expected[upload.key] = whole
            continue
        aborted = timed(lambda u=upload: s3.abort_multipart_upload(
            Bucket=bucket, Key=u.key, UploadId=u.upload_id))
        assert aborted.ok, f"{upload.key}: abort of an open upload {aborted.outcome()}"
        assert get(s3, bucket, upload.key) is None
        outcome.count("open upload aborted")
        outcome.expected[upload.key] = None
    for leftover in s3.list_multipart_uploads(Bucket=bucket, Prefix=load.prefix).get(
            "Uploads", []):
        aborted = timed(lambda u=leftover: s3.abort_multipart_upload(
            Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]))
        assert aborted.ok, (f"{leftover['Key']}: a listed upload cannot be aborted "
                            f"({aborted.outcome()})")
        outcome.count("unanswered upload aborted")
    assert not _open_uploads(s3, bucket, load.prefix), "uploads left open"
    return outcome


# --- gateway-side checks -----------------------------------------------------------------------

def metric(endpoint: str, name: str) -> float:
    text = requests.get(f"{endpoint}/_/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in {endpoint}/_/metrics")


def quiesce(endpoints: list[str], timeout: float = 30.0) -> None:
    """Wait until no write is in flight (intents) and the collector has removed every piece no
    record references (garbage), on every gateway given."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [(e, metric(e, "s3gw_writes_in_flight"), metric(e, "s3gw_garbage_pending"))
                for e in endpoints]
        if not any(w or g for _, w, g in busy):
            return
        assert time.monotonic() < deadline, f"not quiet after {timeout}s: {busy}"
        time.sleep(0.05)


def fsck(env: dict[str, str], *args: str, inprocess: bool = False) -> dict[str, Any]:
    """`python -m gateway fsck --json [args]` with a gateway's environment (its config files,
    data and metadata paths); its JSON plus "exit" (the exit status). `inprocess` runs the same
    checks in this process (for locations whose emulator lives here, such as B2's)."""
    if inprocess:
        return _fsck_here(env, "--repair" in args)
    result = subprocess.run([sys.executable, "-m", "gateway", "fsck", "--json", *args],
                            env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"fsck exit {result.returncode}: {result.stdout[-2000:]}"
                             f"{result.stderr[-3000:]}") from None
    report["exit"] = result.returncode
    return report


def _fsck_here(env: dict[str, str], repair: bool) -> dict[str, Any]:
    from gateway.config import load_settings
    from gateway.objects.fsck import fsck as check
    from gateway.server import Gateway as Core

    async def run() -> dict[str, Any]:
        core = Core(load_settings({**os.environ, **env}))
        await core.metadata.open()
        await core.locations.open()
        try:
            reports = await check(core.metadata, core.locations, core.engine.collector,
                                  repair=repair)
            pending = await core.metadata.count_garbage()
        finally:
            await core.locations.close()
            await core.metadata.close()
        problems = [r for r in reports if r.missing or r.size_mismatch or r.error
                    or (r.unreferenced and not repair)]
        return {"locations": [
            {"name": r.name, "listed": r.listed, "referenced": r.referenced,
             "missing": r.missing, "sizeMismatch": r.size_mismatch,
             "unreferenced": [p.key for p in r.unreferenced], "removed": r.repaired,
             "error": r.error} for r in reports], "garbagePending": pending,
            "exit": 1 if problems else 0}

    with ThreadPoolExecutor(1) as pool:  # a loop of its own, whatever the caller runs
        return pool.submit(asyncio.run, run()).result(300)


def assert_consistent(report: dict[str, Any], *, exact: bool = True) -> None:
    """fsck found nothing missing, no size mismatch, no error, nothing unreferenced, and (with
    `exact`, once the collector is done) one stored piece for each piece referenced."""
    for loc in report["locations"]:
        assert not loc["error"], loc
        assert not loc["missing"], loc
        assert not loc["sizeMismatch"], loc
        assert not loc["unreferenced"], loc
        if exact:
            assert loc["listed"] == loc["referenced"], loc
    assert report["exit"] == 0, report


def check_after_stop(env: dict[str, str], *, strict: bool) -> int:
    """With the gateway stopped: fsck finds nothing missing and no size mismatch (with
    `strict`, nothing unreferenced either: a clean stop leaves nothing to repair); after
    `fsck --repair`, fsck finds nothing at all, and no temporary file is left in the data
    path. Returns how many unreferenced pieces the first fsck found."""
    first = fsck(env)
    for loc in first["locations"]:
        assert not loc["missing"] and not loc["sizeMismatch"] and not loc["error"], loc
        if strict:
            assert not loc["unreferenced"], loc
    repaired = fsck(env, "--repair")
    assert repaired["exit"] == 0, repaired
    assert_consistent(fsck(env), exact=False)
    data = Path(env["S3DATAPATH"])
    leftovers = list(data.rglob("*.tmp"))
    assert not leftovers, leftovers[:5]
    return sum(len(loc["unreferenced"]) for loc in first["locations"])
