"""Object Lock (write once, read many): every rule of retention and legal hold, in one place.

The engine calls these for every write (a new version's lock, from the request or the bucket's
default retention), every delete of a version (refused while it is protected, checked inside
the metadata transaction that would remove it) and every change of a version's lock. Handlers
only parse headers and XML into the values below; nothing else decides.

Kept in:
- BucketRecord.attrs["objectLock"]: {"enabled": True, "rule": {"mode", "days" | "years"}?}
  (a bucket with it always has versioning "Enabled"; it can never be suspended).
- ObjectRecord.attrs["lock"] (and UploadRecord.attrs, until completion):
  {"mode": GOVERNANCE | COMPLIANCE, "until": epoch milliseconds}? and {"hold": bool}?.
A version is protected while its legal hold is on or its retention date is in the future:
no one can delete it (COMPLIANCE), or only who may s3:BypassGovernanceRetention and says so
(GOVERNANCE). Overwrites add versions and delete markers hide it: both are allowed, the
version itself never changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.errors import S3Error
from gateway.metadata.base import BucketRecord, ObjectRecord

ATTR = "lock"
BUCKET_ATTR = "objectLock"
GOVERNANCE = "GOVERNANCE"
COMPLIANCE = "COMPLIANCE"
MODES = (GOVERNANCE, COMPLIANCE)
DAY_SECONDS = 86_400
YEAR_DAYS = 365
MAX_DAYS = 36_500
MAX_YEARS = 100
# AWS's words, as clients and people grep for them.
LOCKED = "Access Denied because object protected by object lock."
MISSING_CONFIGURATION = "Bucket is missing Object Lock Configuration"


@dataclass(frozen=True)
class Retention:
    mode: str  # GOVERNANCE | COMPLIANCE
    until: int  # epoch milliseconds

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "until": self.until}


@dataclass(frozen=True)
class LockRequest:
    """What a write asks for (x-amz-object-lock-mode / -retain-until-date / -legal-hold)."""

    retention: Retention | None = None
    legal_hold: bool | None = None

    @property
    def asked(self) -> bool:
        return self.retention is not None or self.legal_hold is not None


def now_ms() -> int:
    return int(time.time() * 1000)


# --- dates -------------------------------------------------------------------------------------
def parse_date(text: str) -> int | None:
    """An ISO 8601 date (`2030-01-01T00:00:00Z`, with or without fractions; without a zone:
    UTC) as epoch milliseconds; None when it is not one."""
    try:
        found = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if found.tzinfo is None:
        found = found.replace(tzinfo=UTC)
    return int(found.timestamp() * 1000)


def render_date(until: int) -> str:
    """As AWS renders RetainUntilDate: UTC, milliseconds, `Z`."""
    moment = datetime.fromtimestamp(until / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{until % 1000:03d}Z"


def future_retention(mode: str, until: int, now: int | None = None) -> Retention:
    """A retention a request sets: its date must be in the future (InvalidArgument)."""
    if until <= (now if now is not None else now_ms()):
        raise S3Error("InvalidArgument", "The retain until date must be in the future!",
                      ArgumentName="x-amz-object-lock-retain-until-date",
                      ArgumentValue=render_date(until))
    return Retention(mode, until)


# --- the bucket --------------------------------------------------------------------------------
def enabled(bucket: BucketRecord) -> bool:
    return bool((bucket.attrs.get(BUCKET_ATTR) or {}).get("enabled"))


def default_rule(bucket: BucketRecord) -> dict[str, Any] | None:
    """The bucket's default retention {"mode", "days" | "years"}, or None."""
    return (bucket.attrs.get(BUCKET_ATTR) or {}).get("rule") if enabled(bucket) else None


def require_enabled(bucket: BucketRecord) -> None:
    """Put/GetObjectRetention, Put/GetObjectLegalHold, and lock headers need a lock bucket."""
    if not enabled(bucket):
        raise S3Error("InvalidRequest", MISSING_CONFIGURATION)


def checked_rule(mode: str | None, days: int | None, years: int | None) -> dict[str, Any]:
    """A DefaultRetention as PutObjectLockConfiguration states it, validated as AWS does."""
    if mode not in MODES or (days is None) == (years is None):
        raise S3Error("MalformedXML")
    period, limit = (days, MAX_DAYS) if days is not None else (years, MAX_YEARS)
    assert period is not None
    if period <= 0:
        raise S3Error("InvalidRetentionPeriod",
                      "Default retention period must be a positive integer value.")
    if period > limit:
        raise S3Error("InvalidRetentionPeriod", "Default retention period is too large.")
    return {"mode": mode, "days": days} if days is not None else {"mode": mode, "years": years}


def rule_until(rule: dict[str, Any], now: int) -> int:
    days = rule["days"] if rule.get("days") is not None else rule["years"] * YEAR_DAYS
    return now + days * DAY_SECONDS * 1000


# --- a new version -----------------------------------------------------------------------------
def requires_digest(bucket: BucketRecord, asked: LockRequest | None) -> bool:
    """AWS wants Content-MD5 or an x-amz-checksum-* on a PUT (or part) that locks what it
    writes: lock headers, or a bucket default retention."""
    return enabled(bucket) and ((asked is not None and asked.asked)
                                or default_rule(bucket) is not None)


def new_lock(bucket: BucketRecord, asked: LockRequest | None,
             now: int | None = None) -> dict[str, Any] | None:
    """attrs["lock"] of a new version: what the request asks for, else the bucket's default
    retention; None for none. Lock headers on a bucket without Object Lock: InvalidRequest."""
    if asked is not None and asked.asked:
        require_enabled(bucket)
    if not enabled(bucket):
        return None
    now = now if now is not None else now_ms()
    lock: dict[str, Any] = {}
    if asked is not None and asked.retention is not None:
        lock.update(future_retention(asked.retention.mode, asked.retention.until,
                                     now).to_dict())
    else:
        rule = default_rule(bucket)
        if rule is not None:
            lock.update({"mode": rule["mode"], "until": rule_until(rule, now)})
    if asked is not None and asked.legal_hold is not None:
        lock["hold"] = asked.legal_hold
    return lock or None


# A multipart upload whose retention is the bucket's default: dated at completion, when the
# version is created (AWS adds the default period to the object version's creation time), not
# when the upload started. Kept in UploadRecord.attrs["lock"] only, never in an object's.
BY_DEFAULT = "byDefault"


def upload_lock(bucket: BucketRecord, asked: LockRequest | None) -> dict[str, Any] | None:
    """attrs["lock"] of a new multipart upload: new_lock's (validated now, so a bad request
    fails at CreateMultipartUpload), a default retention marked to be re-dated at completion."""
    lock = new_lock(bucket, asked)
    if lock and "mode" in lock and (asked is None or asked.retention is None):
        lock[BY_DEFAULT] = True
    return lock


def completed_lock(bucket: BucketRecord, lock: dict[str, Any] | None,
                   now: int | None = None) -> dict[str, Any] | None:
    """The completed object's attrs["lock"]: the upload's explicit retention as it was asked;
    a default retention dated from now (the bucket's default rule now; the upload's own when
    the bucket no longer has one, so completion never drops a retention)."""
    if not lock or not lock.get(BY_DEFAULT):
        return lock
    lock = {name: value for name, value in lock.items() if name != BY_DEFAULT}
    rule = default_rule(bucket)
    if rule is not None:
        lock.update({"mode": rule["mode"],
                     "until": rule_until(rule, now if now is not None else now_ms())})
    return lock


# --- a version's state -------------------------------------------------------------------------
def retention_of(record: Any) -> Retention | None:
    found = (record.attrs.get(ATTR) or {})
    if found.get("mode") is None:
        return None
    return Retention(found["mode"], int(found["until"]))


def legal_hold_of(record: Any) -> bool | None:
    """ON (True), OFF (False), or None when it was never set."""
    return (record.attrs.get(ATTR) or {}).get("hold")


def is_protected(record: ObjectRecord, now: int | None = None) -> bool:
    """Whether a version may not be deleted now (by anyone without a governance bypass)."""
    if record.delete_marker:
        return False
    now = now if now is not None else now_ms()
    retention = retention_of(record)
    return bool(legal_hold_of(record)) or (retention is not None and retention.until > now)


def check_delete(record: ObjectRecord, bypass_governance: bool,
                 now: int | None = None) -> None:
    """Refuse (403 AccessDenied, AWS's message) to remove a protected version: a legal hold
    always, an unexpired COMPLIANCE retention always, an unexpired GOVERNANCE one unless the
    request bypasses it (the header, and the permission). Runs inside the delete's
    transaction (MetadataStore.delete_object's guard)."""
    if record.delete_marker:
        return
    now = now if now is not None else now_ms()
    if legal_hold_of(record):
        raise S3Error("AccessDenied", LOCKED)
    retention = retention_of(record)
    if retention is None or retention.until <= now:
        return
    if retention.mode == GOVERNANCE and bypass_governance:
        return
    raise S3Error("AccessDenied", LOCKED)


def delete_guard(bypass_governance: bool) -> Callable[[ObjectRecord], None]:
    return lambda record: check_delete(record, bypass_governance)


def check_retention_change(current: Retention | None, new: Retention | None,
                           bypass_governance: bool, now: int | None = None) -> None:
    """PutObjectRetention's rules: an unexpired COMPLIANCE retention can only be extended,
    in COMPLIANCE mode; an unexpired GOVERNANCE one can be extended (same mode) by anyone who
    may put retention, and shortened, removed or changed in mode only with a bypass."""
    now = now if now is not None else now_ms()
    if current is None or current.until <= now:
        return
    extends = new is not None and new.mode == current.mode and new.until >= current.until
    if extends:
        return
    if current.mode == GOVERNANCE and bypass_governance:
        return
    raise S3Error("AccessDenied", LOCKED)


def with_retention(record: ObjectRecord, new: Retention | None,
                   bypass_governance: bool) -> dict[str, Any]:
    """The version's attrs with retention `new` (None: removed), once the change is allowed."""
    check_retention_change(retention_of(record), new, bypass_governance)
    lock = {k: v for k, v in (record.attrs.get(ATTR) or {}).items() if k == "hold"}
    if new is not None:
        lock.update(new.to_dict())
    return {**record.attrs, ATTR: lock or None}


def with_legal_hold(record: ObjectRecord, on: bool) -> dict[str, Any]:
    lock = dict(record.attrs.get(ATTR) or {})
    lock["hold"] = on
    return {**record.attrs, ATTR: lock}


def response_headers(record: ObjectRecord) -> dict[str, str]:
    """x-amz-object-lock-mode / -retain-until-date / -legal-hold on GET and HEAD."""
    headers: dict[str, str] = {}
    retention = retention_of(record)
    if retention is not None:
        headers["x-amz-object-lock-mode"] = retention.mode
        headers["x-amz-object-lock-retain-until-date"] = render_date(retention.until)
    hold = legal_hold_of(record)
    if hold is not None:
        headers["x-amz-object-lock-legal-hold"] = "ON" if hold else "OFF"
    return headers


__all__ = ["ATTR", "BUCKET_ATTR", "BY_DEFAULT", "COMPLIANCE", "GOVERNANCE", "LOCKED",
           "LockRequest", "MODES", "Retention", "check_delete", "check_retention_change",
           "checked_rule", "completed_lock", "default_rule", "delete_guard", "enabled",
           "future_retention", "is_protected", "legal_hold_of", "new_lock", "parse_date",
           "render_date", "require_enabled", "requires_digest", "response_headers",
           "retention_of", "upload_lock", "with_legal_hold", "with_retention"]
