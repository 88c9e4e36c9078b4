"""The encryption group: what gateway/crypto costs, in-process, against plaintext passthrough.

256 MiB flows through the same async pipeline twice per round: once through two passthrough
stages (what a plaintext PUT then GET does to the bytes: nothing), once through encrypt then
decrypt (gateway/crypto/stream.py). Rounds interleave and the best of each is kept; CPU time is
the process's (both stages run in this one thread). Then, per chunk size (64 KiB, 256 KiB,
1 MiB): encrypt-only and encrypt+decrypt speed, and what a 4 KiB ranged GET must fetch and
authenticate.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from bench.measure import Figure, MiB, md5_speed
from gateway.crypto.stream import (
    DEFAULT_CHUNK_SIZE,
    SealedStream,
    StreamParams,
    ciphertext_size,
    plan_range,
)

SIZE = 256 * MiB
GiB = 1024 * MiB
CHUNK_SIZES = (64 * 1024, 256 * 1024, 1024 * 1024)


@dataclass
class Timing:
    wall: float
    cpu: float

    @property
    def mb_s(self) -> float:
        return SIZE / MiB / self.wall

    @property
    def cpu_s_per_gib(self) -> float:
        return self.cpu * GiB / SIZE


async def _source(block: bytes) -> AsyncIterator[bytes]:
    for _ in range(SIZE // len(block)):
        yield block


async def _passthrough(stream: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    async for piece in stream:
        yield piece


async def _drain(stream: AsyncIterable[bytes]) -> int:
    total = 0
    async for piece in stream:
        total += len(piece)
    return total


def _timed(pipeline: AsyncIterable[bytes], expect: int) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    total = asyncio.run(_drain(pipeline))
    timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
    if total != expect:
        raise RuntimeError(f"pipeline moved {total} bytes, expected {expect}")
    return timing


def _plain(block: bytes) -> Timing:
    return _timed(_passthrough(_passthrough(_source(block))), SIZE)


def _encrypt_only(block: bytes, chunk: int) -> Timing:
    key = os.urandom(32)
    sealed = SealedStream(key, StreamParams.new(chunk))
    return _timed(sealed.encrypt(_source(block)), ciphertext_size(SIZE, chunk))


def _round_trip(block: bytes, chunk: int) -> Timing:
    key = os.urandom(32)
    params = StreamParams.new(chunk)
    sealed = SealedStream(key, params)
    read = plan_range(params, SIZE, 0, SIZE)
    return _timed(sealed.decrypt(read, sealed.encrypt(_source(block))), SIZE)


def _best(timings: list[Timing]) -> Timing:
    return min(timings, key=lambda t: t.wall)


def _ranged_reads(chunk: int, count: int = 2000) -> tuple[float, float]:
    """(stored bytes fetched per 4 KiB ranged GET, microseconds of CPU to authenticate and
    decrypt them), over random offsets of a 256 MiB object."""
    key = os.urandom(32)
    params = StreamParams.new(chunk)
    sealed = SealedStream(key, params)
    # Seal the few chunks the reads touch: the cost is per chunk, not per object.
    rng = random.Random(1)
    fetched = 0
    plain_chunk = os.urandom(chunk)
    cipher_chunks = {i: sealed.seal_chunk(i, plain_chunk, False) for i in range(4)}
    cpu = time.process_time()
    for _ in range(count):
        offset = rng.randrange(chunk, SIZE - chunk - 4096)
        read = plan_range(params, SIZE, offset, 4096)
        fetched += read.cipher_length
        for index in range(read.first_chunk, read.last_chunk + 1):
            # One of the pre-sealed chunks: opening it costs what the real chunk would.
            sealed.open_chunk(index % 4, cipher_chunks[index % 4], False)
    return fetched / count, (time.process_time() - cpu) / count * 1e6


def run(rounds: int) -> tuple[list[Figure], list[str],
                             list[tuple[str, float, str, bool | None]]]:
    """Figures, notes and targets (name, value, goal, met) of the encryption group."""
    block = os.urandom(MiB)
    figures: list[Figure] = []
    notes: list[str] = []
    plain: list[Timing] = []
    crypt: list[Timing] = []
    for number in range(max(2, rounds)):
        order = (0, 1) if number % 2 == 0 else (1, 0)
        for which in order:
            if which == 0:
                plain.append(_plain(block))
            else:
                crypt.append(_round_trip(block, DEFAULT_CHUNK_SIZE))
    p, c = _best(plain), _best(crypt)
    ratio = c.mb_s / p.mb_s
    fig_plain = Figure("crypto_256m_passthrough", "in-process", mb_s=p.mb_s,
                       cpu_ms_op=p.cpu * 1000, ops=len(plain))
    fig_crypt = Figure("crypto_256m_encrypt_decrypt", "in-process", mb_s=c.mb_s,
                       cpu_ms_op=c.cpu * 1000, ops=len(crypt),
                       ratios={"mbs_vs_passthrough": ratio})
    figures += [fig_plain, fig_crypt]
    extra_cpu = max(c.cpu - p.cpu, 0.0) * GiB / SIZE
    notes.append(f"encryption, 256 MiB in-process, {DEFAULT_CHUNK_SIZE // 1024} KiB chunks: "
                 f"encrypt+decrypt {c.mb_s:.0f} MB/s vs plaintext passthrough {p.mb_s:.0f} "
                 f"MB/s in the same run ({ratio:.2f}x); {c.cpu_s_per_gib:.2f} s CPU per GiB "
                 f"encrypted and decrypted ({extra_cpu:.2f} s more than passthrough)")
    for chunk in CHUNK_SIZES:
        enc = _best([_encrypt_only(block, chunk) for _ in range(max(1, rounds))])
        both = _best([_round_trip(block, chunk) for _ in range(max(1, rounds))])
        fetched, micros = _ranged_reads(chunk)
        label = f"{chunk // 1024}k"
        figures.append(Figure(f"crypto_encrypt_256m_chunk_{label}", "in-process",
                              mb_s=enc.mb_s, cpu_ms_op=enc.cpu * 1000, ops=1))
        figures.append(Figure(f"crypto_roundtrip_256m_chunk_{label}", "in-process",
                              mb_s=both.mb_s, cpu_ms_op=both.cpu * 1000, ops=1))
        overhead = ciphertext_size(SIZE, chunk) / SIZE - 1
        notes.append(f"chunk {label}: encrypt {enc.mb_s:.0f} MB/s ({enc.cpu_s_per_gib:.2f} s "
                     f"CPU/GiB), encrypt+decrypt {both.mb_s:.0f} MB/s "
                     f"({both.cpu_s_per_gib:.2f} s CPU/GiB); stored overhead "
                     f"{overhead * 100:.4f} %; a 4 KiB ranged GET fetches {fetched / 1024:.0f} "
                     f"KiB and spends {micros:.0f} us authenticating it")
    # A PUT already MD5s every byte (on one core): encryption's CPU per GiB against MD5's says
    # what an encrypted PUT can keep of a plaintext one when both are CPU-bound (0.43x -> 0.7x).
    md5_s_per_gib = GiB / MiB / md5_speed()
    encrypt_cpu = _best([_encrypt_only(block, DEFAULT_CHUNK_SIZE)
                         for _ in range(max(1, rounds))]).cpu_s_per_gib
    vs_md5 = encrypt_cpu / md5_s_per_gib
    fig_crypt.ratios["encrypt_cpu_vs_md5"] = vs_md5
    notes.append(f"encrypt alone {encrypt_cpu:.2f} s CPU per GiB = {vs_md5:.2f}x one MD5 pass "
                 f"({md5_s_per_gib:.2f} s per GiB), so a CPU-bound encrypted PUT keeps about "
                 f"{1 / (1 + vs_md5):.2f}x of a plaintext one")
    targets = [("crypto encrypt CPU per GiB vs one MD5 pass", vs_md5,
                "<= 0.43x (PUT >= 0.7x)", vs_md5 <= 0.43),
               ("crypto_256m encrypt+decrypt vs passthrough (in-process, report only)", ratio,
                "-", None)]
    return figures, notes, targets


if __name__ == "__main__":
    figs, lines, goals = run(2)
    for fig in figs:
        print(fig.json())
    print("\n".join(lines))
    print(goals)
