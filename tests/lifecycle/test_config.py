"""Put/Get/DeleteBucketLifecycleConfiguration through boto3 and raw requests: AWS's validation
(each documented error code), the stored rules read back, and x-amz-expiration on objects."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import Gateway
from tests.lifecycle.conftest import md5_header, new_bucket
from tests.s3.conftest import raw_request


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def put_raw(gateway: Gateway, bucket: str, rules_xml: str, *, md5: bool = True) -> Any:
    body = (f"<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            f"{rules_xml}</LifecycleConfiguration>").encode()
    return raw_request(gateway, "PUT", f"/{bucket}?lifecycle", body=body,
                       headers=md5_header(body) if md5 else {})


FILTER = "<Filter><Prefix></Prefix></Filter>"
EXP = "<Expiration><Days>1</Days></Expiration>"
ON = "<Status>Enabled</Status>"


def rule(*parts: str) -> str:
    return "<Rule>" + "".join(parts) + "</Rule>"


# (rules XML, expected error code, a word of the message or None)
INVALID = [
    ("", "MalformedXML", None),  # no rule
    ("<Bogus/>", "MalformedXML", None),
    (rule("<ID>x</ID>", FILTER, EXP), "MalformedXML", "Status"),  # no Status
    (rule("<ID>x</ID>", FILTER, "<Status>On</Status>", EXP), "MalformedXML", "Status"),
    (rule("<ID>" + "i" * 256 + "</ID>", FILTER, ON, EXP), "InvalidArgument", "ID length"),
    (rule("<ID>a</ID>", FILTER, ON, EXP) + rule("<ID>a</ID>", FILTER, ON, EXP),
     "InvalidArgument", "unique"),
    (rule("<ID>x</ID>", "<Prefix>p</Prefix>", FILTER, ON, EXP), "MalformedXML", "both"),
    (rule("<ID>x</ID>", ON, EXP), "MalformedXML", "Filter"),
    (rule("<ID>x</ID>", "<Filter><Prefix>a</Prefix><Tag><Key>k</Key><Value>v</Value></Tag>"
          "</Filter>", ON, EXP), "MalformedXML", "exactly one"),
    (rule("<ID>x</ID>", "<Filter><And><Prefix>a</Prefix><Tag><Key>k</Key><Value>1</Value></Tag>"
          "<Tag><Key>k</Key><Value>2</Value></Tag></And></Filter>", ON, EXP),
     "InvalidRequest", "Duplicate Tag Keys"),
    (rule("<ID>x</ID>", "<Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan>"
          "<ObjectSizeLessThan>5</ObjectSizeLessThan></And></Filter>", ON, EXP),
     "InvalidArgument", "ObjectSizeGreaterThan"),
    (rule("<ID>x</ID>", "<Filter><ObjectSizeGreaterThan>big</ObjectSizeGreaterThan></Filter>",
          ON, EXP), "MalformedXML", None),
    (rule("<ID>x</ID>", FILTER, ON), "InvalidRequest", "At least one action"),
    (rule("<ID>x</ID>", FILTER, ON, "<Expiration><Days>0</Days></Expiration>"),
     "InvalidArgument", "positive integer"),
    (rule("<ID>x</ID>", FILTER, ON, "<Expiration><Days>1</Days>"
          "<Date>2030-01-01T00:00:00.000Z</Date></Expiration>"), "MalformedXML", None),
    (rule("<ID>x</ID>", FILTER, ON, "<Expiration><Date>2030-01-01T10:00:00.000Z</Date>"
          "</Expiration>"), "InvalidArgument", "midnight"),
    (rule("<ID>x</ID>", FILTER, ON, "<Expiration><Days>3</Days><ExpiredObjectDeleteMarker>true"
          "</ExpiredObjectDeleteMarker></Expiration>"), "MalformedXML", "ExpiredObjectDeleteMarker"),
    (rule("<ID>x</ID>", "<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>", ON,
          "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"),
     "InvalidRequest", "ExpiredObjectDeleteMarker"),
    (rule("<ID>x</ID>", FILTER, ON, "<NoncurrentVersionExpiration><NoncurrentDays>-1"
          "</NoncurrentDays></NoncurrentVersionExpiration>"), "InvalidArgument", "NoncurrentDays"),
    (rule("<ID>x</ID>", FILTER, ON, "<NoncurrentVersionExpiration><NoncurrentDays>1"
          "</NoncurrentDays><NewerNoncurrentVersions>101</NewerNoncurrentVersions>"
          "</NoncurrentVersionExpiration>"), "InvalidArgument", "NewerNoncurrentVersions"),
    (rule("<ID>x</ID>", FILTER, ON, "<AbortIncompleteMultipartUpload><DaysAfterInitiation>0"
          "</DaysAfterInitiation></AbortIncompleteMultipartUpload>"), "InvalidArgument", None),
    (rule("<ID>x</ID>", "<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>", ON,
          "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
          "</AbortIncompleteMultipartUpload>"), "InvalidRequest", "AbortIncompleteMultipartUpload"),
    (rule("<ID>x</ID>", FILTER, ON, "<Transition><Days>1</Days><StorageClass>COLDEST"
          "</StorageClass></Transition>"), "InvalidStorageClass", None),
    (rule("<ID>x</ID>", FILTER, ON, "<Transition><Days>1</Days><StorageClass>DEEP_ARCHIVE"
          "</StorageClass></Transition>"), "InvalidStorageClass", "storageClasses"),
    (rule("<ID>x</ID>", FILTER, ON, "<Transition><Days>10</Days><StorageClass>STANDARD_IA"
          "</StorageClass></Transition>"), "InvalidArgument", "greater than or equal to 30"),
    (rule("<ID>x</ID>", FILTER, ON, "<Transition><Days>40</Days><StorageClass>GLACIER"
          "</StorageClass></Transition><Transition><Days>50</Days><StorageClass>GLACIER"
          "</StorageClass></Transition>"), "InvalidArgument", "must be different"),
    (rule("<ID>x</ID>", FILTER, ON, "<Expiration><Days>20</Days></Expiration><Transition><Days>30"
          "</Days><StorageClass>GLACIER</StorageClass></Transition>"),
     "InvalidArgument", "greater than 'Days' in the Transition"),
    (rule("<ID>x</ID>", FILTER, ON, "<Transition><StorageClass>GLACIER</StorageClass>"
          "</Transition>"), "MalformedXML", None),
    (rule("<ID>x</ID>", FILTER, ON, "<NoncurrentVersionTransition><NoncurrentDays>5"
          "</NoncurrentDays><StorageClass>STANDARD_IA</StorageClass>"
          "</NoncurrentVersionTransition>"), "InvalidArgument", "30"),
]


@pytest.mark.parametrize("rules_xml,expected,words", INVALID)
def test_invalid_configurations_answer_aws_codes(gateway: Gateway, s3: Any, rules_xml: str,
                                                 expected: str, words: str | None) -> None:
    bucket = lifecycle_bucket(s3)
    response = put_raw(gateway, bucket, rules_xml)
    assert response.status_code == 400, response.text
    assert f"<Code>{expected}</Code>" in response.text, response.text
    if words:
        assert words in response.text, response.text
    # Nothing was stored by a refused PUT.
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert code(exc) == "NoSuchLifecycleConfiguration"


_buckets: list[str] = []


def lifecycle_bucket(s3: Any) -> str:
    """One bucket reused by the refusals (nothing is ever stored in it)."""
    if not _buckets:
        _buckets.append(new_bucket(s3))
    return _buckets[0]


def test_content_md5_is_required(gateway: Gateway, s3: Any) -> None:
    response = put_raw(gateway, lifecycle_bucket(s3), rule("<ID>x</ID>", FILTER, ON, EXP),
                       md5=False)
    assert response.status_code == 400 and "<Code>InvalidRequest</Code>" in response.text


FULL = {"Rules": [
    {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
     "Expiration": {"Days": 30},
     "Transitions": [{"Days": 0, "StorageClass": "GLACIER"}],
     "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}},
    {"ID": "tagged", "Status": "Disabled",
     "Filter": {"And": {"Prefix": "a/", "Tags": [{"Key": "k", "Value": "v"}],
                        "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 1000}},
     "Expiration": {"Date": "2031-01-01T00:00:00Z"},
     "NoncurrentVersionTransitions": [{"NoncurrentDays": 30, "StorageClass": "STANDARD_IA"}]},
    {"ID": "markers", "Status": "Enabled", "Filter": {"Tag": {"Key": "t", "Value": "1"}},
     "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
    {"ID": "small", "Status": "Enabled", "Filter": {"ObjectSizeLessThan": 100},
     "Expiration": {"Days": 5}},
    {"ID": "dm", "Status": "Enabled", "Filter": {},
     "Expiration": {"ExpiredObjectDeleteMarker": True}},
    {"ID": "legacy", "Status": "Enabled", "Prefix": "old/", "Expiration": {"Days": 1}},
]}


def test_round_trip_and_delete(s3: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=FULL)
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(rules) == {"logs", "tagged", "markers", "small", "dm", "legacy"}
    logs = rules["logs"]
    assert logs["Filter"] == {"Prefix": "logs/"} and logs["Expiration"] == {"Days": 30}
    assert logs["Transitions"] == [{"Days": 0, "StorageClass": "GLACIER"}]
    assert logs["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7,
                                                   "NewerNoncurrentVersions": 2}
    assert logs["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}
    tagged = rules["tagged"]
    assert tagged["Status"] == "Disabled"
    assert tagged["Filter"]["And"] == {"Prefix": "a/", "Tags": [{"Key": "k", "Value": "v"}],
                                       "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 1000}
    assert tagged["Expiration"]["Date"].year == 2031
    assert tagged["NoncurrentVersionTransitions"] == [{"NoncurrentDays": 30,
                                                       "StorageClass": "STANDARD_IA"}]
    assert rules["markers"]["Filter"] == {"Tag": {"Key": "t", "Value": "1"}}
    assert rules["small"]["Filter"] == {"ObjectSizeLessThan": 100}
    assert rules["dm"]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert rules["legacy"]["Prefix"] == "old/" and "Filter" not in rules["legacy"]
    # A rule without an ID gets one.
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]})
    [generated] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert generated["ID"]
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert code(exc) == "NoSuchLifecycleConfiguration"
    s3.delete_bucket_lifecycle(Bucket=bucket)  # deleting nothing succeeds


def test_missing_bucket_and_other_owner(gateway: Gateway, s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_lifecycle_configuration(Bucket="lc-no-such-bucket-x", LifecycleConfiguration=FULL)
    assert code(exc) == "NoSuchBucket"
    bucket = new_bucket(s3)
    other = gateway.client("accessKey2", "verySecretKey2")
    with pytest.raises(ClientError) as exc:
        other.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=FULL)
    assert code(exc) == "AccessDenied"


def expiry_of(headers: dict[str, str]) -> tuple[float, str]:
    value = headers["x-amz-expiration"]
    date = value.split('expiry-date="', 1)[1].split('"', 1)[0]
    rule_id = value.split('rule-id="', 1)[1].split('"', 1)[0]
    parsed = email.utils.parsedate_to_datetime(date)
    return parsed.timestamp(), rule_id


def test_expiration_header_on_put_get_head(s3: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "week", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
         "Expiration": {"Days": 7}},
        {"ID": "soon-tagged", "Status": "Enabled",
         "Filter": {"Tag": {"Key": "ttl", "Value": "short"}}, "Expiration": {"Days": 2}},
        {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": ""},
         "Expiration": {"Days": 1}}]})
    put = s3.put_object(Bucket=bucket, Key="tmp/a", Body=b"x")
    when, rule_id = expiry_of(put["ResponseMetadata"]["HTTPHeaders"])
    assert rule_id == "week"
    # Seven days after the upload, rounded up to the next midnight UTC (as AWS).
    assert when % 86400 == 0 and 6 * 86400 < when - time.time() <= 8 * 86400
    for call in (s3.get_object, s3.head_object):
        headers = call(Bucket=bucket, Key="tmp/a")["ResponseMetadata"]["HTTPHeaders"]
        assert expiry_of(headers) == (when, "week")
    # The earliest matching rule wins; a tag filter is checked against the object's tags.
    s3.put_object(Bucket=bucket, Key="tmp/b", Body=b"x", Tagging="ttl=short")
    headers = s3.head_object(Bucket=bucket, Key="tmp/b")["ResponseMetadata"]["HTTPHeaders"]
    assert expiry_of(headers)[1] == "soon-tagged"
    # No matching enabled rule: no header.
    s3.put_object(Bucket=bucket, Key="keep/c", Body=b"x")
    headers = s3.head_object(Bucket=bucket, Key="keep/c")["ResponseMetadata"]["HTTPHeaders"]
    assert "x-amz-expiration" not in headers
