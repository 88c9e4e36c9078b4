"""Object Lock default retention of multipart uploads: dated from the completion, when the
object version is created (AWS adds the default period to the version's creation time), with
the bucket's default rule as it is then; an upload's explicit retention stays as asked."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def _complete(s3: Any, bucket: str, key: str, upload: str) -> None:
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"p")
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})


def test_default_retention_is_dated_at_completion(s3: Any) -> None:
    bucket = f"lockmp-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    default = s3.create_multipart_upload(Bucket=bucket, Key="default")["UploadId"]
    asked_until = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    explicit = s3.create_multipart_upload(Bucket=bucket, Key="explicit",
                                          ObjectLockMode="GOVERNANCE",
                                          ObjectLockRetainUntilDate=asked_until)["UploadId"]
    # The bucket's default changes while the uploads run; time passes too.
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 2}}})
    time.sleep(2)
    completed_at = datetime.now(UTC)
    _complete(s3, bucket, "default", default)
    _complete(s3, bucket, "explicit", explicit)
    head = s3.head_object(Bucket=bucket, Key="default")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    delta = head["ObjectLockRetainUntilDate"] - completed_at
    assert timedelta(days=2) - timedelta(seconds=1) < delta < timedelta(days=2, seconds=5)
    retention = s3.get_object_retention(Bucket=bucket, Key="explicit")["Retention"]
    assert retention == {"Mode": "GOVERNANCE", "RetainUntilDate": asked_until}
