"""End to end with real S3 clients: the aws cli, s3cmd (SigV2 and SigV4), rclone and curl on
presigned URLs, against one gateway process (file location, SQLite metadata).

Every tool gets its own config under a temporary HOME; nothing reads or writes the user's home.
The large-file test moves E2E_BIG_FILE_MIB MiB (default 1024, the issue's 1 GiB) through
`aws s3 cp` as a multipart upload with 8 MiB parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import (
    ACCESS_KEY,
    ACCESS_KEY2,
    SECRET_KEY,
    SECRET_KEY2,
    Gateway,
    start_gateway,
)

pytestmark = pytest.mark.clients

MIB = 1024 * 1024
AWS_CHUNK = 8 * MIB
BIG_FILE_MIB = int(os.environ.get("E2E_BIG_FILE_MIB", "1024"))

# Names that tend to break signing or URL handling: space, plus, reserved and non-ASCII characters.
ODD_FILES: dict[str, bytes] = {
    "sp ace/pl+us.txt": b"plus and space\n",
    "\u00fcn\u00ef\u2603.txt": "unicode \u2603\n".encode(),
    "a&b=c;d.txt": b"query-ish\n",
    "pct%41.txt": b"percent\n",
    "til~de(x)'.txt": b"tilde\n",
    "ha#sh?q.txt": b"hash and question\n",
    "deep/er/nested.bin": bytes(range(256)) * 400,
    "empty": b"",
}


def find_tool(name: str) -> str:
    """A tool next to this interpreter (pip installs there), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        if name == "rclone":
            pytest.skip("rclone is not installed")
        pytest.fail(f"{name} is not installed (pip install -e .[test])")
    return found


def run(args: list[str], env: dict[str, str], *, ok: bool = True, timeout: float = 120,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if ok:
        assert proc.returncode == 0, (
            f"{args} exited {proc.returncode}\nstdout: {proc.stdout[-3000:]}\n"
            f"stderr: {proc.stderr[-3000:]}")
    return proc


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def multipart_etag(path: Path, part_size: int) -> tuple[str, str]:
    """S3's ETag for `path` sent in `part_size` parts (md5 of the part md5s, then -N), and the
    file's SHA-256."""
    digests, whole = [], hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(part_size):
            digests.append(hashlib.md5(chunk).digest())
            whole.update(chunk)
    return f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(digests)}"', whole.hexdigest()


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def object_keys(gateway: Gateway, bucket: str, prefix: str = "") -> list[str]:
    response = gateway.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in response.get("Contents", [])]


def curl(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run curl; return (HTTP status, body)."""
    proc = run(["curl", "-sS", "-w", "\n%{http_code}", *args], env)
    body, _, status = proc.stdout.rpartition("\n")
    return int(status), body


def tamper(url: str) -> str:
    """`url` with the first character of its signature changed."""
    match = re.search(r"(?:X-Amz-Signature|Signature)=(.)", url)
    assert match, url
    return url[:match.start(1)] + ("1" if match.group(1) == "0" else "0") + url[match.end(1):]


def error_code(body: str) -> str | None:
    match = re.search(r"<Code>([^<]*)</Code>", body)
    return match.group(1) if match else None


@dataclass
class Tools:
    gateway: Gateway
    home: Path
    env: dict[str, str]
    aws_bin: str
    s3cmd_bin: str

    def aws(self, *args: str, profile: str = "default", ok: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run([self.aws_bin, "--profile", profile, "--endpoint-url", self.gateway.endpoint,
                    *args], self.env, ok=ok, cwd=cwd)

    def s3cmd(self, sig: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.s3cmd_bin, "-c", str(self.home / f"s3cfg-{sig}"), *args], self.env, ok=ok)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with start_gateway(tmp_path_factory.mktemp("gateway")) as gw:
        yield gw


@pytest.fixture(scope="module")
def tools(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Tools:
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "RCLONE_", "BOTO_", "S3CMD"))}
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    (home / "aws-credentials").write_text(
        f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        f"[v4]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        f"[second]\naws_access_key_id = {ACCESS_KEY2}\naws_secret_access_key = {SECRET_KEY2}\n"
        f"[badsecret]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = wrong\n"
        "[nobody]\naws_access_key_id = noSuchKey\naws_secret_access_key = whatever\n")
    s3 = ("s3 =\n    addressing_style = path\n    multipart_threshold = 8MB\n"
          "    multipart_chunksize = 8MB\n")
    (home / "aws-config").write_text(
        "".join(f"[{section}]\nregion = us-east-1\n{s3}"
                for section in ("default", "profile second", "profile badsecret",
                                "profile nobody"))
        + f"[profile v4]\nregion = us-east-1\n{s3}    signature_version = s3v4\n")
    hostport = f"127.0.0.1:{gateway.port}"
    for sig, v2 in (("v2", True), ("v4", False)):
        for suffix, secret in (("", SECRET_KEY), ("-bad", "wrongSecret")):
            (home / f"s3cfg-{sig}{suffix}").write_text(
                f"[default]\naccess_key = {ACCESS_KEY}\nsecret_key = {secret}\n"
                f"host_base = {hostport}\nhost_bucket = {hostport}\nuse_https = False\n"
                f"signature_v2 = {v2}\nbucket_location = us-east-1\nprogress_meter = False\n")
    (home / "rclone.conf").write_text(
        f"[gw]\ntype = s3\nprovider = Other\naccess_key_id = {ACCESS_KEY}\n"
        f"secret_access_key = {SECRET_KEY}\nendpoint = {gateway.endpoint}\n"
        "region = us-east-1\nforce_path_style = true\n")
    return Tools(gateway, home, env, find_tool("aws"), find_tool("s3cmd"))


# --- aws cli -------------------------------------------------------------------------------------

def test_aws_cli_mb_sync_ls_rm(tools: Tools, tmp_path: Path) -> None:
    bucket = "cli-sync"
    assert "make_bucket: cli-sync" in tools.aws("s3", "mb", f"s3://{bucket}").stdout

    src = tmp_path / "src"
    write_tree(src, ODD_FILES)
    tools.aws("s3", "sync", "--only-show-errors", str(src), f"s3://{bucket}/tree")
    listing = tools.aws("s3", "ls", "--recursive", f"s3://{bucket}/tree/").stdout
    listed = {line.split(None, 3)[3]: int(line.split(None, 3)[2])
              for line in listing.splitlines() if line.strip()}
    assert listed == {f"tree/{name}": len(data) for name, data in ODD_FILES.items()}
    assert sorted(object_keys(tools.gateway, bucket, "tree/")) == sorted(listed)

    # A second sync of an unchanged tree uploads nothing.
    again = tools.aws("s3", "sync", str(src), f"s3://{bucket}/tree").stdout
    assert "upload:" not in again

    back = tmp_path / "back"
    tools.aws("s3", "sync", "--only-show-errors", f"s3://{bucket}/tree", str(back))
    assert read_tree(back) == ODD_FILES

    # sync --delete removes what is gone locally.
    (src / "pct%41.txt").unlink()
    deleted = tools.aws("s3", "sync", "--delete", str(src), f"s3://{bucket}/tree").stdout
    assert f"delete: s3://{bucket}/tree/pct%41.txt" in deleted
    assert "tree/pct%41.txt" not in object_keys(tools.gateway, bucket, "tree/")
    assert len(object_keys(tools.gateway, bucket, "tree/")) == len(ODD_FILES) - 1

    assert re.search(rf"^\S+ \S+ {bucket}$", tools.aws("s3", "ls").stdout, re.M)
    tools.aws("s3", "rm", "--recursive", "--only-show-errors", f"s3://{bucket}/tree")
    assert object_keys(tools.gateway, bucket) == []
    tools.aws("s3", "rb", f"s3://{bucket}")
    assert bucket not in [b["Name"] for b in tools.gateway.client().list_buckets()["Buckets"]]


@pytest.mark.slow
def test_aws_cli_large_file_multipart(tools: Tools, tmp_path: Path) -> None:
    """`aws s3 cp` of BIG_FILE_MIB MiB goes multipart (8 MiB parts) and comes back identical."""
    bucket, size = "cli-big", BIG_FILE_MIB * MIB
    big = tmp_path / "big.bin"
    with big.open("wb") as f:  # sparse, with random 1 MiB islands so parts differ
        f.truncate(size)
        for offset in range(0, size, 37 * MIB):
            f.seek(offset)
            f.write(os.urandom(MIB))
        f.seek(size - MIB)
        f.write(os.urandom(MIB))
    expected_etag, expected_sha256 = multipart_etag(big, AWS_CHUNK)
    tools.gateway.client().create_bucket(Bucket=bucket)
    started = time.monotonic()
    tools.aws("s3", "cp", "--only-show-errors", str(big), f"s3://{bucket}/big.bin")
    upload_s = time.monotonic() - started
    head = json.loads(tools.aws("s3api", "head-object", "--bucket", bucket,
                                "--key", "big.bin").stdout)
    assert head["ContentLength"] == size
    assert head["ETag"] == expected_etag, "not stored as the cli's multipart upload"

    down = tmp_path / "down.bin"
    tools.aws("s3", "cp", "--only-show-errors", f"s3://{bucket}/big.bin", str(down))
    assert down.stat().st_size == size
    assert sha256_of(down) == expected_sha256
    down.unlink()
    tools.gateway.client().delete_object(Bucket=bucket, Key="big.bin")
    tools.gateway.client().delete_bucket(Bucket=bucket)
    print(f"{BIG_FILE_MIB} MiB upload took {upload_s:.1f}s")


def test_aws_s3api_metadata(tools: Tools, tmp_path: Path) -> None:
    bucket, key = "cli-api", "docs/hello world+1.txt"
    body = tmp_path / "body.txt"
    body.write_bytes(b"hello, metadata\n")
    tools.gateway.client().create_bucket(Bucket=bucket)
    put = json.loads(tools.aws(
        "s3api", "put-object", "--bucket", bucket, "--key", key, "--body", str(body),
        "--metadata", "color=blue,Shape=Round", "--content-type", "text/plain; charset=utf-8",
        "--cache-control", "max-age=60", "--content-disposition", 'attachment; filename="h.txt"',
        "--content-encoding", "identity", "--tagging", "team=core&env=test").stdout)
    assert put["ETag"] == f'"{hashlib.md5(body.read_bytes()).hexdigest()}"'

    head = json.loads(tools.aws("s3api", "head-object", "--bucket", bucket, "--key", key).stdout)
    assert head["ContentLength"] == body.stat().st_size
    assert head["ETag"] == put["ETag"]
    assert head["Metadata"] == {"color": "blue", "shape": "Round"}
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == 'attachment; filename="h.txt"'
    assert head["ContentEncoding"] == "identity"
    assert head.get("TagCount") == 2

    tools.gateway.client().put_object(Bucket=bucket, Key="top.txt", Body=b"top")
    listed = json.loads(tools.aws("s3api", "list-objects-v2", "--bucket", bucket,
                                  "--prefix", "docs/", "--fetch-owner").stdout)
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed["Contents"]] == [
        (key, body.stat().st_size, put["ETag"])]
    assert listed["Contents"][0]["Owner"]["DisplayName"] == "Bart"
    tree = json.loads(tools.aws("s3api", "list-objects-v2", "--bucket", bucket,
                                "--delimiter", "/").stdout)
    assert [p["Prefix"] for p in tree["CommonPrefixes"]] == ["docs/"]
    assert [o["Key"] for o in tree["Contents"]] == ["top.txt"]

    missing = tools.aws("s3api", "head-object", "--bucket", bucket, "--key", "nope", ok=False)
    assert missing.returncode != 0 and "404" in missing.stderr


def test_aws_cli_presign_with_curl(tools: Tools) -> None:
    """`aws s3 presign` URLs (the cli's default signer and SigV4) work, and expire."""
    bucket, key = "cli-presign", "p/r\u00e9sum\u00e9 & co.txt"
    gw = tools.gateway
    gw.client().create_bucket(Bucket=bucket)
    gw.client().put_object(Bucket=bucket, Key=key, Body=b"presigned body")
    expiring = {profile: tools.aws("s3", "presign", f"s3://{bucket}/{key}", "--expires-in", "1",
                                   profile=profile).stdout.strip()
                for profile in ("default", "v4")}
    signed_at = time.monotonic()
    for profile in ("default", "v4"):
        url = tools.aws("s3", "presign", f"s3://{bucket}/{key}", profile=profile).stdout.strip()
        if profile == "v4":
            assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url
        assert curl([url], tools.env) == (200, "presigned body"), url
        status, body = curl([tamper(url)], tools.env)
        assert status == 403 and error_code(body) == "SignatureDoesNotMatch", body
    time.sleep(max(0.0, 2.2 - (time.monotonic() - signed_at)))
    for profile, url in expiring.items():
        status, body = curl([url], tools.env)
        assert status == 403, (profile, status, body)
        assert error_code(body) == "AccessDenied", body
        assert "expired" in body.lower(), body
    status, body = curl([f"{gw.endpoint}/{bucket}/p/x"], tools.env)  # anonymous
    assert status == 403 and error_code(body) == "AccessDenied", body


def test_aws_cli_bad_credentials(tools: Tools) -> None:
    wrong = tools.aws("s3", "ls", profile="badsecret", ok=False)
    assert wrong.returncode != 0 and "SignatureDoesNotMatch" in wrong.stderr, wrong.stderr
    unknown = tools.aws("s3", "ls", profile="nobody", ok=False)
    assert unknown.returncode != 0 and "InvalidAccessKeyId" in unknown.stderr, unknown.stderr


# --- s3cmd ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", ["v2", "v4"])
def test_s3cmd_mb_put_get_ls_del(tools: Tools, tmp_path: Path, sig: str) -> None:
    bucket = f"s3cmd-{sig}"
    gw = tools.gateway
    assert f"Bucket 's3://{bucket}/' created" in tools.s3cmd(sig, "mb", f"s3://{bucket}").stdout
    assert f"s3://{bucket}" in tools.s3cmd(sig, "ls").stdout

    big = tmp_path / "twelve.bin"
    big.write_bytes(os.urandom(12 * MIB))
    small = tmp_path / "small file+.txt"
    small.write_bytes(b"small s3cmd object\n")
    put = tools.s3cmd(sig, "put", "--multipart-chunk-size-mb=5", str(big),
                      f"s3://{bucket}/data/twelve.bin").stdout
    assert "upload:" in put
    tools.s3cmd(sig, "put", str(small), f"s3://{bucket}/data/small file+.txt")
    # 12 MiB in 5 MiB chunks: three parts, and the gateway's ETag says so.
    head = gw.client().head_object(Bucket=bucket, Key="data/twelve.bin")
    assert head["ETag"] == multipart_etag(big, 5 * MIB)[0]
    assert head["ETag"].endswith('-3"')
    assert "s3cmd-attrs" in head["Metadata"]

    listing = tools.s3cmd(sig, "ls", f"s3://{bucket}/data/").stdout
    assert re.search(rf"\s{12 * MIB}\s+s3://{bucket}/data/twelve.bin$", listing, re.M), listing
    assert re.search(rf"\s19\s+s3://{bucket}/data/small file\+.txt$", listing, re.M), listing

    for name, original in (("twelve.bin", big), ("small file+.txt", small)):
        out = tmp_path / f"got-{sig}-{name}"
        tools.s3cmd(sig, "get", f"s3://{bucket}/data/{name}", str(out))
        assert out.read_bytes() == original.read_bytes(), name

    deleted = tools.s3cmd(sig, "del", f"s3://{bucket}/data/twelve.bin",
                          f"s3://{bucket}/data/small file+.txt").stdout
    assert deleted.count("delete:") == 2
    assert tools.s3cmd(sig, "ls", f"s3://{bucket}/data/").stdout.strip() == ""
    assert object_keys(gw, bucket) == []
    tools.s3cmd(sig, "rb", f"s3://{bucket}")
    assert f"s3://{bucket}" not in tools.s3cmd(sig, "ls").stdout


@pytest.mark.parametrize("sig", ["v2", "v4"])
def test_s3cmd_wrong_secret(tools: Tools, sig: str) -> None:
    proc = tools.s3cmd(f"{sig}-bad", "ls", ok=False)
    assert proc.returncode != 0
    assert "SignatureDoesNotMatch" in proc.stderr + proc.stdout, proc.stderr


def test_s3cmd_copy_move_recursive_delete(tools: Tools) -> None:
    """s3cmd cp/mv (CopyObject), modify (copy onto itself), del --recursive (DeleteObjects)."""
    bucket = "s3cmd-copy"
    gw = tools.gateway
    gw.client().create_bucket(Bucket=bucket)
    gw.client().put_object(Bucket=bucket, Key="p/src \u00e9+.txt", Body=b"copy me",
                           Metadata={"k": "v"})
    tools.s3cmd("v2", "cp", f"s3://{bucket}/p/src \u00e9+.txt", f"s3://{bucket}/p/copied")
    tools.s3cmd("v4", "mv", f"s3://{bucket}/p/copied", f"s3://{bucket}/p/q/moved")
    tools.s3cmd("v4", "modify", "--add-header", "Cache-Control: max-age=5",
                f"s3://{bucket}/p/q/moved")
    moved = gw.client().get_object(Bucket=bucket, Key="p/q/moved")
    assert moved["Body"].read() == b"copy me"
    assert moved["CacheControl"] == "max-age=5"
    assert sorted(object_keys(gw, bucket)) == ["p/q/moved", "p/src \u00e9+.txt"]

    deleted = tools.s3cmd("v2", "del", "--recursive", "--force", f"s3://{bucket}/p/").stdout
    assert deleted.count("delete:") == 2, deleted
    assert object_keys(gw, bucket) == []


# --- rclone --------------------------------------------------------------------------------------

def test_rclone_copy_ls_delete(tools: Tools, tmp_path: Path) -> None:
    rclone = find_tool("rclone")
    gw = tools.gateway

    def rc(*args: str) -> subprocess.CompletedProcess[str]:
        return run([rclone, "--config", str(tools.home / "rclone.conf"), "--retries", "1",
                    "--low-level-retries", "1", *args], tools.env)

    bucket = "rclone-b"
    src = tmp_path / "src"
    files = {**ODD_FILES, "multi/twelve.bin": os.urandom(12 * MIB)}
    write_tree(src, files)
    rc("mkdir", f"gw:{bucket}")
    assert bucket in rc("lsd", "gw:").stdout
    # Parts of 5 MiB above a 5 MiB cutoff: the 12 MiB file goes multipart.
    rc("copy", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", str(src),
       f"gw:{bucket}/dir")
    listed = {line.split(None, 1)[1]: int(line.split(None, 1)[0])
              for line in rc("ls", f"gw:{bucket}").stdout.splitlines() if line.strip()}
    assert listed == {f"dir/{name}": len(data) for name, data in files.items()}
    head = gw.client().head_object(Bucket=bucket, Key="dir/multi/twelve.bin")
    assert head["ETag"].endswith('-3"')
    rc("check", str(src), f"gw:{bucket}/dir")  # sizes and md5s agree

    back = tmp_path / "back"
    rc("copy", f"gw:{bucket}/dir", str(back))
    assert read_tree(back) == files

    # A newer local mtime, same content: rclone rewrites the object's metadata by a self-copy.
    touched = src / "a&b=c;d.txt"
    os.utime(touched, (1_700_000_000, 1_700_000_000))
    rc("copy", str(src), f"gw:{bucket}/dir")
    head = gw.client().head_object(Bucket=bucket, Key="dir/a&b=c;d.txt")
    assert float(head["Metadata"]["mtime"]) == 1_700_000_000
    rc("moveto", f"gw:{bucket}/dir/a&b=c;d.txt", f"gw:{bucket}/dir/moved/a&b.txt")
    keys = object_keys(gw, bucket)
    assert "dir/a&b=c;d.txt" not in keys and "dir/moved/a&b.txt" in keys

    rc("delete", f"gw:{bucket}/dir")
    assert rc("ls", f"gw:{bucket}").stdout.strip() == ""
    assert object_keys(gw, bucket) == []
    rc("rmdir", f"gw:{bucket}")
    assert bucket not in rc("lsd", "gw:").stdout


# --- accounts ------------------------------------------------------------------------------------

def test_second_account_is_isolated(tools: Tools) -> None:
    gw = tools.gateway
    bucket = "first-account-only"
    gw.client().create_bucket(Bucket=bucket)
    gw.client().put_object(Bucket=bucket, Key="secret.txt", Body=b"mine")
    second = gw.client(ACCESS_KEY2, SECRET_KEY2)

    assert bucket in [b["Name"] for b in gw.client().list_buckets()["Buckets"]]
    assert bucket not in [b["Name"] for b in second.list_buckets()["Buckets"]]

    calls = {
        "ListObjectsV2": lambda: second.list_objects_v2(Bucket=bucket),
        "GetObject": lambda: second.get_object(Bucket=bucket, Key="secret.txt"),
        "PutObject": lambda: second.put_object(Bucket=bucket, Key="x", Body=b"theirs"),
        "DeleteObject": lambda: second.delete_object(Bucket=bucket, Key="secret.txt"),
        "DeleteBucket": lambda: second.delete_bucket(Bucket=bucket),
        "CreateMultipartUpload": lambda: second.create_multipart_upload(Bucket=bucket, Key="m"),
    }
    for name, call in calls.items():
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] == "AccessDenied", name
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, name
    with pytest.raises(ClientError) as info:
        second.head_bucket(Bucket=bucket)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as info:
        second.create_bucket(Bucket=bucket)
    assert info.value.response["Error"]["Code"] == "BucketAlreadyExists"

    denied = tools.aws("s3", "ls", f"s3://{bucket}", profile="second", ok=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr
    assert gw.client().get_object(Bucket=bucket, Key="secret.txt")["Body"].read() == b"mine"
    assert object_keys(gw, bucket) == ["secret.txt"]


# --- presigned URLs from boto3 -------------------------------------------------------------------

def test_boto3_presigned_urls_with_curl(tools: Tools, tmp_path: Path) -> None:
    """URLs presigned by boto3 with SigV2 ('s3') and SigV4: GET and PUT work, and expire."""
    gw = tools.gateway
    bucket, key = "presign-boto3", "odd/\u00fcn\u00ef & +space.txt"
    gw.client().create_bucket(Bucket=bucket)
    gw.client().put_object(Bucket=bucket, Key=key, Body=b"from boto3")
    upload = tmp_path / "up.txt"
    upload.write_bytes(b"uploaded with curl\n")
    signers = {version: gw.client(signature_version=version) for version in ("s3", "s3v4")}
    expiring = {version: signer.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=1)
        for version, signer in signers.items()}
    signed_at = time.monotonic()
    for version, signer in signers.items():
        url = signer.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
        assert ("X-Amz-Signature=" in url) == (version == "s3v4"), url
        assert curl([url], tools.env) == (200, "from boto3"), url
        status, body = curl([tamper(url)], tools.env)
        assert status == 403 and error_code(body) == "SignatureDoesNotMatch", body

        put_url = signer.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": f"up-{version}"}, ExpiresIn=300)
        assert curl(["-T", str(upload), put_url], tools.env)[0] == 200, put_url
        stored = gw.client().get_object(Bucket=bucket, Key=f"up-{version}")["Body"].read()
        assert stored == upload.read_bytes()

    time.sleep(max(0.0, 2.2 - (time.monotonic() - signed_at)))
    for version, url in expiring.items():
        status, body = curl([url], tools.env)
        assert status == 403 and error_code(body) == "AccessDenied", (version, body)


def test_auth_errors_name_the_resource(tools: Tools) -> None:
    gw = tools.gateway
    gw.client().create_bucket(Bucket="resource-check")
    url = gw.client().generate_presigned_url(
        "get_object", Params={"Bucket": "resource-check", "Key": "k"}, ExpiresIn=300)
    status, body = curl([tamper(url)], tools.env)
    assert status == 403 and error_code(body) == "SignatureDoesNotMatch", body
    assert "<Resource>/resource-check/k</Resource>" in body, body


def test_aws_cli_server_side_copy_and_move(tools: Tools) -> None:
    """`aws s3 cp/mv` between S3 URLs: CopyObject for a small object, UploadPartCopy for one
    above the 8 MiB multipart threshold."""
    gw = tools.gateway
    bucket = "cli-copy"
    gw.client().create_bucket(Bucket=bucket)
    big = os.urandom(20 * MIB)
    gw.client().put_object(Bucket=bucket, Key="src/small \u00e9.txt", Body=b"copy me",
                           Metadata={"k": "v"}, ContentType="text/x-small")
    gw.client().put_object(Bucket=bucket, Key="src/big.bin", Body=big)
    tools.aws("s3", "cp", "--only-show-errors", "--recursive", f"s3://{bucket}/src/",
              f"s3://{bucket}/dst/")
    small = gw.client().get_object(Bucket=bucket, Key="dst/small \u00e9.txt")
    assert small["Body"].read() == b"copy me"
    assert small["Metadata"] == {"k": "v"} and small["ContentType"] == "text/x-small"
    copied = gw.client().get_object(Bucket=bucket, Key="dst/big.bin")
    assert copied["ContentLength"] == len(big)
    assert hashlib.sha256(copied["Body"].read()).digest() == hashlib.sha256(big).digest()
    assert copied["ETag"].endswith('-3"'), "20 MiB should go by UploadPartCopy in 8 MiB parts"

    tools.aws("s3", "mv", "--only-show-errors", f"s3://{bucket}/dst/big.bin",
              f"s3://{bucket}/moved.bin")
    assert sorted(object_keys(gw, bucket)) == [
        "dst/small \u00e9.txt", "moved.bin", "src/big.bin", "src/small \u00e9.txt"]


def test_gateway_log_is_clean(gateway: Gateway) -> None:
    """Runs last: nothing above made the gateway answer 500 or log a traceback."""
    log = gateway.log()
    assert "Traceback" not in log, log[-5000:]
    assert not re.search(r" 500 [0-9.]+ms$", log, re.M), log[-5000:]


# --- versioning ----------------------------------------------------------------------------------

def test_versioning_with_aws_cli_and_rclone(tools: Tools, tmp_path: Path) -> None:
    bucket = "versioned-tools"
    tools.aws("s3", "mb", f"s3://{bucket}")
    tools.aws("s3api", "put-bucket-versioning", "--bucket", bucket,
              "--versioning-configuration", "Status=Enabled")
    status = json.loads(tools.aws("s3api", "get-bucket-versioning", "--bucket", bucket).stdout)
    assert status["Status"] == "Enabled"
    body = tmp_path / "body.txt"
    ids = []
    for text in ("first", "second", "third"):
        body.write_text(text)
        put = json.loads(tools.aws("s3api", "put-object", "--bucket", bucket, "--key", "doc.txt",
                                   "--body", str(body)).stdout)
        ids.append(put["VersionId"])
    tools.aws("s3", "rm", f"s3://{bucket}/doc.txt")  # a delete marker on top
    listing = json.loads(tools.aws("s3api", "list-object-versions", "--bucket", bucket).stdout)
    assert [v["VersionId"] for v in listing["Versions"]] == list(reversed(ids))
    assert len(listing["DeleteMarkers"]) == 1 and listing["DeleteMarkers"][0]["IsLatest"]
    out = tmp_path / "old.txt"
    tools.aws("s3api", "get-object", "--bucket", bucket, "--key", "doc.txt", "--version-id",
              ids[0], str(out))
    assert out.read_text() == "first"

    rclone = find_tool("rclone")
    conf = str(tools.home / "rclone.conf")
    current = run([rclone, "--config", conf, "ls", f"gw:{bucket}"], tools.env).stdout
    assert current.strip() == ""  # the marker hides the object
    with_versions = run([rclone, "--config", conf, "ls", "--s3-versions", f"gw:{bucket}"],
                        tools.env).stdout
    names = sorted(line.split(None, 1)[1] for line in with_versions.splitlines() if line.strip())
    assert len(names) == 3 and all(name.startswith("doc-v") for name in names)
    # Remove the marker: the newest version is current again, for rclone too.
    marker = listing["DeleteMarkers"][0]["VersionId"]
    tools.aws("s3api", "delete-object", "--bucket", bucket, "--key", "doc.txt", "--version-id",
              marker)
    back = run([rclone, "--config", conf, "cat", f"gw:{bucket}/doc.txt"], tools.env).stdout
    assert back == "third"
