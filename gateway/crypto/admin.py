"""python -m gateway keys list | create [KEY_ID] | rotate [KEY_ID]: the embedded KMS's keyring
(config.json encryption.keyringFile, S3_SSE_KEYRING_FILE).

- list: every key id, its number of versions and when it was made; the default one (SSE-S3,
  and SSE-KMS without a key id) marked. Key material is never printed.
- create: a new key for SSE-KMS (`x-amz-server-side-encryption-aws-kms-key-id`).
- rotate: a new current version of a key (default: the default key). Objects wrapped by
  older versions still open; a running gateway wraps with the new version within a second.
  Re-encrypting old objects under it is a self-copy with x-amz-server-side-encryption.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from gateway.config import load_settings
from gateway.crypto.keys import LocalKeyring
from gateway.errors import S3Error


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway keys",
                                     description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="key ids, versions, the default key")
    create = actions.add_parser("create", help="add a key for SSE-KMS")
    create.add_argument("key_id", nargs="?", help="its id (default: a new UUID)")
    rotate = actions.add_parser("rotate", help="a new current version of a key")
    rotate.add_argument("key_id", nargs="?", help="the key (default: the default key)")
    args = parser.parse_args(argv)
    settings = load_settings(os.environ)
    ring = LocalKeyring(settings.encryption.keyring_path)
    if args.action == "list":
        print(f"keyring {ring.path}")
        for key_id, versions, created in ring.describe():
            made = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created)) if created else "-"
            mark = "  (default: SSE-S3, SSE-KMS without a key id)" \
                if key_id == ring.default_key_id else ""
            print(f"{key_id}  versions {versions}  created {made} UTC{mark}")
    elif args.action == "create":
        print(asyncio.run(ring.create_key(args.key_id)))
    else:
        try:
            key_id = ring.resolve(args.key_id) if args.key_id else ring.default_key_id
        except S3Error:
            print(f"gateway keys: no key {args.key_id!r} in {ring.path}", file=sys.stderr)
            return 1
        version = asyncio.run(ring.rotate(key_id))
        print(f"{key_id}: version {version} is now current (older versions still decrypt)")
    return 0
