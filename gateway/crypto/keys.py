"""Key management: data keys wrapped by master keys (envelope encryption).

Every encrypted object has a random 256-bit data key (gateway/crypto/stream.py derives each
stream's key from it). Only the data key *wrapped* is kept in metadata:

    blob = b"\\x01" | uint32_be(master key version) | nonce (12) | AES-256-GCM(master key,
           nonce, data key, aad) (32 + 16 tag)                             = 65 bytes
    aad  = canonical JSON {"context": {...}, "keyId": key id}

so a blob opens only with the same key id and the same encryption context (SSE-KMS's context;
the gateway always adds the object's ARN, so a blob copied onto another object's record does
not open there).

Kms is the one small interface a key service implements: wrap, unwrap, default_key_id, rotate.
LocalKeyring is the embedded default: a JSON file of key ids -> key versions, created on first
start with mode 0600 (its folder 0700); a keyring readable by group or others is refused.
Rotation adds a new version to a key id and makes it current; old versions stay, so what they
wrapped still opens. An external KMS (AWS KMS, Vault transit, KES) fits the same interface.

SSE-C uses the same blob format with the customer's key as the master key (wrap_with /
unwrap_with): the customer key itself is never stored, only a salted HMAC of it
(customer_key_hmac) to refuse a wrong key before touching data.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import stat
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import ConfigFileError, S3Error

KEY_SIZE = 32
BLOB_VERSION = 1
BLOB_SIZE = 1 + 4 + 12 + KEY_SIZE + 16
KEYRING_FORMAT = 1
HMAC_SALT_SIZE = 16


class UnwrapError(S3Error):
    """A wrapped data key did not open: wrong master key, version, context or a damaged blob."""

    def __init__(self, detail: str) -> None:
        super().__init__("InternalError", "The object's encryption key cannot be opened.")
        self.detail = detail


def kms_not_found(key_id: str) -> S3Error:
    """AWS's answer to an SSE-KMS key id that names no key (400 KMS.NotFoundException)."""
    return S3Error("KMS.NotFoundException", f"Invalid keyId '{key_id}'", status=400)


def new_data_key() -> bytes:
    return os.urandom(KEY_SIZE)


def _aad(key_id: str, context: Mapping[str, str]) -> bytes:
    return json.dumps({"context": dict(sorted(context.items())), "keyId": key_id},
                      sort_keys=True, separators=(",", ":")).encode()


def wrap_with(master: bytes, version: int, key_id: str, data_key: bytes,
              context: Mapping[str, str]) -> bytes:
    """Wrap `data_key` under `master` (version `version` of key `key_id`)."""
    nonce = os.urandom(12)
    sealed = AESGCM(master).encrypt(nonce, data_key, _aad(key_id, context))
    return bytes([BLOB_VERSION]) + version.to_bytes(4, "big") + nonce + sealed


def blob_version(blob: bytes) -> int:
    """The master key version a blob was wrapped with."""
    if len(blob) != BLOB_SIZE or blob[0] != BLOB_VERSION:
        raise UnwrapError("not a wrapped key of a known format")
    return int.from_bytes(blob[1:5], "big")


def unwrap_with(master: bytes, key_id: str, blob: bytes, context: Mapping[str, str]) -> bytes:
    blob_version(blob)
    try:
        return AESGCM(master).decrypt(blob[5:17], blob[17:], _aad(key_id, context))
    except InvalidTag:
        raise UnwrapError(f"wrapped key does not open with key {key_id!r} and its "
                          "context") from None


def customer_key_hmac(customer_key: bytes, salt: bytes | None = None) -> tuple[bytes, bytes]:
    """(salt, HMAC-SHA256(salt, key)): what is kept to recognise an SSE-C key later."""
    salt = salt if salt is not None else os.urandom(HMAC_SALT_SIZE)
    return salt, hmac.new(salt, customer_key, "sha256").digest()


def customer_key_matches(customer_key: bytes, salt: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(customer_key_hmac(customer_key, salt)[1], expected)


class Kms(ABC):
    """A key service that wraps and unwraps data keys under named master keys.

    Methods are coroutines so that a networked KMS fits; errors are S3Errors
    (kms_not_found for an unknown key id, UnwrapError for a blob that does not open)."""

    @property
    @abstractmethod
    def default_key_id(self) -> str:
        """The key SSE-S3 uses, and SSE-KMS when no key id is named (AWS's aws/s3 key)."""

    @abstractmethod
    def resolve(self, key_id: str) -> str:
        """The canonical id of `key_id` (a bare id or an ARN ending in key/<id>);
        kms_not_found when there is no such key."""

    @abstractmethod
    async def wrap(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        """Wrap under the current version of `key_id`, bound to `context`."""

    @abstractmethod
    async def unwrap(self, key_id: str, blob: bytes, context: Mapping[str, str]) -> bytes:
        """The data key of `blob` (any version of `key_id` that ever was current)."""

    @abstractmethod
    async def rotate(self, key_id: str | None = None) -> int:
        """Add a new current version to `key_id` (default: the default key); return it."""


class LocalKeyring(Kms):
    """The embedded KMS: a keyring file on the gateway's own disk.

    File (JSON, mode 0600): {"format": 1, "default": id,
                             "keys": {id: {"created": unix time, "versions": [base64 key, ...]}}}
    Version n of a key is versions[n - 1]; the last is current."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._keys: dict[str, list[bytes]] = {}
        self._created: dict[str, float] = {}
        self._default = ""
        self._stamp: tuple[int, int] = (0, 0)  # (mtime_ns, inode) of the file last read
        self._checked = 0.0  # monotonic time of the last look at the file
        if not self.path.exists():
            if not create:
                raise ConfigFileError(str(self.path), "", "keyring file does not exist")
            self._create()
        self._load()

    # -- the file ------------------------------------------------------------------------
    def _create(self) -> None:
        """A new keyring with one key, written atomically with mode 0600: never readable by
        anyone else, not even for a moment."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_id = str(uuid.uuid4())
        self._keys = {key_id: [new_data_key()]}
        self._default = key_id
        self._created = {key_id: time.time()}
        self._write(exclusive=True)

    def _document(self) -> dict[str, Any]:
        return {"format": KEYRING_FORMAT, "default": self._default,
                "keys": {kid: {"created": self._created.get(kid, 0.0),
                               "versions": [base64.b64encode(k).decode() for k in versions]}
                         for kid, versions in self._keys.items()}}

    def _write(self, *, exclusive: bool = False) -> None:
        data = json.dumps(self._document(), indent=1).encode()
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            if exclusive:
                # Two gateways starting at once: the first keyring wins, the other reads it.
                os.link(tmp, self.path)
            else:
                os.replace(tmp, self.path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _load(self) -> None:
        file = str(self.path)
        try:
            # Stat before reading: a file replaced in between is read again at the next look.
            stat_before = self.path.stat()
            mode = stat_before.st_mode
        except OSError as exc:
            raise ConfigFileError(file, "", f"cannot read keyring: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigFileError(file, "", f"keyring is accessible by group or others (mode "
                                  f"{stat.S_IMODE(mode):04o}); chmod 600 it")
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigFileError(file, "", f"cannot read keyring: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != KEYRING_FORMAT:
            raise ConfigFileError(file, 'key "format"', f"must be {KEYRING_FORMAT}")
        raw_keys = doc.get("keys")
        if not isinstance(raw_keys, dict) or not raw_keys:
            raise ConfigFileError(file, 'key "keys"', "must name at least one key")
        keys: dict[str, list[bytes]] = {}
        created: dict[str, float] = {}
        for kid, entry in raw_keys.items():
            where = f'key "keys.{kid}.versions"'
            versions = entry.get("versions") if isinstance(entry, dict) else None
            if not isinstance(versions, list) or not versions:
                raise ConfigFileError(file, where, "must be a non-empty list")
            try:
                keys[kid] = [base64.b64decode(v, validate=True) for v in versions]
            except (ValueError, TypeError):
                raise ConfigFileError(file, where, "must hold base64 keys") from None
            if any(len(k) != KEY_SIZE for k in keys[kid]):
                raise ConfigFileError(file, where, "keys must be 32 bytes (256 bits)")
            created[kid] = float(entry.get("created", 0.0))
        default = doc.get("default")
        if default not in keys:
            raise ConfigFileError(file, 'key "default"', "must name one of the keys")
        self._keys, self._created, self._default = keys, created, default
        self._stamp = (stat_before.st_mtime_ns, stat_before.st_ino)

    def _versions(self, key_id: str) -> list[bytes]:
        versions = self._keys.get(key_id)
        if versions is None:
            # Another gateway sharing this keyring may have added it since we read the file.
            with self._lock:
                self._load()
            versions = self._keys.get(key_id)
        if versions is None:
            raise kms_not_found(key_id)
        return versions

    # -- Kms -----------------------------------------------------------------------------
    @property
    def default_key_id(self) -> str:
        return self._default

    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def resolve(self, key_id: str) -> str:
        bare = key_id.rsplit(":key/", 1)[-1] if key_id.startswith("arn:") else key_id
        if bare not in self._keys:
            try:
                self._versions(bare)
            except S3Error:
                raise kms_not_found(key_id) from None
        return bare

    def describe(self) -> list[tuple[str, int, float]]:
        """(key id, number of versions, creation time) of every key; no key material."""
        return [(kid, len(versions), self._created.get(kid, 0.0))
                for kid, versions in sorted(self._keys.items())]

    def current_version(self, key_id: str) -> int:
        return len(self._versions(key_id))

    def _refresh(self) -> None:
        """Pick up a rotation made by another process (`python -m gateway keys rotate`, a
        second gateway): one stat of the file at most every second, a reload when it changed."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            stat_now = self.path.stat()
        except OSError:
            return  # keep the keys in memory; reads of the file report problems at start
        if (stat_now.st_mtime_ns, stat_now.st_ino) != self._stamp:
            with self._lock:
                self._load()

    async def wrap(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        self._refresh()
        versions = self._versions(key_id)
        return wrap_with(versions[-1], len(versions), key_id, data_key, context)

    async def unwrap(self, key_id: str, blob: bytes, context: Mapping[str, str]) -> bytes:
        version = blob_version(blob)
        versions = self._versions(key_id)
        if not 1 <= version <= len(versions):
            with self._lock:
                self._load()  # rotated by another gateway since we read the file
            versions = self._versions(key_id)
            if not 1 <= version <= len(versions):
                raise UnwrapError(f"key {key_id!r} has no version {version}")
        return unwrap_with(versions[version - 1], key_id, blob, context)

    async def rotate(self, key_id: str | None = None) -> int:
        key_id = key_id or self._default
        with self._lock:
            self._load()  # never drop a version another gateway added
            if key_id not in self._keys:
                raise kms_not_found(key_id)
            self._keys[key_id].append(new_data_key())
            self._write()
            return len(self._keys[key_id])

    async def create_key(self, key_id: str | None = None) -> str:
        """Add a named key (for SSE-KMS key ids); returns its id."""
        key_id = key_id or str(uuid.uuid4())
        with self._lock:
            self._load()
            if key_id not in self._keys:
                self._keys[key_id] = [new_data_key()]
                self._created[key_id] = time.time()
                self._write()
        return key_id


__all__ = ["BLOB_SIZE", "Kms", "LocalKeyring", "UnwrapError", "blob_version",
           "customer_key_hmac", "customer_key_matches", "kms_not_found", "new_data_key",
           "unwrap_with", "wrap_with"]
