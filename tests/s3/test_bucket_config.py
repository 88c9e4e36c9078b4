"""Unconfigured bucket settings: AWS's empty defaults, their 404 codes, and NotImplemented PUTs."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, raw_request, status


@pytest.fixture(params=["file", "memloc"])
def loc_bucket(request: pytest.FixtureRequest, s3: Any) -> str:
    name = f"conf-{uuid.uuid4().hex[:12]}"
    if request.param == "file":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "memloc"})
    return name


NOT_FOUND = [
    ("get_bucket_lifecycle_configuration", "NoSuchLifecycleConfiguration"),
    ("get_bucket_website", "NoSuchWebsiteConfiguration"),
    ("get_bucket_encryption", "ServerSideEncryptionConfigurationNotFoundError"),
    ("get_object_lock_configuration", "ObjectLockConfigurationNotFoundError"),
    ("get_bucket_replication", "ReplicationConfigurationNotFoundError"),
]


@pytest.mark.parametrize("method,code", NOT_FOUND)
def test_unconfigured_404s(s3: Any, loc_bucket: str, method: str, code: str) -> None:
    with pytest.raises(ClientError) as exc:
        getattr(s3, method)(Bucket=loc_bucket)
    assert error_code(exc) == code and status(exc) == 404
    assert exc.value.response["Error"].get("BucketName") == loc_bucket


def test_empty_defaults(s3: Any, loc_bucket: str) -> None:
    logging = s3.get_bucket_logging(Bucket=loc_bucket)
    assert "LoggingEnabled" not in logging
    assert logging["ResponseMetadata"]["HTTPStatusCode"] == 200
    notification = s3.get_bucket_notification_configuration(Bucket=loc_bucket)
    assert not any(k.endswith("Configurations") for k in notification)
    accelerate = s3.get_bucket_accelerate_configuration(Bucket=loc_bucket)
    assert "Status" not in accelerate
    assert s3.get_bucket_request_payment(Bucket=loc_bucket)["Payer"] == "BucketOwner"


def test_raw_default_documents(gateway: Any, loc_bucket: str) -> None:
    expected = {
        "logging": b"<BucketLoggingStatus",
        "notification": b"<NotificationConfiguration",
        "accelerate": b"<AccelerateConfiguration",
        "requestPayment": b"<Payer>BucketOwner</Payer>",
    }
    for sub, marker in expected.items():
        response = raw_request(gateway, "GET", f"/{loc_bucket}?{sub}")
        assert response.status_code == 200, sub
        assert marker in response.content, sub
        assert response.headers["Content-Type"].startswith("application/xml")


def test_puts_of_the_default_state_succeed(s3: Any, loc_bucket: str) -> None:
    s3.put_bucket_logging(Bucket=loc_bucket, BucketLoggingStatus={})
    s3.put_bucket_notification_configuration(Bucket=loc_bucket, NotificationConfiguration={})
    s3.put_bucket_accelerate_configuration(Bucket=loc_bucket,
                                           AccelerateConfiguration={"Status": "Suspended"})
    s3.put_bucket_request_payment(Bucket=loc_bucket,
                                  RequestPaymentConfiguration={"Payer": "BucketOwner"})
    assert s3.get_bucket_request_payment(Bucket=loc_bucket)["Payer"] == "BucketOwner"


def expect_not_implemented(call: Any, **kwargs: Any) -> None:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    assert error_code(exc) == "NotImplemented" and status(exc) == 501
    assert exc.value.response["Error"]["Message"]


def test_puts_that_need_a_feature_are_not_implemented(s3: Any, loc_bucket: str) -> None:
    b = loc_bucket  # (lifecycle, encryption, object lock: their own tests)
    expect_not_implemented(s3.put_bucket_website, Bucket=b, WebsiteConfiguration={
        "IndexDocument": {"Suffix": "index.html"}})
    expect_not_implemented(s3.put_bucket_replication, Bucket=b, ReplicationConfiguration={
        "Role": "arn:aws:iam::123456789012:role/r", "Rules": [{
            "Status": "Enabled", "Prefix": "", "Destination": {"Bucket": "arn:aws:s3:::x"}}]})
    expect_not_implemented(s3.put_bucket_logging, Bucket=b, BucketLoggingStatus={
        "LoggingEnabled": {"TargetBucket": b, "TargetPrefix": "logs/"}})
    expect_not_implemented(s3.put_bucket_notification_configuration, Bucket=b,
                           NotificationConfiguration={"QueueConfigurations": [{
                               "QueueArn": "arn:aws:sqs:us-east-1:123456789012:q",
                               "Events": ["s3:ObjectCreated:*"]}]})
    expect_not_implemented(s3.put_bucket_accelerate_configuration, Bucket=b,
                           AccelerateConfiguration={"Status": "Enabled"})
    expect_not_implemented(s3.put_bucket_request_payment, Bucket=b,
                           RequestPaymentConfiguration={"Payer": "Requester"})
    # Nothing got configured by the refused requests.
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=b)
    assert error_code(exc) == "NoSuchLifecycleConfiguration"
    assert s3.get_bucket_request_payment(Bucket=b)["Payer"] == "BucketOwner"


def test_malformed_default_puts(gateway: Any, loc_bucket: str) -> None:
    cases = {
        "accelerate": b"<AccelerateConfiguration><Status>Maybe</Status></AccelerateConfiguration>",
        "requestPayment": b"<RequestPaymentConfiguration><Payer>Nobody</Payer>"
                          b"</RequestPaymentConfiguration>",
        "logging": b"<WrongRoot/>",
        "notification": b"not xml",
    }
    for sub, body in cases.items():
        headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
        response = raw_request(gateway, "PUT", f"/{loc_bucket}?{sub}", body=body, headers=headers)
        assert response.status_code == 400, sub
        assert b"<Code>MalformedXML</Code>" in response.content, sub


def test_deletes_of_nothing_succeed(s3: Any, loc_bucket: str) -> None:
    for method in ("delete_bucket_lifecycle", "delete_bucket_website", "delete_bucket_encryption",
                   "delete_bucket_replication"):
        response = getattr(s3, method)(Bucket=loc_bucket)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204, method


def test_missing_bucket_and_access(s3: Any, s3_other: Any, loc_bucket: str) -> None:
    missing = f"gone-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_logging(Bucket=missing)
    assert error_code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_lifecycle_configuration(Bucket=missing, LifecycleConfiguration={
            "Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""},
                       "Expiration": {"Days": 1}}]})
    assert error_code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        s3_other.get_bucket_encryption(Bucket=loc_bucket)
    assert error_code(exc) == "AccessDenied"
