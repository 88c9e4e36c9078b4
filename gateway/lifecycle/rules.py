"""Lifecycle configuration: AWS's validation of PutBucketLifecycleConfiguration, the stored form
(bucket.attrs["lifecycle"], a list of rule dicts), its XML rendering, and the pure decisions:
which rules match an object, when an action falls due, what a key's versions need now.

Time: a rule's "day" is `day` seconds (config lifecycle.dayLengthSeconds, 86400 by default);
as on AWS, a due time is rounded up to the next day boundary (midnight UTC for real days).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element

from gateway.errors import S3Error
from gateway.metadata.base import ObjectRecord
from gateway.s3.xml import Node, http_time, parse

Rule = dict[str, Any]
MAX_RULES = 1000
MAX_ID = 255
STORAGE_CLASSES = ("STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE",
                   "GLACIER_IR")
# AWS: objects must stay this many days before moving to these classes.
MIN_TRANSITION_DAYS = {"STANDARD_IA": 30, "ONEZONE_IA": 30}
_RULE_CHILDREN = ("ID", "Prefix", "Filter", "Status", "Expiration", "Transition",
                  "NoncurrentVersionTransition", "NoncurrentVersionExpiration",
                  "AbortIncompleteMultipartUpload")
_REPEATED = ("Transition", "NoncurrentVersionTransition")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?)?$")


def malformed(message: str | None = None) -> S3Error:
    return S3Error("MalformedXML", message)


def invalid_argument(message: str, name: str | None = None, value: str | None = None) -> S3Error:
    extra = {}
    if name is not None:
        extra["ArgumentName"] = name
    if value is not None:
        extra["ArgumentValue"] = value
    return S3Error("InvalidArgument", message, **extra)


def invalid_request(message: str) -> S3Error:
    return S3Error("InvalidRequest", message)


# --- parsing ----------------------------------------------------------------------------------

def _children(node: Element, allowed: tuple[str, ...], repeated: tuple[str, ...] = ()
              ) -> dict[str, list[Element]]:
    found: dict[str, list[Element]] = {}
    for child in node:
        if child.tag not in allowed:
            raise malformed(f"Unexpected element {child.tag} in {node.tag}.")
        found.setdefault(child.tag, []).append(child)
    for tag, nodes in found.items():
        if len(nodes) > 1 and tag not in repeated:
            raise malformed(f"{node.tag} may contain one {tag} only.")
    return found


def _text(node: Element) -> str:
    return (node.text or "").strip()


def _integer(node: Element) -> int:
    try:
        return int(_text(node))
    except ValueError:
        raise malformed(f"{node.tag} must be an integer.") from None


def _positive(node: Element, action: str) -> int:
    value = _integer(node)
    if value <= 0:
        raise invalid_argument(f"'{node.tag}' for {action} action must be a positive integer",
                               node.tag, str(value))
    return value


def _date(node: Element) -> float:
    text = _text(node)
    if not _ISO_DATE.match(text):
        raise invalid_argument("Invalid date: the date must be in ISO 8601 format", "Date", text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid_argument("Invalid date: the date must be in ISO 8601 format", "Date",
                               text) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    if (when.hour, when.minute, when.second, when.microsecond) != (0, 0, 0, 0):
        raise invalid_argument("'Date' must be at midnight GMT", "Date", text)
    return when.timestamp()


def _tag(node: Element) -> tuple[str, str]:
    parts = _children(node, ("Key", "Value"))
    if "Key" not in parts:
        raise malformed("Tag needs a Key.")
    key = parts["Key"][0].text or ""
    value = parts["Value"][0].text or "" if "Value" in parts else ""
    if not key or len(key) > 128 or len(value) > 256:
        raise S3Error("InvalidTag", "The TagKey you have provided is invalid" if not key or
                      len(key) > 128 else "The TagValue you have provided is invalid")
    return key, value


def _size(node: Element) -> int:
    value = _integer(node)
    if value < 0:
        raise invalid_argument(f"'{node.tag}' must be a non-negative integer", node.tag,
                               str(value))
    return value


def _filter(node: Element) -> dict[str, Any]:
    """A <Filter>: the stored form keeps which shape it had (for GET) and its conditions."""
    parts = _children(node, ("Prefix", "Tag", "And", "ObjectSizeGreaterThan",
                             "ObjectSizeLessThan"))
    if len(parts) > 1:
        raise malformed("Filter must have exactly one of Prefix, Tag, And, "
                        "ObjectSizeGreaterThan or ObjectSizeLessThan.")
    if not parts:
        return {"shape": "empty", "prefix": "", "tags": {}}
    tag, nodes = next(iter(parts.items()))
    child = nodes[0]
    if tag == "Prefix":
        return {"shape": "prefix", "prefix": child.text or "", "tags": {}}
    if tag == "Tag":
        key, value = _tag(child)
        return {"shape": "tag", "prefix": "", "tags": {key: value}}
    if tag == "ObjectSizeGreaterThan":
        return {"shape": "gt", "prefix": "", "tags": {}, "gt": _size(child)}
    if tag == "ObjectSizeLessThan":
        return {"shape": "lt", "prefix": "", "tags": {}, "lt": _size(child)}
    inner = _children(child, ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan"),
                      repeated=("Tag",))
    result: dict[str, Any] = {"shape": "and", "prefix": "", "tags": {}}
    if "Prefix" in inner:
        result["prefix"] = inner["Prefix"][0].text or ""
    for tag_node in inner.get("Tag", []):
        key, value = _tag(tag_node)
        if key in result["tags"]:
            raise invalid_request("Duplicate Tag Keys are not allowed.")
        result["tags"][key] = value
    if "ObjectSizeGreaterThan" in inner:
        result["gt"] = _size(inner["ObjectSizeGreaterThan"][0])
    if "ObjectSizeLessThan" in inner:
        result["lt"] = _size(inner["ObjectSizeLessThan"][0])
    if sum(1 for name in inner for _ in inner[name]) < 2:
        raise malformed("And must combine at least two conditions.")
    return result


def _transition(node: Element, noncurrent: bool, storage_classes: Mapping[str, str]
                ) -> dict[str, Any]:
    days_tag = "NoncurrentDays" if noncurrent else "Days"
    allowed = ((days_tag, "StorageClass", "NewerNoncurrentVersions") if noncurrent
               else (days_tag, "Date", "StorageClass"))
    parts = _children(node, allowed)
    if "StorageClass" not in parts:
        raise malformed(f"{node.tag} needs a StorageClass.")
    storage_class = _text(parts["StorageClass"][0])
    if storage_class not in STORAGE_CLASSES:
        raise S3Error("InvalidStorageClass", "The storage class you specified is not valid",
                      StorageClassRequested=storage_class)
    if storage_class not in storage_classes:
        raise S3Error("InvalidStorageClass", f"Storage class {storage_class} is not mapped to "
                      "a location in this gateway's config (storageClasses).",
                      StorageClassRequested=storage_class)
    result: dict[str, Any] = {"class": storage_class}
    if (days_tag in parts) == ("Date" in parts):
        raise malformed(f"{node.tag} must have exactly one of {days_tag} or Date."
                        if not noncurrent else f"{node.tag} needs {days_tag}.")
    if days_tag in parts:
        days = _integer(parts[days_tag][0])
        if days < 0:
            raise invalid_argument(f"'{days_tag}' in {node.tag} action must be nonnegative",
                                   days_tag, str(days))
        least = MIN_TRANSITION_DAYS.get(storage_class, 0)
        if days < least:
            raise invalid_argument(f"'{days_tag}' in {node.tag} action must be greater than or "
                                   f"equal to {least} for storageClass '{storage_class}'",
                                   days_tag, str(days))
        result["days"] = days
    else:
        result["date"] = _date(parts["Date"][0])
    if "NewerNoncurrentVersions" in parts:
        result["newer"] = _newer(parts["NewerNoncurrentVersions"][0])
    return result


def _newer(node: Element) -> int:
    value = _integer(node)
    if not 1 <= value <= 100:
        raise invalid_argument("'NewerNoncurrentVersions' must be between 1 and 100",
                               "NewerNoncurrentVersions", str(value))
    return value


def _rule(node: Element, storage_classes: Mapping[str, str]) -> Rule:
    parts = _children(node, _RULE_CHILDREN, _REPEATED)
    rule: Rule = {}
    if "ID" in parts:
        rule["id"] = parts["ID"][0].text or ""
        if len(rule["id"]) > MAX_ID:
            raise invalid_argument(f"ID length should not exceed allowed limit of {MAX_ID}",
                                   "ID", rule["id"])
    if not rule.get("id"):
        # As AWS: a rule without an ID gets a generated one.
        rule["id"] = uuid.uuid4().hex
    if "Status" not in parts or _text(parts["Status"][0]) not in ("Enabled", "Disabled"):
        raise malformed("Status must be Enabled or Disabled.")
    rule["status"] = _text(parts["Status"][0])
    if "Prefix" in parts and "Filter" in parts:
        raise malformed("A rule cannot have both Prefix and Filter.")
    if "Prefix" in parts:
        rule["filter"] = {"shape": "legacy", "prefix": parts["Prefix"][0].text or "",
                          "tags": {}}
    elif "Filter" in parts:
        rule["filter"] = _filter(parts["Filter"][0])
    else:
        raise malformed("A rule needs a Filter (or a Prefix).")
    with_tags = bool(rule["filter"]["tags"])
    sized = "gt" in rule["filter"] or "lt" in rule["filter"]
    if "gt" in rule["filter"] and "lt" in rule["filter"] and \
            rule["filter"]["gt"] >= rule["filter"]["lt"]:
        raise invalid_argument("ObjectSizeGreaterThan must be less than ObjectSizeLessThan",
                               "ObjectSizeGreaterThan", str(rule["filter"]["gt"]))
    actions = 0
    if "Expiration" in parts:
        actions += 1
        exp = _children(parts["Expiration"][0], ("Days", "Date", "ExpiredObjectDeleteMarker"))
        if not exp:
            raise malformed("Expiration needs Days, Date or ExpiredObjectDeleteMarker.")
        if "Days" in exp and "Date" in exp:
            raise malformed("Expiration cannot have both Days and Date.")
        if "ExpiredObjectDeleteMarker" in exp:
            if "Days" in exp or "Date" in exp:
                raise malformed("ExpiredObjectDeleteMarker cannot be specified with Days or "
                                "Date in a Lifecycle Expiration Policy.")
            flag = _text(exp["ExpiredObjectDeleteMarker"][0]).lower()
            if flag not in ("true", "false"):
                raise malformed("ExpiredObjectDeleteMarker must be true or false.")
            if with_tags or sized:
                raise invalid_request("ExpiredObjectDeleteMarker cannot be specified with "
                                      "object tags or object size filters.")
            rule["expiration"] = {"marker": flag == "true"}
        elif "Days" in exp:
            rule["expiration"] = {"days": _positive(exp["Days"][0], "Expiration")}
        else:
            rule["expiration"] = {"date": _date(exp["Date"][0])}
    if "NoncurrentVersionExpiration" in parts:
        actions += 1
        nve = _children(parts["NoncurrentVersionExpiration"][0],
                        ("NoncurrentDays", "NewerNoncurrentVersions"))
        if "NoncurrentDays" not in nve:
            raise malformed("NoncurrentVersionExpiration needs NoncurrentDays.")
        rule["noncurrent_expiration"] = {
            "days": _positive(nve["NoncurrentDays"][0], "NoncurrentVersionExpiration")}
        if "NewerNoncurrentVersions" in nve:
            rule["noncurrent_expiration"]["newer"] = _newer(nve["NewerNoncurrentVersions"][0])
    if "AbortIncompleteMultipartUpload" in parts:
        actions += 1
        abort = _children(parts["AbortIncompleteMultipartUpload"][0], ("DaysAfterInitiation",))
        if "DaysAfterInitiation" not in abort:
            raise malformed("AbortIncompleteMultipartUpload needs DaysAfterInitiation.")
        if with_tags or sized:
            raise invalid_request("AbortIncompleteMultipartUpload cannot be specified with "
                                  "object tags or object size filters.")
        rule["abort_days"] = _positive(abort["DaysAfterInitiation"][0],
                                       "AbortIncompleteMultipartUpload")
    for tag, name, noncurrent in (("Transition", "transitions", False),
                                  ("NoncurrentVersionTransition", "noncurrent_transitions", True)):
        if tag not in parts:
            continue
        actions += 1
        moves = [_transition(n, noncurrent, storage_classes) for n in parts[tag]]
        if len({m["class"] for m in moves}) < len(moves):
            raise invalid_argument(f"'StorageClass' must be different for '{tag}' actions in "
                                   "same 'Rule'", "StorageClass")
        if len({"date" in m for m in moves}) > 1:
            raise invalid_request(f"Found mixed 'Date' and 'Days' based {tag} actions in "
                                  "lifecycle rule")
        rule[name] = moves
    if actions == 0:
        raise invalid_request("At least one action needs to be specified in a rule")
    _check_order(rule)
    return rule


def _check_order(rule: Rule) -> None:
    """Expiration must come after every transition (AWS's cross-action checks)."""
    expiration = rule.get("expiration", {})
    for move in rule.get("transitions", []):
        if "days" in expiration and "days" in move and expiration["days"] <= move["days"]:
            raise invalid_argument(
                f"'Days' in the Expiration action for filter '{rule['filter']['prefix']}' must "
                f"be greater than 'Days' in the Transition action", "Days",
                str(expiration["days"]))
        if "date" in expiration and "date" in move and expiration["date"] <= move["date"]:
            raise invalid_argument(
                f"'Date' in the Expiration action for filter '{rule['filter']['prefix']}' must "
                "be later than 'Date' in the Transition action", "Date")
    noncurrent = rule.get("noncurrent_expiration")
    for move in rule.get("noncurrent_transitions", []):
        if noncurrent and noncurrent["days"] <= move["days"]:
            raise invalid_argument(
                "'NoncurrentDays' in the NoncurrentVersionExpiration action must be greater "
                "than 'NoncurrentDays' in the NoncurrentVersionTransition action",
                "NoncurrentDays", str(noncurrent["days"]))


def parse_lifecycle(body: bytes, storage_classes: Mapping[str, str]) -> list[Rule]:
    """The rules of a PutBucketLifecycleConfiguration body, or the S3Error AWS answers."""
    root = parse(body, "LifecycleConfiguration")
    nodes = list(root)
    if not nodes or any(node.tag != "Rule" for node in nodes):
        raise malformed()
    if len(nodes) > MAX_RULES:
        raise malformed(f"The number of lifecycle rules should not exceed allowed limit of "
                        f"{MAX_RULES} rules")
    rules = [_rule(node, storage_classes) for node in nodes]
    ids = [rule["id"] for rule in rules]
    if len(set(ids)) < len(ids):
        raise invalid_argument("Rule ID must be unique. Found same ID for more than one rule",
                               "ID")
    return rules


# --- rendering --------------------------------------------------------------------------------

def _iso_date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _filter_nodes(flt: dict[str, Any]) -> Node:
    tags = [("Tag", [("Key", k), ("Value", v)]) for k, v in flt["tags"].items()]
    shape = flt["shape"]
    if shape == "legacy":
        return ("Prefix", flt["prefix"])
    if shape == "empty":
        return ("Filter", None)
    if shape == "prefix":
        return ("Filter", [("Prefix", flt["prefix"])])
    if shape == "tag":
        return ("Filter", tags)
    if shape == "gt":
        return ("Filter", [("ObjectSizeGreaterThan", flt["gt"])])
    if shape == "lt":
        return ("Filter", [("ObjectSizeLessThan", flt["lt"])])
    inner: list[Node] = [("Prefix", flt["prefix"])] if flt["prefix"] else []
    inner += tags
    if "gt" in flt:
        inner.append(("ObjectSizeGreaterThan", flt["gt"]))
    if "lt" in flt:
        inner.append(("ObjectSizeLessThan", flt["lt"]))
    return ("Filter", [("And", inner)])


def render_rules(rules: list[Rule]) -> list[Node]:
    """GetBucketLifecycleConfiguration's <Rule> nodes."""
    out: list[Node] = []
    for rule in rules:
        nodes: list[Node] = []
        expiration = rule.get("expiration")
        if expiration is not None:
            if "days" in expiration:
                nodes.append(("Expiration", [("Days", expiration["days"])]))
            elif "date" in expiration:
                nodes.append(("Expiration", [("Date", _iso_date(expiration["date"]))]))
            else:
                nodes.append(("Expiration", [("ExpiredObjectDeleteMarker",
                                              expiration["marker"])]))
        nodes += [("ID", rule["id"]), _filter_nodes(rule["filter"]), ("Status", rule["status"])]
        for move in rule.get("transitions", []):
            when = ("Days", move["days"]) if "days" in move else ("Date", _iso_date(move["date"]))
            nodes.append(("Transition", [when, ("StorageClass", move["class"])]))
        for move in rule.get("noncurrent_transitions", []):
            children: list[Node] = [("NoncurrentDays", move["days"]),
                                    ("StorageClass", move["class"])]
            if "newer" in move:
                children.append(("NewerNoncurrentVersions", move["newer"]))
            nodes.append(("NoncurrentVersionTransition", children))
        noncurrent = rule.get("noncurrent_expiration")
        if noncurrent is not None:
            children = [("NoncurrentDays", noncurrent["days"])]
            if "newer" in noncurrent:
                children.append(("NewerNoncurrentVersions", noncurrent["newer"]))
            nodes.append(("NoncurrentVersionExpiration", children))
        if "abort_days" in rule:
            nodes.append(("AbortIncompleteMultipartUpload",
                          [("DaysAfterInitiation", rule["abort_days"])]))
        out.append(("Rule", nodes))
    return out


# --- decisions --------------------------------------------------------------------------------

def due(start: float, days: int, day: float) -> float:
    """When an action `days` days after `start` falls due: rounded up to a day boundary."""
    return math.ceil((start + days * day) / day) * day


def matches(rule: Rule, key: str, tags: Mapping[str, str] | None = None,
            size: int | None = None) -> bool:
    """Whether an enabled rule's filter selects this object (tags/size None: not checked)."""
    if rule["status"] != "Enabled":
        return False
    flt = rule["filter"]
    if not key.startswith(flt["prefix"]):
        return False
    if tags is not None and any(tags.get(k) != v for k, v in flt["tags"].items()):
        return False
    if size is not None:
        if "gt" in flt and not size > flt["gt"]:
            return False
        if "lt" in flt and not size < flt["lt"]:
            return False
    return True


def expiry(rules: list[Rule], obj: ObjectRecord, day: float) -> tuple[float, str] | None:
    """(when, rule id) the current version `obj` expires by the earliest matching rule."""
    best: tuple[float, str] | None = None
    for rule in rules:
        expiration = rule.get("expiration")
        if not expiration or not matches(rule, obj.key, obj.tags, obj.size):
            continue
        if "days" in expiration:
            when = due(obj.last_modified, expiration["days"], day)
        elif "date" in expiration:
            when = expiration["date"]
        else:
            continue
        if best is None or when < best[0]:
            best = (when, rule["id"])
    return best


def expiration_header(rules: list[Rule], obj: ObjectRecord, day: float) -> str | None:
    """x-amz-expiration for a current version a rule expires."""
    found = expiry(rules, obj, day)
    if found is None:
        return None
    when, rule_id = found
    return f'expiry-date="{http_time(when)}", rule-id="{rule_id}"'


@dataclass(frozen=True)
class Action:
    """Something a key's version needs now. kind: "expire" (the current version: a delete
    marker in a versioning bucket), "delete-version" (a noncurrent version or an expired
    delete marker, removed for good), "transition" (to `storage_class`)."""

    kind: str
    key: str
    version_id: str | None
    etag: str
    storage_class: str | None = None
    rule_id: str = ""


def _transition_due(moves: list[dict[str, Any]], start: float, day: float,
                    now: float) -> str | None:
    """The coldest class whose transition is due (the latest due time)."""
    best: tuple[float, str] | None = None
    for move in moves:
        when = move["date"] if "date" in move else due(start, move["days"], day)
        if when <= now and (best is None or when > best[0]):
            best = (when, move["class"])
    return best[1] if best else None


def key_actions(rules: list[Rule], versions: list[ObjectRecord], now: float, day: float
                ) -> list[Action]:
    """What one key needs now, given all its versions newest first (versions[0] current)."""
    if not versions:
        return []
    actions: list[Action] = []
    current = versions[0]
    key = current.key
    if current.delete_marker:
        if len(versions) == 1 and any(
                rule.get("expiration", {}).get("marker") and matches(rule, key)
                for rule in rules):
            actions.append(Action("delete-version", key, current.version_id, "",
                                  rule_id="ExpiredObjectDeleteMarker"))
    else:
        found = expiry(rules, current, day)
        if found is not None and found[0] <= now:
            actions.append(Action("expire", key, current.version_id, current.etag,
                                  rule_id=found[1]))
        else:
            target = None
            for rule in rules:
                if rule.get("transitions") and matches(rule, key, current.tags, current.size):
                    target = _transition_due(rule["transitions"], current.last_modified, day,
                                             now) or target
            if target and current.attrs.get("storage_class", "STANDARD") != target:
                actions.append(Action("transition", key, current.version_id, current.etag,
                                      target))
    for index, version in enumerate(versions[1:], start=1):
        since = versions[index - 1].last_modified  # noncurrent since its successor came
        tags = None if version.delete_marker else version.tags
        size = None if version.delete_marker else version.size
        expired = False
        target = None
        for rule in rules:
            if not matches(rule, key, tags, size):
                continue
            rule_nve = rule.get("noncurrent_expiration")
            if rule_nve and due(since, rule_nve["days"], day) <= now and \
                    index > rule_nve.get("newer", 0):
                expired = True
            if not version.delete_marker:
                for move in rule.get("noncurrent_transitions", []):
                    if due(since, move["days"], day) <= now and index > move.get("newer", 0):
                        target = move["class"]
        if expired:
            actions.append(Action("delete-version", key, version.version_id, version.etag))
        elif target and version.attrs.get("storage_class", "STANDARD") != target:
            actions.append(Action("transition", key, version.version_id, version.etag, target))
    return actions


def abort_due(rules: list[Rule], key: str, initiated: float, day: float, now: float) -> bool:
    return any("abort_days" in rule and matches(rule, key)
               and due(initiated, rule["abort_days"], day) <= now for rule in rules)
