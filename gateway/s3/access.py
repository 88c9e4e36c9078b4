"""Authorization: the one place that decides whether a requester may perform an S3 action.

The decision combines, as AWS does for a bucket owner's resources:
  1. the bucket policy: an explicit Deny wins over everything (the bucket owner included,
     except for the bucket-policy operations themselves, so an owner can never lock itself out);
     an Allow grants the action to other accounts and to anonymous requesters;
  2. ownership: the bucket owner may do anything in its bucket, an object's owner anything
     its object's ACL governs;
  3. ACLs: the bucket ACL for listing and writing objects, the object ACL for reading it.

Object-level decisions (reads, object ACLs, tagging) are made on one exact object version:
each version has its own owner and ACL, so `authorize_object` is given the record the request
names (?versionId=, or a copy source's version) after it is looked up, never the current one.

ACLs are stored expanded, as a list of grants `{"id"|"uri": ..., "permission": ...}` in
bucket.attrs["acl"] / object attrs["acl"]; a resource without one has the private default
(its owner FULL_CONTROL). Bucket policies are kept as the JSON text the client sent, in
bucket.attrs["policy"], and validated when put (`parse_policy`).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from gateway.errors import S3Error
from gateway.metadata.base import BucketRecord, ObjectRecord
from gateway.s3.request import BUCKET_RECORD, S3Request

if TYPE_CHECKING:
    from gateway.accounts import Account, AccountStore

# --- ACL model ---------------------------------------------------------------------------------

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = (ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY)
# The owner id of what anonymous requesters create (public-read-write buckets), as CloudServer.
ANONYMOUS_ID = ALL_USERS
PERMISSIONS = ("FULL_CONTROL", "WRITE", "WRITE_ACP", "READ", "READ_ACP")
CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read",
               "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write")
GRANT_HEADERS = {
    "x-amz-grant-read": "READ",
    "x-amz-grant-write": "WRITE",
    "x-amz-grant-read-acp": "READ_ACP",
    "x-amz-grant-write-acp": "WRITE_ACP",
    "x-amz-grant-full-control": "FULL_CONTROL",
}

Grant = dict[str, str]  # {"id": canonical id} or {"uri": group}, plus "permission"


def owner_grant(owner: str) -> Grant:
    return {"id": owner, "permission": "FULL_CONTROL"}


def canned_acl(name: str, owner: str, bucket_owner: str | None = None) -> list[Grant]:
    """Expand a canned ACL; `bucket_owner` matters only for the bucket-owner-* ACLs of objects."""
    if name not in CANNED_ACLS:
        raise S3Error("InvalidArgument", f"Invalid canned ACL: {name}",
                      ArgumentName="x-amz-acl", ArgumentValue=name)
    grants = [owner_grant(owner)]
    if name == "public-read":
        grants.append({"uri": ALL_USERS, "permission": "READ"})
    elif name == "public-read-write":
        grants += [{"uri": ALL_USERS, "permission": "READ"},
                   {"uri": ALL_USERS, "permission": "WRITE"}]
    elif name == "authenticated-read":
        grants.append({"uri": AUTHENTICATED_USERS, "permission": "READ"})
    elif name == "log-delivery-write":
        grants += [{"uri": LOG_DELIVERY, "permission": "WRITE"},
                   {"uri": LOG_DELIVERY, "permission": "READ_ACP"}]
    elif bucket_owner is not None and bucket_owner != owner:
        if name == "bucket-owner-read":
            grants.append({"id": bucket_owner, "permission": "READ"})
        elif name == "bucket-owner-full-control":
            grants.append(owner_grant(bucket_owner))
    return grants


def resolve_grantee(accounts: AccountStore, kind: str, value: str) -> dict[str, str]:
    """A grantee named by id, email or group URI, checked against the known accounts."""
    if kind == "id":
        if accounts.by_canonical_id(value) is None:
            raise S3Error("InvalidArgument", "Invalid id", ArgumentName="CanonicalUser/ID",
                          ArgumentValue=value)
        return {"id": value}
    if kind == "emailaddress":
        account = accounts.by_email(value)
        if account is None:
            raise S3Error("UnresolvableGrantByEmailAddress", EmailAddress=value)
        return {"id": account.canonical_id}
    if kind == "uri":
        if value not in GROUPS:
            raise S3Error("InvalidArgument", "Invalid group uri", ArgumentName="Group/URI",
                          ArgumentValue=value)
        return {"uri": value}
    raise S3Error("InvalidArgument", f"Argument format not recognized: {kind}",
                  ArgumentName="x-amz-grant", ArgumentValue=kind)


_GRANTEE_RE = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([^,\s]+))\s*(?:,|$)')


def parse_grant_header(accounts: AccountStore, value: str, permission: str) -> list[Grant]:
    """`id="..", emailAddress="..", uri=".."`: a comma-separated list of grantees."""
    grants: list[Grant] = []
    pos = 0
    value = value.strip()
    while pos < len(value):
        match = _GRANTEE_RE.match(value, pos)
        if match is None or match.end() == pos:
            raise S3Error("InvalidArgument", "Argument format not recognized",
                          ArgumentName="x-amz-grant", ArgumentValue=value)
        kind, quoted, bare = match.groups()
        grantee = resolve_grantee(accounts, kind.lower(), quoted if quoted is not None else bare)
        grants.append({**grantee, "permission": permission})
        pos = match.end()
    return grants


def acl_from_headers(req: S3Request, owner: str, bucket_owner: str | None = None
                     ) -> list[Grant] | None:
    """The ACL that `x-amz-acl` or `x-amz-grant-*` headers ask for, None when neither is sent
    (the resource then has the private default). For CreateBucket, PutObject,
    CreateMultipartUpload, CopyObject and the PUT ?acl operations. Raises before any change."""
    canned = req.headers.get("x-amz-acl")
    grant_headers = [(name, req.headers[name]) for name in GRANT_HEADERS if name in req.headers]
    if canned is not None and grant_headers:
        raise S3Error("InvalidRequest",
                      "Specifying both Canned ACLs and Header Grants is not allowed")
    if canned is not None:
        grants = canned_acl(canned.strip(), owner, bucket_owner)
    elif not grant_headers:
        return None
    else:
        grants = []
        for name, value in grant_headers:
            grants += parse_grant_header(req.gateway.accounts, value, GRANT_HEADERS[name])
    return allowed_acl(req, grants, canned)


def allowed_acl(req: S3Request, grants: list[Grant], canned: str | None
                ) -> list[Grant] | None:
    """`grants` (asked by the canned ACL `canned`, or by grants) as the request's bucket lets
    them be set: the bucket get_bucket() kept on the request (CreateBucket has none yet)
    decides by its object ownership and public access block. None when ACLs are disabled and
    the ACL is the owner's full control anyway. (POST Object's form fields: call it too.)"""
    bucket = req.http.get(BUCKET_RECORD)
    if isinstance(bucket, BucketRecord):
        if acls_disabled(bucket):
            only_owner = (canned.strip() == "bucket-owner-full-control" if canned is not None
                          else all(g.get("id") == bucket.owner and g["permission"] ==
                                   "FULL_CONTROL" for g in grants))
            if not only_owner:
                raise S3Error("AccessControlListNotSupported")
            return None  # the bucket owner owns the object, with its full control
        refuse_public_acl(bucket, grants)
    return grants


def acl_of(record: BucketRecord | ObjectRecord) -> list[Grant]:
    return record.attrs.get("acl") or [owner_grant(record.owner)]


def ordered_acl(owner: str, grants: list[Grant]) -> list[Grant]:
    """Grants as AWS lists them: the owner's FULL_CONTROL first when the ACL has it (canned
    ACLs always do; explicit grants hold only what they name), then the others in the order
    they were given, each once."""
    first = owner_grant(owner)
    ordered = [first] if first in grants else []
    for grant in grants:
        if grant not in ordered:
            ordered.append(grant)
    return ordered


def acl_is_public(grants: Iterable[Grant]) -> bool:
    """AWS's "public" ACL: it grants anything to AllUsers or AuthenticatedUsers."""
    return any(grant.get("uri") in (ALL_USERS, AUTHENTICATED_USERS) for grant in grants)


def acl_allows(grants: Iterable[Grant], account: Account | None, permission: str,
               ignore_public: bool = False) -> bool:
    """Whether `grants` give `account` (None: anonymous) `permission`; with `ignore_public`
    (IgnorePublicAcls) grants to AllUsers and AuthenticatedUsers count for nothing."""
    for grant in grants:
        if grant["permission"] not in (permission, "FULL_CONTROL"):
            continue
        uri = grant.get("uri")
        if ignore_public and uri in (ALL_USERS, AUTHENTICATED_USERS):
            continue
        if uri == ALL_USERS:
            return True
        if account is None:
            continue
        if uri == AUTHENTICATED_USERS or grant.get("id") == account.canonical_id:
            return True
    return False


# --- actions -----------------------------------------------------------------------------------

# (level, method, sub-resource) -> the IAM action a request performs.
ACTIONS: dict[tuple[str, str, str], str] = {
    ("bucket", "PUT", ""): "s3:CreateBucket",
    ("bucket", "HEAD", ""): "s3:ListBucket",
    ("bucket", "GET", ""): "s3:ListBucket",
    ("bucket", "DELETE", ""): "s3:DeleteBucket",
    ("bucket", "POST", ""): "s3:PutObject",
    ("bucket", "POST", "delete"): "s3:DeleteObject",
    ("bucket", "GET", "location"): "s3:GetBucketLocation",
    ("bucket", "GET", "uploads"): "s3:ListBucketMultipartUploads",
    ("bucket", "GET", "versions"): "s3:ListBucketVersions",
    ("bucket", "GET", "versioning"): "s3:GetBucketVersioning",
    ("bucket", "PUT", "versioning"): "s3:PutBucketVersioning",
    ("bucket", "GET", "acl"): "s3:GetBucketAcl",
    ("bucket", "PUT", "acl"): "s3:PutBucketAcl",
    ("bucket", "GET", "tagging"): "s3:GetBucketTagging",
    ("bucket", "PUT", "tagging"): "s3:PutBucketTagging",
    ("bucket", "DELETE", "tagging"): "s3:PutBucketTagging",
    ("bucket", "GET", "policy"): "s3:GetBucketPolicy",
    ("bucket", "PUT", "policy"): "s3:PutBucketPolicy",
    ("bucket", "DELETE", "policy"): "s3:DeleteBucketPolicy",
    ("bucket", "GET", "policyStatus"): "s3:GetBucketPolicyStatus",
    ("bucket", "GET", "cors"): "s3:GetBucketCORS",
    ("bucket", "PUT", "cors"): "s3:PutBucketCORS",
    ("bucket", "DELETE", "cors"): "s3:PutBucketCORS",
    ("bucket", "GET", "lifecycle"): "s3:GetLifecycleConfiguration",
    ("bucket", "PUT", "lifecycle"): "s3:PutLifecycleConfiguration",
    ("bucket", "DELETE", "lifecycle"): "s3:PutLifecycleConfiguration",
    ("bucket", "GET", "website"): "s3:GetBucketWebsite",
    ("bucket", "PUT", "website"): "s3:PutBucketWebsite",
    ("bucket", "DELETE", "website"): "s3:DeleteBucketWebsite",
    ("bucket", "GET", "logging"): "s3:GetBucketLogging",
    ("bucket", "PUT", "logging"): "s3:PutBucketLogging",
    ("bucket", "GET", "encryption"): "s3:GetEncryptionConfiguration",
    ("bucket", "PUT", "encryption"): "s3:PutEncryptionConfiguration",
    ("bucket", "DELETE", "encryption"): "s3:PutEncryptionConfiguration",
    ("bucket", "GET", "object-lock"): "s3:GetBucketObjectLockConfiguration",
    ("bucket", "PUT", "object-lock"): "s3:PutBucketObjectLockConfiguration",
    ("bucket", "GET", "notification"): "s3:GetBucketNotification",
    ("bucket", "PUT", "notification"): "s3:PutBucketNotification",
    ("bucket", "GET", "replication"): "s3:GetReplicationConfiguration",
    ("bucket", "PUT", "replication"): "s3:PutReplicationConfiguration",
    ("bucket", "DELETE", "replication"): "s3:PutReplicationConfiguration",
    ("bucket", "GET", "accelerate"): "s3:GetAccelerateConfiguration",
    ("bucket", "PUT", "accelerate"): "s3:PutAccelerateConfiguration",
    ("bucket", "GET", "requestPayment"): "s3:GetBucketRequestPayment",
    ("bucket", "PUT", "requestPayment"): "s3:PutBucketRequestPayment",
    ("bucket", "GET", "ownershipControls"): "s3:GetBucketOwnershipControls",
    ("bucket", "PUT", "ownershipControls"): "s3:PutBucketOwnershipControls",
    ("bucket", "DELETE", "ownershipControls"): "s3:PutBucketOwnershipControls",
    ("bucket", "GET", "publicAccessBlock"): "s3:GetBucketPublicAccessBlock",
    ("bucket", "PUT", "publicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("bucket", "DELETE", "publicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("object", "GET", ""): "s3:GetObject",
    ("object", "HEAD", ""): "s3:GetObject",
    ("object", "PUT", ""): "s3:PutObject",
    ("object", "DELETE", ""): "s3:DeleteObject",
    ("object", "POST", "uploads"): "s3:PutObject",
    ("object", "PUT", "uploadId"): "s3:PutObject",
    ("object", "POST", "uploadId"): "s3:PutObject",
    ("object", "DELETE", "uploadId"): "s3:AbortMultipartUpload",
    ("object", "GET", "uploadId"): "s3:ListMultipartUploadParts",
    ("object", "GET", "acl"): "s3:GetObjectAcl",
    ("object", "PUT", "acl"): "s3:PutObjectAcl",
    ("object", "GET", "tagging"): "s3:GetObjectTagging",
    ("object", "PUT", "tagging"): "s3:PutObjectTagging",
    ("object", "DELETE", "tagging"): "s3:DeleteObjectTagging",
    ("object", "GET", "legal-hold"): "s3:GetObjectLegalHold",
    ("object", "PUT", "legal-hold"): "s3:PutObjectLegalHold",
    ("object", "GET", "retention"): "s3:GetObjectRetention",
    ("object", "PUT", "retention"): "s3:PutObjectRetention",
    ("object", "POST", "restore"): "s3:RestoreObject",
    ("object", "POST", "select"): "s3:GetObject",
    ("object", "GET", "attributes"): "s3:GetObjectAttributes",
    ("object", "GET", "torrent"): "s3:GetObjectTorrent",
}
# With ?versionId= these act on one version: AWS names a separate action.
VERSION_ACTIONS = {
    "s3:GetObject": "s3:GetObjectVersion", "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl", "s3:PutObjectAcl": "s3:PutObjectVersionAcl",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
}
# Action names a policy may use (wildcards must match at least one).
KNOWN_ACTIONS = frozenset(ACTIONS.values()) | frozenset(VERSION_ACTIONS.values()) | {
    "s3:ListAllMyBuckets", "s3:GetBucketAcl", "s3:ListBucketMultipartUploads",
    "s3:BypassGovernanceRetention", "s3:ReplicateObject", "s3:ReplicateDelete",
    "s3:ObjectOwnerOverrideToBucketOwner", "s3:GetObjectVersionForReplication",
    "s3:PutBucketObjectLockConfiguration", "s3:GetBucketPolicyStatus"}

# What an ACL grants: the permission, on the bucket or on the object.
BUCKET_ACL_PERMISSION = {
    "s3:ListBucket": "READ", "s3:ListBucketVersions": "READ",
    "s3:ListBucketMultipartUploads": "READ",
    "s3:PutObject": "WRITE", "s3:DeleteObject": "WRITE", "s3:DeleteObjectVersion": "WRITE",
    "s3:AbortMultipartUpload": "WRITE", "s3:ListMultipartUploadParts": "WRITE",
    "s3:GetBucketAcl": "READ_ACP", "s3:PutBucketAcl": "WRITE_ACP",
}
OBJECT_ACL_PERMISSION = {
    "s3:GetObject": "READ", "s3:GetObjectVersion": "READ", "s3:GetObjectTorrent": "READ",
    "s3:GetObjectAcl": "READ_ACP", "s3:GetObjectVersionAcl": "READ_ACP",
    "s3:PutObjectAcl": "WRITE_ACP", "s3:PutObjectVersionAcl": "WRITE_ACP",
}
# Object actions an object's owner may always perform on it (besides what its ACL governs).
OBJECT_OWNER_ACTIONS = frozenset(OBJECT_ACL_PERMISSION) | {
    "s3:GetObjectTagging", "s3:PutObjectTagging", "s3:DeleteObjectTagging",
    "s3:GetObjectVersionTagging", "s3:PutObjectVersionTagging",
    "s3:DeleteObjectVersionTagging", "s3:GetObjectAttributes"}
# Only the bucket owner, never denied by its own policy (AWS's lock-out protection).
POLICY_ACTIONS = frozenset({"s3:GetBucketPolicy", "s3:PutBucketPolicy",
                            "s3:DeleteBucketPolicy"})


def request_action(req: S3Request) -> str:
    """The action of the request itself, from its method, level and sub-resource."""
    from gateway.s3.front import SUBRESOURCES  # front imports the ops, so import late

    level = "bucket" if req.key is None else "object"
    sub = next((name for name in SUBRESOURCES if name in req.query), "")
    action = ACTIONS.get((level, req.http.method, sub), f"s3:{req.http.method}{sub}Unknown")
    if "versionId" in req.query:
        action = VERSION_ACTIONS.get(action, action)
    if action == "s3:ListBucket" and "versions" in req.query:
        action = "s3:ListBucketVersions"
    return action


# --- bucket policy -----------------------------------------------------------------------------

MAX_POLICY_BYTES = 20 * 1024
_ACCOUNT_ARN_RE = re.compile(r"^arn:aws:iam::(\d{12}):(root|user/.+|role/.+)$")
CONDITION_OPERATORS = frozenset({
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "IpAddress", "NotIpAddress", "Bool", "Null",
    "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
    "NumericGreaterThan", "NumericGreaterThanEquals", "ArnEquals", "ArnLike",
    "ArnNotEquals", "ArnNotLike"})


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" | "Deny"
    principals: tuple[str, ...] | None  # normalized; None = NotPrincipal list not used
    not_principals: tuple[str, ...] | None
    actions: tuple[str, ...] | None
    not_actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None
    not_resources: tuple[str, ...] | None
    # (operator with its ForAnyValue:/ForAllValues: qualifier, key, values)
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]


def condition_key_name(key: str) -> str:
    """Condition key names compare case-insensitively, except what follows a "/" (the tag key
    of s3:ExistingObjectTag/<key>, s3:RequestObjectTag/<key>: tag keys are case-sensitive)."""
    name, slash, rest = key.partition("/")
    return name.lower() + slash + rest


def _malformed(message: str) -> S3Error:
    return S3Error("MalformedPolicy", message)


def _string_list(value: Any, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise _malformed(f"Policy has an invalid {what}")
    return tuple(items)


def _principals(value: Any) -> tuple[str, ...]:
    """Normalized to "*", "account:<shortid>", "canonical:<id>" or "other:<text>"."""
    if value == "*":
        return ("*",)
    if not isinstance(value, dict) or not value:
        raise _malformed("Invalid principal in policy")
    found: list[str] = []
    for kind, entries in value.items():
        for entry in _string_list(entries, "principal"):
            if kind == "AWS":
                match = _ACCOUNT_ARN_RE.match(entry)
                if entry == "*":
                    found.append("*")
                elif re.fullmatch(r"\d{12}", entry):
                    found.append(f"account:{entry}")
                elif match and match.group(2) == "root":
                    found.append(f"account:{match.group(1)}")
                elif match:
                    found.append(f"other:{entry}")  # IAM users/roles: none exist here
                else:
                    raise _malformed("Invalid principal in policy")
            elif kind == "CanonicalUser":
                found.append(f"canonical:{entry}")
            elif kind in ("Service", "Federated"):
                found.append(f"other:{entry}")
            else:
                raise _malformed("Invalid principal in policy")
    return tuple(found)


def _check_action(pattern: str) -> str:
    if pattern == "*":
        return pattern
    if not pattern.lower().startswith("s3:"):
        raise _malformed("Policy has invalid action")
    regex = _glob(pattern.lower())
    if not any(regex.match(known.lower()) for known in KNOWN_ACTIONS):
        raise _malformed("Policy has invalid action")
    return pattern


def _check_resource(pattern: str, bucket: str) -> str:
    if not pattern.startswith("arn:aws:s3:::"):
        raise _malformed("Policy has invalid resource")
    bucket_part = pattern[len("arn:aws:s3:::"):].split("/", 1)[0]
    if not _glob(bucket_part).match(bucket):
        raise _malformed("Policy has invalid resource")
    return pattern


def parse_policy(text: str, bucket: str) -> list[Statement]:
    """Validate a bucket policy (MalformedPolicy when wrong) and return its statements."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise _malformed("Policy exceeds the maximum allowed document size.")
    if not text.lstrip().startswith("{"):
        raise _malformed("Policies must be valid JSON and the first byte must be '{'")
    try:
        doc = json.loads(text)
    except ValueError:
        raise _malformed("Policies must be valid JSON and the first byte must be '{'") from None
    if not isinstance(doc, dict):
        raise _malformed("Policies must be valid JSON and the first byte must be '{'")
    version = doc.get("Version")
    if version is not None and version not in ("2012-10-17", "2008-10-17"):
        raise _malformed("The policy must contain a valid version string")
    raw = doc.get("Statement")
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise _malformed("Missing required field Statement")
    statements = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise _malformed("Policy has an invalid statement")
        statements.append(_parse_statement(entry, bucket))
    return statements


def _parse_statement(entry: dict[str, Any], bucket: str) -> Statement:
    effect = entry.get("Effect")
    if effect is None:
        raise _malformed("Missing required field Effect")
    if effect not in ("Allow", "Deny"):
        raise _malformed(f"Invalid effect: {effect}")
    if ("Principal" in entry) == ("NotPrincipal" in entry):
        raise _malformed("Missing required field Principal")
    if ("Action" in entry) == ("NotAction" in entry):
        raise _malformed("Missing required field Action")
    if ("Resource" in entry) == ("NotResource" in entry):
        raise _malformed("Missing required field Resource")

    def opt(name: str, parse: Any) -> Any:
        return parse(entry[name]) if name in entry else None

    actions = opt("Action", lambda v: tuple(_check_action(a) for a in _string_list(v, "action")))
    not_actions = opt("NotAction",
                      lambda v: tuple(_check_action(a) for a in _string_list(v, "action")))
    resources = opt("Resource", lambda v: tuple(_check_resource(r, bucket)
                                                for r in _string_list(v, "resource")))
    not_resources = opt("NotResource", lambda v: tuple(_check_resource(r, bucket)
                                                       for r in _string_list(v, "resource")))
    conditions: list[tuple[str, str, tuple[str, ...]]] = []
    raw_conditions = entry.get("Condition", {})
    if not isinstance(raw_conditions, dict):
        raise _malformed("Policy has an invalid condition")
    for operator, block in raw_conditions.items():
        qualifier, _, base = operator.rpartition(":")
        if qualifier not in ("", "ForAnyValue", "ForAllValues") or \
                base.removesuffix("IfExists") not in CONDITION_OPERATORS:
            raise _malformed(f"Invalid Condition type : {operator}")
        if not isinstance(block, dict) or not block:
            raise _malformed("Policy has an invalid condition")
        for key, values in block.items():
            items = values if isinstance(values, list) else [values]
            if not items or not all(isinstance(v, (str, bool, int, float)) for v in items):
                raise _malformed(f"Policy has an invalid condition value for {key}")
            texts = tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in items)
            if base.removesuffix("IfExists") in ("IpAddress", "NotIpAddress"):
                for text in texts:
                    try:
                        ipaddress.ip_network(text, strict=False)
                    except ValueError:
                        raise _malformed(f"Invalid IP address in policy: {text}") from None
            conditions.append((operator, condition_key_name(key), texts))
    return Statement(
        effect=effect,
        principals=opt("Principal", _principals),
        not_principals=opt("NotPrincipal", _principals),
        actions=actions, not_actions=not_actions, resources=resources,
        not_resources=not_resources, conditions=tuple(conditions))


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """IAM wildcards: * any run of characters, ? one character."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in pattern) + r"\Z", re.DOTALL)


@lru_cache(maxsize=256)
def _cached_policy(text: str, bucket: str) -> tuple[Statement, ...]:
    return tuple(parse_policy(text, bucket))


ContextValue = str | tuple[str, ...]  # a multivalued key (s3:RequestObjectTagKeys): a tuple


@dataclass
class RequestContext:
    """What a policy is evaluated against."""

    account: Account | None
    action: str
    resource: str  # arn:aws:s3:::bucket or arn:aws:s3:::bucket/key
    keys: dict[str, ContextValue]  # condition keys, named by condition_key_name()


def _principal_matches(principals: tuple[str, ...], account: Account | None) -> bool:
    for principal in principals:
        if principal == "*":
            return True
        if account is None:
            continue
        if principal == f"account:{account.shortid}" or principal == f"canonical:{account.canonical_id}":
            return True
    return False


def _condition_holds(operator: str, key: str, values: tuple[str, ...],
                     context: dict[str, ContextValue]) -> bool:
    """One condition. ForAllValues: every value the request has for the key matches (true
    when it has none); ForAnyValue: at least one does. A multivalued key under a plain
    operator matches when any of its values does."""
    qualifier, _, operator = operator.rpartition(":")
    actual = context.get(key)
    if isinstance(actual, tuple) or qualifier:
        found = actual if isinstance(actual, tuple) else (() if actual is None else (actual,))
        if operator.removesuffix("IfExists") == "Null":
            return (not found) == (values[0].lower() == "true")
        if qualifier == "ForAllValues":
            return all(_value_holds(operator, values, value) for value in found)
        return any(_value_holds(operator, values, value) for value in found)
    return _value_holds(operator, values, actual)


def _value_holds(operator: str, values: tuple[str, ...], actual: str | None) -> bool:
    if_exists = operator.endswith("IfExists")
    operator = operator.removesuffix("IfExists")
    if operator == "Null":
        return (actual is None) == (values[0].lower() == "true")
    if actual is None:
        return if_exists or operator in ("StringNotEquals", "StringNotEqualsIgnoreCase",
                                         "StringNotLike", "NotIpAddress", "ArnNotEquals",
                                         "ArnNotLike", "NumericNotEquals")
    if operator in ("IpAddress", "NotIpAddress"):
        try:
            address = ipaddress.ip_address(actual)
        except ValueError:
            return operator == "NotIpAddress"
        inside = any(address in ipaddress.ip_network(v, strict=False) for v in values
                     if ipaddress.ip_network(v, strict=False).version == address.version)
        return inside if operator == "IpAddress" else not inside
    if operator == "Bool":
        return actual.lower() in (v.lower() for v in values)
    if operator.startswith("Numeric"):
        try:
            number = float(actual)
            targets = [float(v) for v in values]
        except ValueError:
            return False
        compare = {"NumericEquals": lambda a, b: a == b,
                   "NumericNotEquals": lambda a, b: a != b,
                   "NumericLessThan": lambda a, b: a < b,
                   "NumericLessThanEquals": lambda a, b: a <= b,
                   "NumericGreaterThan": lambda a, b: a > b,
                   "NumericGreaterThanEquals": lambda a, b: a >= b}[operator]
        if operator == "NumericNotEquals":
            return all(compare(number, t) for t in targets)
        return any(compare(number, t) for t in targets)
    negated = "Not" in operator
    if operator.endswith("IgnoreCase"):
        hit = actual.lower() in (v.lower() for v in values)
    elif operator.endswith("Like"):
        hit = any(_glob(v).match(actual) for v in values)
    else:
        hit = actual in values
    return not hit if negated else hit


def _statement_matches(statement: Statement, ctx: RequestContext) -> bool:
    if statement.principals is not None:
        if not _principal_matches(statement.principals, ctx.account):
            return False
    elif statement.not_principals is not None and _principal_matches(statement.not_principals,
                                                                      ctx.account):
        return False
    action = ctx.action.lower()
    if statement.actions is not None:
        if not any(_glob(a.lower()).match(action) for a in statement.actions):
            return False
    elif statement.not_actions is not None and any(
            _glob(a.lower()).match(action) for a in statement.not_actions):
        return False
    if statement.resources is not None:
        if not any(_glob(r).match(ctx.resource) for r in statement.resources):
            return False
    elif statement.not_resources is not None and any(
            _glob(r).match(ctx.resource) for r in statement.not_resources):
        return False
    return all(_condition_holds(op, key, values, ctx.keys)
               for op, key, values in statement.conditions)


def evaluate_policy(text: str, bucket: str, ctx: RequestContext) -> str | None:
    """"Deny" when a statement denies, else "Allow" when one allows, else None."""
    try:
        statements = _cached_policy(text, bucket)
    except S3Error:  # stored policies were validated; never let one break every request
        return None
    allowed = False
    for statement in statements:
        if _statement_matches(statement, ctx):
            if statement.effect == "Deny":
                return "Deny"
            allowed = True
    return "Allow" if allowed else None


def condition_keys(req: S3Request, account: Account | None,
                   obj: ObjectRecord | None = None) -> dict[str, ContextValue]:
    """The condition keys of the request, for `obj` when the decision is about one exact
    object version (s3:ExistingObjectTag/<key> are its tags)."""
    source = req.http.remote or ""
    try:
        # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; policies name them in
        # IPv4, and an IPv6 address never falls in an IPv4 range: a Deny would not apply.
        mapped = getattr(ipaddress.ip_address(source), "ipv4_mapped", None)
        source = str(mapped) if mapped is not None else source
    except ValueError:
        pass  # not an IP (a unix socket): no IpAddress condition matches it
    keys: dict[str, ContextValue] = {
        "aws:sourceip": source,
        "aws:securetransport": "true" if req.http.secure else "false",
    }
    if account is not None:
        keys["aws:principalaccount"] = account.shortid
        keys["aws:userid"] = account.shortid
        keys["aws:username"] = account.name
        keys["aws:principalarn"] = account.arn
        keys["s3:signatureversion"] = ("AWS4-HMAC-SHA256" if req.auth.signature_version == 4
                                       else "AWS")
    headers = req.headers
    for header, name in (("Referer", "aws:referer"), ("User-Agent", "aws:useragent"),
                         ("x-amz-acl", "s3:x-amz-acl"),
                         ("x-amz-copy-source", "s3:x-amz-copy-source"),
                         ("x-amz-content-sha256", "s3:x-amz-content-sha256"),
                         ("x-amz-server-side-encryption", "s3:x-amz-server-side-encryption"),
                         ("x-amz-metadata-directive", "s3:x-amz-metadata-directive"),
                         ("x-amz-storage-class", "s3:x-amz-storage-class"),
                         *((grant, f"s3:{grant}") for grant in GRANT_HEADERS)):
        if header in headers:
            keys[name] = headers[header]
    for param, name in (("prefix", "s3:prefix"), ("delimiter", "s3:delimiter"),
                        ("max-keys", "s3:max-keys"), ("versionId", "s3:versionid")):
        if param in req.query:
            keys[name] = req.query[param]
    tagging = headers.get("x-amz-tagging")
    if tagging is not None:  # the tags a write asks for (PutObject, CopyObject, uploads)
        requested = dict(parse_qsl(tagging, keep_blank_values=True))
        keys["s3:requestobjecttagkeys"] = tuple(requested)
        for tag, value in requested.items():
            keys[f"s3:requestobjecttag/{tag}"] = value
    if obj is not None:
        for tag, value in obj.tags.items():
            keys[f"s3:existingobjecttag/{tag}"] = value
    return keys


# --- bucket settings: object ownership, public access block, expected owner ---------------------

OWNERSHIP_MODES = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")
# Not AWS's default since 2023 (BucketOwnerEnforced): buckets without the setting keep ACLs
# working as they always did here (README: the ownership controls row).
DEFAULT_OWNERSHIP = "ObjectWriter"
PUBLIC_ACCESS_SETTINGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                          "RestrictPublicBuckets")


def object_ownership(bucket: BucketRecord) -> str:
    return bucket.attrs.get("ownership") or DEFAULT_OWNERSHIP


def acls_disabled(bucket: BucketRecord) -> bool:
    """BucketOwnerEnforced: ACLs grant nothing and cannot be set; the bucket owner owns all."""
    return object_ownership(bucket) == "BucketOwnerEnforced"


def blocks(bucket: BucketRecord, setting: str) -> bool:
    """Whether the bucket's public access block has `setting` (PUBLIC_ACCESS_SETTINGS) on."""
    config = bucket.attrs.get("publicAccessBlock")
    return bool(config and config.get(setting))


def refuse_public_acl(bucket: BucketRecord, grants: Iterable[Grant]) -> None:
    """BlockPublicAcls: an ACL that grants anything to everyone is refused (403)."""
    if blocks(bucket, "BlockPublicAcls") and acl_is_public(grants):
        raise S3Error("AccessDenied", "Access Denied: the bucket's public access block "
                      "(BlockPublicAcls) refuses public ACLs.")


# Condition keys that, bound to fixed values, make an Allow to everyone non-public (AWS's
# "The meaning of public"), and the operators that bind them.
_LIMITING_KEYS = frozenset({
    "aws:sourcearn", "aws:sourcevpc", "aws:sourcevpce", "aws:sourceowner", "aws:sourceaccount",
    "s3:x-amz-server-side-encryption-aws-kms-key-id", "aws:userid", "aws:principalaccount",
    "aws:principalarn", "aws:principalorgid", "aws:sourceorgid", "s3:dataaccesspointarn",
    "s3:dataaccesspointaccount"})
_BINDING_OPERATORS = frozenset({"StringEquals", "StringEqualsIgnoreCase", "StringLike",
                                "ArnEquals", "ArnLike"})


def _limits_to_fixed_values(operator: str, key: str, values: tuple[str, ...]) -> bool:
    if ":" in operator or operator.endswith("IfExists"):  # absent keys (or sets) pass
        return False
    if operator == "IpAddress" and key == "aws:sourceip":
        # A CIDR names a set of clients; one as wide as the Internet limits nothing.
        networks = [ipaddress.ip_network(v, strict=False) for v in values]
        return all(n.prefixlen >= (8 if n.version == 4 else 32) for n in networks)
    if operator not in _BINDING_OPERATORS or key not in _LIMITING_KEYS:
        return False
    fixed = all("*" not in v and "?" not in v and "${" not in v for v in values)
    if key == "aws:userid":
        return fixed and not any(v.endswith(":*") for v in values)
    return fixed


def policy_is_public(text: str, bucket: str) -> bool:
    """AWS's definition: a policy is public when one of its Allow statements grants to every
    principal ("*", or NotPrincipal) without a condition binding a fixed source (IP range,
    account, ARN, VPC...) to the request."""
    try:
        statements = _cached_policy(text, bucket)
    except S3Error:
        return False
    for statement in statements:
        if statement.effect != "Allow":
            continue
        to_all = statement.not_principals is not None or (
            statement.principals is not None and "*" in statement.principals)
        if to_all and not any(_limits_to_fixed_values(op, key, values)
                              for op, key, values in statement.conditions):
            return True
    return False


def _copy_source_bucket(req: S3Request) -> str | None:
    source = req.headers.get("x-amz-copy-source")
    if source is None:
        return None
    return unquote(source.partition("?")[0]).removeprefix("/").partition("/")[0]


def check_expected_owner(req: S3Request, bucket: BucketRecord) -> None:
    """x-amz-expected-bucket-owner (the request's bucket) and x-amz-source-expected-bucket-owner
    (a copy's source bucket): 403 AccessDenied unless the bucket's owner is that account (its
    12-digit account id, or its canonical id)."""
    for header in ("x-amz-expected-bucket-owner", "x-amz-source-expected-bucket-owner"):
        expected = req.headers.get(header)
        if expected is None:
            continue
        applies = (bucket.name == req.bucket if header == "x-amz-expected-bucket-owner"
                   else _copy_source_bucket(req) == bucket.name)
        if not applies:
            continue
        expected = expected.strip()
        owner = req.gateway.accounts.by_canonical_id(bucket.owner)
        if expected != bucket.owner and (owner is None or expected != owner.shortid):
            raise S3Error("AccessDenied", f"Access Denied: the bucket is not owned by the "
                          f"account {header} names.")


# --- the decision ------------------------------------------------------------------------------

def _policy_decision(req: S3Request, bucket: BucketRecord, action: str, key: str | None,
                     version_id: str | None, obj: ObjectRecord | None = None) -> str | None:
    """The bucket policy's verdict ("Deny", "Allow" or None) on `action` for `key`, with
    s3:VersionId the version the request names (a copy source names it in a header)."""
    policy = bucket.attrs.get("policy")
    if policy is None:
        return None
    resource = f"arn:aws:s3:::{bucket.name}" + (f"/{key}" if key is not None else "")
    keys = condition_keys(req, req.account, obj)
    keys.pop("s3:versionid", None)
    if version_id is not None:
        keys["s3:versionid"] = version_id
    decision = evaluate_policy(policy, bucket.name,
                               RequestContext(req.account, action, resource, keys))
    if decision == "Allow" and blocks(bucket, "RestrictPublicBuckets") \
            and policy_is_public(policy, bucket.name):
        # A public policy then grants only to the bucket owner's own account.
        account = req.account
        if account is None or account.canonical_id != bucket.owner:
            return None
    return decision


async def authorize(req: S3Request, bucket: BucketRecord, action: str,
                    key: str | None = None) -> None:
    """Raise AccessDenied unless the requester may perform `action` on the bucket (or on `key`
    in it), for everything the bucket decides: its policy, its owner, its ACL.

    Object actions that an object's own owner and ACL govern (OBJECT_OWNER_ACTIONS: reads,
    ACLs, tagging) cannot be decided here: which version they act on is known only once the
    caller has looked it up. For those this raises only on the policy's explicit Deny, and the
    caller must then call `authorize_object` with the exact record it serves (ops/common.py
    read_version does, for every object read)."""
    check_expected_owner(req, bucket)
    account = req.account
    is_owner = account is not None and account.canonical_id == bucket.owner
    if action in POLICY_ACTIONS:
        if is_owner:
            return
        raise S3Error("AccessDenied")
    if bucket.attrs.get("policy") is None and is_owner:  # the common case costs nothing
        return
    decision = _policy_decision(req, bucket, action, key, req.query.get("versionId"))
    if decision == "Deny":
        raise S3Error("AccessDenied")
    if key is not None and action in OBJECT_OWNER_ACTIONS:
        return  # decided by authorize_object on the version itself, never on the current one
    if decision == "Allow" or is_owner:
        return
    if action in BUCKET_ACL_PERMISSION and not acls_disabled(bucket) and acl_allows(
            acl_of(bucket), account, BUCKET_ACL_PERMISSION[action],
            blocks(bucket, "IgnorePublicAcls")):
        return
    raise S3Error("AccessDenied")


def authorize_object(req: S3Request, bucket: BucketRecord, obj: ObjectRecord, action: str,
                     version_id: str | None = None) -> None:
    """Raise AccessDenied unless the requester may perform `action` on `obj`: exactly that
    version (or delete marker), with its own owner and ACL. `version_id` is the id the request
    named (None: the current version); with one, the action is AWS's per-version action
    (s3:GetObject -> s3:GetObjectVersion, ...), which is what the policy is evaluated on.

    Order, as `authorize`: the policy's explicit Deny, then its Allow, then the bucket owner,
    then the version's owner (for what OBJECT_OWNER_ACTIONS lists), then the version's ACL.
    Never the bucket ACL for object reads: bucket READ lets one list, not read. With ACLs
    disabled (BucketOwnerEnforced) only the policy and the bucket owner count."""
    check_expected_owner(req, bucket)
    if version_id is not None:
        action = VERSION_ACTIONS.get(action, action)
    account = req.account
    is_bucket_owner = account is not None and account.canonical_id == bucket.owner
    if bucket.attrs.get("policy") is None and is_bucket_owner:
        return
    decision = _policy_decision(req, bucket, action, obj.key, version_id, obj)
    if decision == "Deny":
        raise S3Error("AccessDenied")
    if decision == "Allow" or is_bucket_owner:
        return
    if acls_disabled(bucket):
        raise S3Error("AccessDenied")
    ignore_public = blocks(bucket, "IgnorePublicAcls")
    if action in BUCKET_ACL_PERMISSION:  # object writes and deletes: the bucket ACL's WRITE
        if acl_allows(acl_of(bucket), account, BUCKET_ACL_PERMISSION[action], ignore_public):
            return
        raise S3Error("AccessDenied")
    if action in OBJECT_OWNER_ACTIONS and account is not None \
            and account.canonical_id == obj.owner:
        return
    permission = OBJECT_ACL_PERMISSION.get(action)
    if permission is not None and acl_allows(acl_of(obj), account, permission, ignore_public):
        return
    raise S3Error("AccessDenied")


def requester_id(req: S3Request) -> str:
    """The canonical id that owns what this request creates (anonymous: the AllUsers id), or
    the bucket owner where the bucket's object ownership gives it every object
    (BucketOwnerEnforced), or those written with bucket-owner-full-control
    (BucketOwnerPreferred)."""
    bucket = req.http.get(BUCKET_RECORD)
    if isinstance(bucket, BucketRecord):
        mode = object_ownership(bucket)
        if mode == "BucketOwnerEnforced" or (
                mode == "BucketOwnerPreferred"
                and req.headers.get("x-amz-acl", "").strip() == "bucket-owner-full-control"):
            return bucket.owner
    return req.account.canonical_id if req.account is not None else ANONYMOUS_ID
