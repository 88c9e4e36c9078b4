"""Slow, silent and vanishing clients: header, idle and body timeouts, the connection cap, and
a client cut off mid-upload. A gateway of its own with short timeouts, raw sockets only (a
client library would retry or pool connections and hide what the gateway does)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import REPO, Gateway, start_gateway, write_config
from tests.s3.test_hostile_input import log_since, read_response, s3_error, signed_headers

LIMITS = {"maxOpen": 6, "headerTimeout": 1, "idleTimeout": 1.5, "bodyTimeout": 1}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("connections")
    # One process: maxOpen is per worker (it guards each process's open files).
    with start_gateway(workdir, config={"connections": LIMITS, "workers": 1}) as gw:
        client = gw.client()
        client.create_bucket(Bucket="conn-bucket")
        client.close()
        yield gw


def connect(gateway: Gateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gateway.port), timeout=10)


def wait_closed(sock: socket.socket, limit: float = 8) -> tuple[float, bytes]:
    """Seconds until the gateway closes `sock`, and what it sent before."""
    started = time.monotonic()
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"still open after {limit}s (got {data!r})")
    return time.monotonic() - started, data


def request_bytes(gateway: Gateway, method: str, path: str, extra: str = "") -> bytes:
    headers = signed_headers(gateway, method, path)
    return (f"{method} {path} HTTP/1.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + extra + "\r\n").encode()


def exists(gateway: Gateway, key: str) -> bool:
    client = gateway.client()
    try:
        client.head_object(Bucket="conn-bucket", Key=key)
        return True
    except ClientError:
        return False
    finally:
        client.close()


def drain_idle(gateway: Gateway) -> None:
    """Let the gateway close any connection an earlier test left open (idle timeout)."""
    time.sleep(LIMITS["idleTimeout"] + 1)


def test_silent_connection_is_closed(gateway: Gateway) -> None:
    with connect(gateway) as sock:
        took, data = wait_closed(sock)
    assert data == b""  # nothing was asked, nothing is answered
    assert took < LIMITS["idleTimeout"] + 1.5


def test_slow_headers_are_cut(gateway: Gateway) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        took, data = wait_closed(sock)
    assert took < LIMITS["headerTimeout"] + 1.5
    status, headers, body = read_response_bytes(data)
    assert status == 400 and s3_error(status, headers, body) == "RequestTimeout"


def test_dripped_headers_are_cut(gateway: Gateway) -> None:
    """A byte every 0.2 s keeps a connection alive by no idle rule: the header deadline does."""
    started = time.monotonic()
    with connect(gateway) as sock:
        with pytest.raises(OSError):
            for byte in b"GET / HTTP/1.1\r\nHost: " + b"x" * 200:
                sock.sendall(bytes([byte]))
                time.sleep(0.2)
    assert time.monotonic() - started < LIMITS["headerTimeout"] + 2


def test_idle_keep_alive_is_closed(gateway: Gateway) -> None:
    with connect(gateway) as sock:
        sock.sendall(request_bytes(gateway, "GET", "/conn-bucket"))
        status, _, _ = read_response(sock)
        assert status == 200
        took, data = wait_closed(sock)
    assert data == b"" and took < LIMITS["idleTimeout"] + 1.5
    # A connection that keeps asking is not idle: three requests 1 s apart on one socket.
    with connect(gateway) as sock:
        for _ in range(3):
            sock.sendall(request_bytes(gateway, "GET", "/conn-bucket"))
            assert read_response(sock)[0] == 200
            time.sleep(1)


def test_stalled_body_times_out_and_stores_nothing(gateway: Gateway) -> None:
    mark = len(gateway.log())
    with connect(gateway) as sock:
        sock.sendall(request_bytes(gateway, "PUT", "/conn-bucket/stalled",
                                   "Content-Length: 1000\r\n") + b"x" * 100)
        took, data = wait_closed(sock)
    assert took < LIMITS["bodyTimeout"] + 1.5
    status, headers, body = read_response_bytes(data)
    assert status == 400 and s3_error(status, headers, body) == "RequestTimeout"
    assert not exists(gateway, "stalled")
    logged = log_since(gateway, mark, '"RequestTimeout"')
    assert '"errorCode": "RequestTimeout"' in logged and "Traceback" not in logged
    # A slow but steady body is not cut: 5 pieces, 0.5 s apart (2 s in all, > bodyTimeout).
    with connect(gateway) as sock:
        sock.sendall(request_bytes(gateway, "PUT", "/conn-bucket/steady",
                                   "Content-Length: 50\r\n"))
        for _ in range(5):
            time.sleep(0.5)
            sock.sendall(b"y" * 10)
        assert read_response(sock)[0] == 200
    assert exists(gateway, "steady")


def test_unread_body_after_early_answer_is_not_a_slow_header(gateway: Gateway) -> None:
    """An answer sent before the body was read (NoSuchBucket): the rest of the body that
    follows slowly is that request's, not the headers of a next one."""
    with connect(gateway) as sock:
        sock.sendall(request_bytes(gateway, "PUT", "/no-such-conn-bucket/k",
                                   "Content-Length: 30\r\n") + b"a" * 10)
        status, headers, body = read_response(sock)
        assert status == 404 and s3_error(status, headers, body) == "NoSuchBucket"
        for _ in range(4):  # 2 s in all, past headerTimeout
            time.sleep(0.5)
            sock.sendall(b"b" * 5)
        sock.sendall(request_bytes(gateway, "GET", "/conn-bucket"))
        assert read_response(sock)[0] == 200


def test_stalled_download_is_cut(gateway: Gateway) -> None:
    """A client that stops reading its answer must not hold the operation (and its backend
    stream) forever."""
    client = gateway.client()
    client.put_object(Bucket="conn-bucket", Key="large", Body=b"L" * (24 * 1024 * 1024))
    client.close()
    mark = len(gateway.log())
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # absorb as little as it can
    sock.settimeout(10)
    with sock:
        sock.connect(("127.0.0.1", gateway.port))
        sock.sendall(request_bytes(gateway, "GET", "/conn-bucket/large"))
        time.sleep(LIMITS["bodyTimeout"] + 2)  # read nothing meanwhile
        received = 0
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
    assert received < 24 * 1024 * 1024  # cut short, not delivered in full
    logged = log_since(gateway, mark, '"get_object"')
    assert "read nothing of its answer" in logged and "Traceback" not in logged


def test_connection_cap(gateway: Gateway) -> None:
    drain_idle(gateway)
    held = []
    try:
        for _ in range(LIMITS["maxOpen"]):  # all admitted, each one answered
            sock = connect(gateway)
            held.append(sock)
            sock.sendall(request_bytes(gateway, "GET", "/conn-bucket"))
            assert read_response(sock)[0] == 200
        with connect(gateway) as extra:
            extra.sendall(request_bytes(gateway, "GET", "/conn-bucket"))
            status, headers, body = read_response(extra)
            assert status == 503 and s3_error(status, headers, body) == "SlowDown"
            took, _ = wait_closed(extra, 5)
        assert took < 3
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    with connect(gateway) as sock:  # room again
        sock.sendall(request_bytes(gateway, "GET", "/conn-bucket"))
        assert read_response(sock)[0] == 200


def test_client_cut_mid_put(gateway: Gateway) -> None:
    mark = len(gateway.log())
    with connect(gateway) as sock:
        sock.sendall(request_bytes(gateway, "PUT", "/conn-bucket/cut",
                                   "Content-Length: 1000000\r\n") + b"z" * 300_000)
        time.sleep(0.3)
    logged = log_since(gateway, mark, '"ClientDisconnected"')
    assert "Traceback" not in logged
    warnings = [line for line in logged.splitlines() if "WARNING" in line and "cut" in line]
    assert len(warnings) == 1 and "ClientDisconnected after 300000" in warnings[0]
    access = [json.loads(line) for line in logged.splitlines()
              if line.startswith('{"time"') and '"put_object"' in line]
    assert len(access) == 1
    assert access[0]["errorCode"] == "ClientDisconnected" and access[0]["status"] == 499
    assert access[0]["bytesIn"] == 300_000
    assert not exists(gateway, "cut")


def test_unparseable_request_is_xml(gateway: Gateway) -> None:
    mark = len(gateway.log())
    for wire in (b"GET / HTTP/1.1\r\n\r\n",  # no Host
                 b"NOT-A-METHOD\x01 / HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"):
        with connect(gateway) as sock:
            sock.sendall(wire)
            status, headers, body = read_response(sock)
        assert status == 400
        assert s3_error(status, headers, body) in ("BadRequest", "RequestHeaderSectionTooLarge")
    time.sleep(0.3)
    assert "Traceback" not in log_since(gateway, mark)


def test_bad_connection_settings_refuse_to_start(tmp_path: Path) -> None:
    env = write_config(tmp_path, 1, None, {"connections": {"idleTimeout": -1}})
    run = subprocess.run([sys.executable, "-m", "gateway"], cwd=REPO, capture_output=True,
                         env={"PATH": "/usr/bin:/bin", **env}, timeout=30, text=True)
    assert run.returncode != 0
    assert 'key "connections.idleTimeout": must be a positive number' in run.stderr
    assert "Traceback" not in run.stderr


def read_response_bytes(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """read_response over bytes already received."""
    left, right = socket.socketpair()
    with left, right:
        left.sendall(data)
        left.shutdown(socket.SHUT_WR)
        return read_response(right)

