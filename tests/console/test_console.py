"""The web console, driven in headless Chromium against a real gateway: log in, create a
bucket, upload 20 MiB (multipart through presigned part URLs), browse into its folder,
download it, share it, delete it, log out; a wrong secret; another account's view."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from tests.console.conftest import SCREENSHOTS
from tests.gatewayproc import (
    ACCESS_KEY,
    ACCESS_KEY2,
    SECRET_KEY,
    SECRET_KEY2,
    Gateway,
    start_gateway,
)

REPO = Path(__file__).resolve().parents[2]
BUCKET = "console-flow"
BIG = 20 * 1024 * 1024


def wait(driver: Any, condition: Any, timeout: float = 20) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def shot(driver: Any, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def login(driver: Any, base: str, access: str, secret: str) -> None:
    driver.get(f"{base}/_/console/login")
    driver.find_element(By.ID, "access_key").clear()
    driver.find_element(By.ID, "access_key").send_keys(access)
    driver.find_element(By.ID, "secret_key").send_keys(secret)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()


def logout(driver: Any) -> None:
    driver.find_element(By.ID, "logout").click()
    wait(driver, lambda d: d.current_url.endswith("/_/console/login"))


def accept_confirm(driver: Any) -> None:
    def alert(d: Any) -> Any:
        try:
            return d.switch_to.alert
        except NoAlertPresentException:
            return False

    wait(driver, alert).accept()


def severe(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_browser_at_root_gets_the_console_s3_clients_do_not(console_gateway: Gateway) -> None:
    answer = requests.get(console_gateway.endpoint + "/", allow_redirects=False, timeout=10,
                          headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/_/console/"
    # Without asking for HTML, or with S3 authentication, / stays the S3 service.
    plain = requests.get(console_gateway.endpoint + "/", allow_redirects=False, timeout=10)
    assert plain.status_code == 403 and b"<Code>AccessDenied</Code>" in plain.content
    assert isinstance(console_gateway.client().list_buckets()["Buckets"], list)
    # The console's own port redirects its root too.
    port = console_gateway.extra["console_port"]
    other = requests.get(f"http://127.0.0.1:{port}/", allow_redirects=False, timeout=10)
    assert other.status_code == 303 and other.headers["Location"] == "/_/console/"


def test_wrong_secret_is_refused(console_gateway: Gateway, browser: Any) -> None:
    login(browser, console_gateway.endpoint, ACCESS_KEY, "not-the-secret")
    error = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".flash.error"))
    assert "Wrong access key or secret key" in error.text
    assert browser.get_cookie("s3gw_console") is None
    shot(browser, "login-refused")
    # Still logged out: a page sends the browser back to the login form.
    browser.get(f"{console_gateway.endpoint}/_/console/buckets")
    assert "/_/console/login" in browser.current_url
    # The secret is nowhere in the page or the cookies.
    assert "not-the-secret" not in browser.page_source
    browser.get_log("browser")  # the refused login's 401 is expected: start the flow clean


def test_full_flow(console_gateway: Gateway, browser: Any, downloads: Path,
                   tmp_path: Path) -> None:
    base = console_gateway.endpoint
    s3 = console_gateway.client()
    login(browser, base, ACCESS_KEY, SECRET_KEY)
    wait(browser, lambda d: d.current_url.endswith("/_/console/buckets"))
    session_cookie = browser.get_cookie("s3gw_console")
    assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Strict"
    assert SECRET_KEY not in str(browser.get_cookies()) and SECRET_KEY not in browser.page_source

    # Locations: every location with its health.
    browser.find_element(By.LINK_TEXT, "Locations").click()
    rows = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-location]"))
    states = {row.get_attribute("data-location"):
              row.find_element(By.CSS_SELECTOR, "[data-field=state]").text for row in rows}
    assert states == {"us-east-1": "up", "fast": "up"}
    shot(browser, "locations")

    # Buckets: create one on a chosen location, turn versioning on.
    browser.find_element(By.LINK_TEXT, "Buckets").click()
    browser.find_element(By.ID, "bucket-name").send_keys(BUCKET)
    browser.find_element(By.CSS_SELECTOR, "#bucket-location option[value=fast]").click()
    browser.find_element(By.CSS_SELECTOR, "#create-bucket button[type=submit]").click()
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-bucket='{BUCKET}']"))
    assert "fast" in row.text
    assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == "fast"
    row.find_element(By.XPATH, ".//button[text()='Enable']").click()
    wait(browser, staleness_of(row))
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-bucket='{BUCKET}']"))
    assert "Enabled" in row.text
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    shot(browser, "buckets")

    # Objects: upload 20 MiB into a folder, with the progress bar.
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(BIG))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    row.find_element(By.LINK_TEXT, BUCKET).click()
    wait(browser, lambda d: d.find_element(By.ID, "upload-file")).send_keys(str(big))
    browser.find_element(By.ID, "upload-name").send_keys("folder/big.bin")
    browser.find_element(By.ID, "upload-button").click()
    status = browser.find_element(By.ID, "upload-status")
    wait(browser, lambda d: status.get_attribute("data-done") or status.get_attribute(
        "data-failed"), timeout=60)
    assert status.get_attribute("data-done"), status.text
    head = s3.head_object(Bucket=BUCKET, Key="folder/big.bin")
    assert head["ContentLength"] == BIG
    assert head["ETag"].endswith('-3"')  # three presigned 8 MiB parts, as the browser sent them
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    # Browse into the folder (the page reloads after the upload).
    folder = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "a[data-folder='folder/']"))
    shot(browser, "objects")
    folder.click()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-key='folder/big.bin']"))
    shot(browser, "folder")

    # Download it (a redirect to a presigned GET): the same bytes.
    for old in downloads.iterdir():
        old.unlink()
    browser.find_element(By.CSS_SELECTOR, "a[data-download='folder/big.bin']").click()
    target = downloads / "big.bin"
    wait(browser, lambda d: target.exists() and not list(downloads.glob("*.crdownload")),
         timeout=60)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest

    # The bucket list counts it.
    folder_page = browser.current_url
    browser.find_element(By.LINK_TEXT, "Buckets").click()
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-bucket='{BUCKET}']"))
    assert "20.0 MiB" in row.text and " 1 " in f" {row.text} "
    shot(browser, "buckets-with-objects")
    browser.get(folder_page)

    # Details: metadata, versions, and a shared link anyone can fetch.
    browser.find_element(By.LINK_TEXT, "big.bin").click()
    props = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "table.props"))
    assert str(BIG) in props.text and head["VersionId"] in browser.page_source
    browser.find_element(By.CSS_SELECTOR, "#share select option[value='3600']").click()
    browser.find_element(By.CSS_SELECTOR, "#share button[type=submit]").click()
    link = wait(browser, lambda d: d.find_element(By.ID, "share-url")).get_attribute("value")
    assert link.startswith(base + "/" + BUCKET + "/folder/big.bin?") and "X-Amz-Expires=3600" in link
    shared = requests.get(link, timeout=30)
    assert shared.status_code == 200
    assert hashlib.sha256(shared.content).hexdigest() == digest
    shot(browser, "object")

    # Delete it from the listing (after a confirmation).
    browser.find_element(By.CSS_SELECTOR, ".bar a.button").click()  # back to the folder
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-key='folder/big.bin']"))
    row.find_element(By.XPATH, ".//button[text()='Delete']").click()
    accept_confirm(browser)
    wait(browser, lambda d: "Deleted folder/big.bin" in d.page_source)
    assert not browser.find_elements(By.CSS_SELECTOR, "tr[data-key='folder/big.bin']")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="folder/big.bin")
    # Versioned: its page still lists the old version under the delete marker.
    browser.get(f"{base}/_/console/object?bucket={BUCKET}&key=folder/big.bin")
    assert "No current version" in browser.page_source
    assert "delete marker" in browser.page_source and head["VersionId"] in browser.page_source

    browser.find_element(By.LINK_TEXT, "Jobs").click()
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Jobs")
    shot(browser, "jobs")
    errors = severe(browser)
    assert errors == [], errors

    logout(browser)
    assert browser.get_cookie("s3gw_console") is None
    browser.get(f"{base}/_/console/buckets")
    assert "/_/console/login" in browser.current_url
    shot(browser, "login")
    if os.environ.get("CONSOLE_DOCS_SCREENSHOT"):  # the README's picture, refreshed on demand
        shutil.copy(SCREENSHOTS / "buckets-with-objects.png", REPO / "docs" / "console.png")


def test_another_account_sees_none_of_it(console_gateway: Gateway, browser: Any) -> None:
    s3 = console_gateway.client()
    s3.create_bucket(Bucket="only-account-one")
    s3.put_object(Bucket="only-account-one", Key="secret.txt", Body=b"mine")
    base = console_gateway.endpoint
    login(browser, base, ACCESS_KEY2, SECRET_KEY2)
    wait(browser, lambda d: d.current_url.endswith("/_/console/buckets"))
    assert "only-account-one" not in browser.page_source
    assert not browser.find_elements(By.CSS_SELECTOR, "tr[data-bucket]")
    shot(browser, "buckets-account2")
    # Going to it by name is refused by S3 itself, as for any client of this account.
    browser.get(f"{base}/_/console/b/only-account-one")
    assert "AccessDenied" in browser.find_element(By.CSS_SELECTOR, ".flash.error").text
    assert "secret.txt" not in browser.page_source
    browser.get(f"{base}/_/console/download?bucket=only-account-one&key=secret.txt")
    assert "mine" not in browser.page_source and "AccessDenied" in browser.page_source
    browser.get(f"{base}/_/console/buckets")
    logout(browser)
    browser.get_log("browser")  # the refusals above are logged as failed loads: expected


def test_console_on_its_own_port(console_gateway: Gateway, browser: Any, tmp_path: Path) -> None:
    """On console.port: the same pages, and uploads PUT to the console's own origin."""
    base = f"http://127.0.0.1:{console_gateway.extra['console_port']}"
    s3 = console_gateway.client()
    s3.create_bucket(Bucket="console-port")
    login(browser, base, ACCESS_KEY, SECRET_KEY)
    wait(browser, lambda d: d.current_url.endswith("/_/console/buckets"))
    browser.get(f"{base}/_/console/b/console-port")
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello from the console port\n")
    wait(browser, lambda d: d.find_element(By.ID, "upload-file")).send_keys(str(small))
    browser.find_element(By.ID, "upload-button").click()
    status = browser.find_element(By.ID, "upload-status")
    wait(browser, lambda d: status.get_attribute("data-done") or status.get_attribute(
        "data-failed"), timeout=30)
    assert status.get_attribute("data-done"), status.text
    body = s3.get_object(Bucket="console-port", Key="small.txt")["Body"].read()
    assert body == small.read_bytes()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-key='small.txt']"))
    errors = severe(browser)
    assert errors == [], errors
    logout(browser)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and browser.get_cookie("s3gw_console"):
        time.sleep(0.05)
    assert browser.get_cookie("s3gw_console") is None


def test_large_bucket_pages_with_continuation_tokens(console_gateway: Gateway,
                                                     browser: Any) -> None:
    s3 = console_gateway.client()
    s3.create_bucket(Bucket="console-pages",
                     CreateBucketConfiguration={"LocationConstraint": "fast"})
    keys = [f"k{n:03d}" for n in range(130)]
    for key in keys:
        s3.put_object(Bucket="console-pages", Key=key, Body=b"x")
    base = console_gateway.endpoint
    # Logged out, the page sends the browser to log in, and back to the page after.
    browser.get(f"{base}/_/console/b/console-pages")
    wait(browser, lambda d: d.find_element(By.ID, "access_key")).send_keys(ACCESS_KEY)
    browser.find_element(By.ID, "secret_key").send_keys(SECRET_KEY)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait(browser, lambda d: d.current_url.endswith("/_/console/b/console-pages"))
    seen = [row.get_attribute("data-key")
            for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-key]")]
    assert seen == keys[:100]
    browser.find_element(By.ID, "next-page").click()
    wait(browser, lambda d: "token=" in d.current_url)
    seen += [row.get_attribute("data-key")
             for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-key]")]
    assert seen == keys
    assert not browser.find_elements(By.ID, "next-page")
    logout(browser)


def _session(base: str, access: str = ACCESS_KEY, secret: str = SECRET_KEY) -> tuple[
        requests.Session, str]:
    """A logged-in requests session and its CSRF token, through the real login form."""
    http = requests.Session()
    form = http.get(f"{base}/_/console/login", timeout=10).text
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    answer = http.post(f"{base}/_/console/login", timeout=10, headers={"Origin": base},
                       data={"csrf": token, "access_key": access, "secret_key": secret})
    assert answer.url.endswith("/_/console/buckets"), answer.url
    csrf = re.search(r'name="csrf" content="([^"]+)"', answer.text).group(1)  # type: ignore[union-attr]
    return http, csrf


def test_forms_need_the_session_token_and_origin(console_gateway: Gateway) -> None:
    base = console_gateway.endpoint
    assert requests.get(f"{base}/_/console/api/locations", timeout=10).status_code == 401
    http, csrf = _session(base)
    health = http.get(f"{base}/_/console/api/locations", timeout=10).json()  # the live refresh
    assert health["us-east-1"]["state"] == "up" and health["fast"]["type"] in ("mem", "file")  # file under S3GW_TEST_WORKERS
    create = f"{base}/_/console/buckets/create"
    fields = {"bucket": "csrf-victim", "location": "us-east-1"}
    for data, origin in (({**fields}, base),                        # no token
                         ({**fields, "csrf": "forged"}, base),      # a wrong one
                         ({**fields, "csrf": csrf}, "http://evil.example")):  # another site
        refused = http.post(create, data=data, headers={"Origin": origin}, timeout=10,
                            allow_redirects=False)
        assert refused.status_code == 403
    api = http.post(f"{base}/_/console/api/upload/start", timeout=10,
                    json={"bucket": "csrf-victim", "key": "k", "size": 1})
    assert api.status_code == 403
    names = [b["Name"] for b in console_gateway.client().list_buckets()["Buckets"]]
    assert "csrf-victim" not in names
    # The right token from this origin works; after logout the session is gone.
    done = http.post(create, data={**fields, "csrf": csrf}, headers={"Origin": base},
                     timeout=10, allow_redirects=False)
    assert done.status_code == 303
    console_gateway.client().head_bucket(Bucket="csrf-victim")
    http.post(f"{base}/_/console/logout", data={"csrf": csrf}, headers={"Origin": base},
              timeout=10)
    after = http.get(f"{base}/_/console/buckets", timeout=10, allow_redirects=False)
    assert after.status_code == 303 and "/_/console/login" in after.headers["Location"]



def test_upload_api_empty_file_and_abort(console_gateway: Gateway) -> None:
    """The upload calls the page's script makes: an empty file is one empty part; an
    aborted upload leaves nothing behind."""
    base = console_gateway.endpoint
    s3 = console_gateway.client()
    s3.create_bucket(Bucket="console-api")
    http, csrf = _session(base)
    headers = {"X-CSRF-Token": csrf, "Origin": base}

    def call(path: str, **body: Any) -> Any:
        answer = http.post(f"{base}/_/console/api/upload/{path}", json=body, headers=headers,
                           timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    target = {"bucket": "console-api", "key": "empty"}
    start = call("start", **target, size=0, type="text/plain")
    assert start["parts"] == 1
    url = call("sign", **target, uploadId=start["uploadId"], first=1, last=1)["urls"]["1"]
    put = requests.put(url, data=b"", timeout=10)
    assert put.status_code == 200
    call("complete", **target, uploadId=start["uploadId"], etags=[put.headers["ETag"]])
    head = s3.head_object(Bucket="console-api", Key="empty")
    assert head["ContentLength"] == 0 and head["ContentType"] == "text/plain"

    aborted = call("start", **{**target, "key": "gone"}, size=5)
    call("abort", **{**target, "key": "gone"}, uploadId=aborted["uploadId"])
    assert s3.list_multipart_uploads(Bucket="console-api").get("Uploads", []) == []
    # Someone else's bucket: refused by S3, answered as S3 did.
    http2, csrf2 = _session(base, ACCESS_KEY2, SECRET_KEY2)
    refused = http2.post(f"{base}/_/console/api/upload/start", timeout=10,
                         headers={"X-CSRF-Token": csrf2, "Origin": base},
                         json={**target, "size": 1})
    assert refused.status_code == 403 and refused.json()["error"] == "AccessDenied"


def test_idle_session_ends(tmp_path: Path) -> None:
    with start_gateway(tmp_path, config={"console": {"sessionMinutes": 0.02}}) as gateway:
        http, _ = _session(gateway.endpoint)  # 1.2 s idle allowed
        assert http.get(f"{gateway.endpoint}/_/console/buckets", timeout=10,
                        allow_redirects=False).status_code == 200
        time.sleep(1.5)
        ended = http.get(f"{gateway.endpoint}/_/console/buckets", timeout=10,
                         allow_redirects=False)
        assert ended.status_code == 303 and "/_/console/login" in ended.headers["Location"]
