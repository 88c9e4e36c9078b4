"""The README's quick start, as written: its aws cli commands, its ~/.s3cfg and its rclone remote,
run against a real gateway (only the port changes)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gatewayproc import REPO, Gateway, start_gateway

pytestmark = pytest.mark.clients


def readme_block(after: str) -> str:
    """The first fenced block after the paragraph starting with `after` in README.md."""
    text = (REPO / "README.md").read_text()
    start = text.index(after)
    found = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(text, start)
    assert found, after
    return found.group(1)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with start_gateway(tmp_path_factory.mktemp("quickstart")) as gw:
        yield gw


@pytest.fixture
def home(tmp_path: Path, gateway: Gateway) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "RCLONE_", "S3CMD", "XDG_"))}
    env.update(HOME=str(tmp_path), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def here(text: str, gateway: Gateway) -> str:
    return text.replace("127.0.0.1:8000", f"127.0.0.1:{gateway.port}")


def run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, cwd=cwd)
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


# Each line through the aws cli's own driver, all in one process: the cli's start-up (about a
# second each on a busy machine) paid once.
AWS_LINES = """
import sys
from awscli.clidriver import create_clidriver
for line in sys.argv[1:]:
    status = create_clidriver().main(line.split()[1:])
    print("\\n--- exit", status, flush=True)
"""


def aws_lines(lines: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """Run aws cli command lines; their outputs, each checked to exit 0."""
    out = run([sys.executable, "-c", AWS_LINES, *lines], env, cwd=cwd)
    parts = out.split("\n--- exit ")
    statuses = [part.split("\n", 1)[0].strip() for part in parts[1:]]
    assert statuses == ["0"] * len(lines), out
    # parts: [out1, "0\nout2", ..., "0\noutN", "0\n"]
    return [parts[0], *(part.split("\n", 1)[1] for part in parts[1:-1])]


def test_aws_cli_block(gateway: Gateway, home: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "big.iso").write_bytes(b"not that big")
    lines = here(readme_block("**aws cli**"), gateway).strip().splitlines()
    assert lines[0].startswith("aws configure set") and "s3 mb s3://my-bucket" in lines[4]
    outputs = aws_lines(lines, home, tmp_path)
    assert "big.iso" in outputs[-1]
    assert gateway.client().get_object(Bucket="my-bucket", Key="big.iso")["Body"].read() == \
        b"not that big"


def test_s3cmd_config(gateway: Gateway, home: dict[str, str], tmp_path: Path) -> None:
    if not shutil.which("s3cmd", path=home["PATH"]):
        pytest.skip("s3cmd is not installed (pip install s3cmd)")
    gateway.client().create_bucket(Bucket="s3cmd-bucket")
    gateway.client().put_object(Bucket="s3cmd-bucket", Key="seen.txt", Body=b"x")
    (tmp_path / ".s3cfg").write_text(here(readme_block("**s3cmd**"), gateway))
    assert "s3://s3cmd-bucket/seen.txt" in run(["s3cmd", "ls", "s3://s3cmd-bucket"], home)


def test_rclone_remote(gateway: Gateway, home: dict[str, str], tmp_path: Path) -> None:
    if not shutil.which("rclone", path=home["PATH"]):
        pytest.skip("rclone is not installed (apt-get install rclone)")
    gateway.client().create_bucket(Bucket="rclone-bucket")
    config = tmp_path / ".config" / "rclone" / "rclone.conf"
    config.parent.mkdir(parents=True)
    config.write_text(here(readme_block("**rclone**"), gateway))
    (tmp_path / "photo.jpg").write_bytes(b"jpeg")
    run(["rclone", "copy", str(tmp_path / "photo.jpg"), "gateway:rclone-bucket/photos"], home)
    assert "rclone-bucket" in run(["rclone", "lsd", "gateway:"], home)
    assert gateway.client().get_object(Bucket="rclone-bucket",
                                       Key="photos/photo.jpg")["Body"].read() == b"jpeg"
