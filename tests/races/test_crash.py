"""Crashes tested with kill -9 and fsck.

Each round: start a gateway on the same working directory as the rounds before (its data and
metadata carry over), run concurrent PUTs (new keys and overwrites) and multipart uploads,
SIGKILL it at a random moment mid-flight (odd rounds: run fsck, fsck --repair and fsck on
what the killed gateway left, before anything else), start it again and check that every acknowledged
write reads back byte-exact (this round's and every earlier round's), that the writes cut off
are either absent or whole, and that every upload left behind can be finished (a Complete cut
off is completed by its retry, or had committed; other uploads abort). Then, with the gateway
stopped, `python -m gateway fsck --json` (same environment) finds nothing missing, and after
`fsck --repair` nothing unreferenced, with no temporary file left in the data path.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.gatewayproc import start_gateway
from tests.races import scenarios

CONFIG: dict[str, Any] = {"storage": {"collectInterval": 0.2}}
ROUNDS = 5  # on the file location with SQLite
TIME_BOUND = 90.0  # s: no new round starts after this (at least MIN_ROUNDS run)
MIN_ROUNDS = 2


def crash_rounds(workdir: Path, rounds: int, *, locations: dict[str, Any] | None = None,
                 location: str | None = None, env: dict[str, str] | None = None,
                 seed: str = "crash") -> scenarios.Outcome:
    rng = random.Random(seed)
    bucket = f"crash-{uuid.uuid4().hex[:8]}"
    state: dict[str, bytes | None] = {}
    totals = scenarios.Outcome()
    deadline = time.monotonic() + TIME_BOUND
    for round_ in range(rounds):
        if round_ >= MIN_ROUNDS and time.monotonic() > deadline:
            break
        with start_gateway(workdir, locations, config=CONFIG, env=env) as gw:
            s3 = gw.client(max_pool_connections=16, connect_timeout=5, read_timeout=30)
            if round_ == 0:
                scenarios.create_bucket(s3, bucket, location)
            load = scenarios.WriteLoad(s3, bucket, f"r{round_}/", put_threads=4,
                                       upload_threads=2).start()
            time.sleep(rng.uniform(0.3, 1.0))
            gw.crash()  # kill -9: no cleanup of any kind
            load.join()
            assert not load.unexpected, load.unexpected
            assert load.acked() > 0, "nothing acknowledged before the kill"
            assert load.stopped_by, "no request was cut off by the kill"
            totals.counts["requests cut off"] = (totals.counts.get("requests cut off", 0)
                                                 + len(load.stopped_by))
        if round_ % 2:
            # The README's way after a crash, on the killed gateway's state as it is: fsck,
            # fsck --repair, fsck. The restart below then shows the repair removed nothing
            # that was acknowledged.
            found = scenarios.check_after_stop(gw.env, strict=False)
            totals.counts["unreferenced right after the kill"] = (
                totals.counts.get("unreferenced right after the kill", 0) + found)
        with start_gateway(workdir, locations, config=CONFIG, env=env) as gw:
            s3 = gw.client()
            scenarios.verify(s3, bucket, state)  # the earlier rounds' objects, untouched
            outcome = scenarios.verify_load(s3, bucket, load)
            state.update(outcome.expected)
            for what, n in outcome.counts.items():
                totals.counts[what] = totals.counts.get(what, 0) + n
            scenarios.quiesce([gw.endpoint])
            assert "Traceback" not in gw.log(), gw.log()[-5000:]
        found = scenarios.check_after_stop(gw.env, strict=False)
        totals.counts["unreferenced before repair"] = (
            totals.counts.get("unreferenced before repair", 0) + found)
        totals.counts["rounds"] = round_ + 1
    # Once more from scratch: everything acknowledged in every round is still there.
    with start_gateway(workdir, locations, config=CONFIG, env=env) as gw:
        scenarios.verify(gw.client(), bucket, state)
    totals.counts["objects checked"] = sum(v is not None for v in state.values())
    return totals


def test_kill_9_rounds_file_sqlite(tmp_path: Path) -> None:
    """5 rounds (at least 2, no new one after 90 s) of kill -9 under concurrent writes."""
    started = time.monotonic()
    totals = crash_rounds(tmp_path, ROUNDS)
    print(f"\ncrash file-sqlite: {dict(sorted(totals.counts.items()))} in "
          f"{time.monotonic() - started:.1f}s")


@pytest.mark.aws_s3
def test_kill_9_round_aws_s3(tmp_path: Path, aws_s3_moto: Any) -> None:
    """1 round of kill -9 under concurrent writes to an aws_s3 location (moto)."""
    started = time.monotonic()
    locations = {"crashcloud": {"type": "aws_s3", "legacyAwsBehavior": False,
                                "details": aws_s3_moto.details(aws_s3_moto.create_bucket())}}
    totals = crash_rounds(tmp_path, 1, locations=locations, location="crashcloud",
                          seed="crash-aws")
    print(f"\ncrash aws_s3: {dict(sorted(totals.counts.items()))} in "
          f"{time.monotonic() - started:.1f}s")
