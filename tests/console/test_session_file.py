"""With several workers, console sessions are shared through a file of the run folder
(gateway/workers.py). That file must not hold what a browser presents: whoever can read it
(a backup of $TMPDIR, another local user on a badly set up machine) must not be able to take a
session over. It holds SHA-256 of the session id, never the id (the cookie's value), and it is
readable by the gateway's user only (0600, with its -wal and -shm)."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import stat
from pathlib import Path

import requests

from gateway.console.session import COOKIE
from tests.gatewayproc import ACCESS_KEY, SECRET_KEY, start_gateway
from tests.test_workers import wait_both


def login(base: str) -> tuple[requests.Session, str]:
    http = requests.Session()
    http.headers["Connection"] = "close"  # each request on a new connection: any worker
    form = http.get(f"{base}/_/console/login", timeout=10).text
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    answer = http.post(f"{base}/_/console/login", timeout=10, headers={"Origin": base},
                       data={"csrf": token, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY})
    assert answer.url.endswith("/_/console/buckets"), answer.url
    csrf = re.search(r'name="csrf" content="([^"]+)"', answer.text).group(1)  # type: ignore[union-attr]
    return http, csrf


def test_the_sessions_file_holds_no_session_id_and_is_0600(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"  # the gateway's $TMPDIR, where its run folder is made
    temp.mkdir()
    with start_gateway(tmp_path / "gw", config={"workers": 2},
                       env={"TMPDIR": str(temp)}) as gateway:
        base = gateway.endpoint
        wait_both(gateway)
        http, csrf = login(base)
        cookie = http.cookies.get(COOKIE)
        assert cookie and len(cookie) >= 32
        seen = set()
        for _ in range(20):  # the session is found by every worker: through the file
            page = http.get(f"{base}/_/console/buckets", timeout=10, allow_redirects=False)
            assert page.status_code == 200, page.headers.get("Location")
            seen.add(page.headers.get("x-gateway-worker"))
        assert seen == {"0", "1"}

        [database] = temp.glob("s3gw-workers-*/console-sessions.sqlite3")
        files = [p for p in database.parent.glob("console-sessions.sqlite3*") if p.is_file()]
        assert database in files
        written = b"".join(p.read_bytes() for p in files)
        for form in (cookie.encode(), cookie.encode("utf-16-le")):
            assert form not in written
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        # What the row is keyed by: the id's hash (so the file looked at is the right one).
        hashed = hashlib.sha256(cookie.encode()).hexdigest()
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            assert db.execute("SELECT id FROM sessions").fetchall() == [(hashed,)]

        # A cookie made of what the file holds is no session.
        thief = requests.get(f"{base}/_/console/buckets", cookies={COOKIE: hashed},
                             timeout=10, allow_redirects=False)
        assert thief.status_code == 303 and "/_/console/login" in thief.headers["Location"]

        http.post(f"{base}/_/console/logout", data={"csrf": csrf}, headers={"Origin": base},
                  timeout=10)
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            assert db.execute("SELECT COUNT(*) FROM sessions").fetchone() == (0,)

