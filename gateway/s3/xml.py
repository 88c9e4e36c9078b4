"""All S3 XML in one place: a hardened parser with a size limit, and small renderers."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET

from gateway.errors import S3Error

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BODY = 1024 * 1024  # CompleteMultipartUpload with 10,000 parts fits well within 1 MiB

# A node is (tag, value): value is text, a number, None (empty element), or a list of nodes.
Node = tuple[str, Any]

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"})


_NEEDS_ESCAPE = re.compile(r'[&<>"\r]')


def escape(text: str) -> str:
    # Most keys and values need no escaping: one regex scan is cheaper than translate().
    return text.translate(_ESCAPES) if _NEEDS_ESCAPE.search(text) else text


def _render(node: Node, out: list[str]) -> None:
    tag, value = node
    end = tag.split(" ", 1)[0]  # a tag may carry attributes: 'Grantee xsi:type="Group"'
    if value is None:
        out.append(f"<{tag}></{end}>")
    elif isinstance(value, list):
        out.append(f"<{tag}>")
        for child in value:
            _render(child, out)
        out.append(f"</{end}>")
    else:
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append(f"<{tag}>{escape(str(value))}</{end}>")


def render(root: str, children: Iterable[Node], *, namespace: bool = True) -> bytes:
    ns = f' xmlns="{S3_NS}"' if namespace else ""
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}{ns}>']
    for child in children:
        _render(child, out)
    out.append(f"</{root}>")
    # "replace": a stray surrogate (undecodable request bytes) must not turn an answer into
    # a crash; costs nothing when there is none.
    return "".join(out).encode("utf-8", "replace")


# Characters XML 1.0 cannot carry at all, not even as a character reference.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """Text an error may echo from the request (a key, a header, a query value), made
    representable: what XML cannot hold becomes U+FFFD, so the client can parse the error."""
    return _XML_INVALID.sub("\ufffd", text)


def render_error(err: S3Error, request_id: str) -> bytes:
    children: list[Node] = [("Code", err.code), ("Message", err.message)]
    children += list(err.extra.items())
    if err.resource:
        children.append(("Resource", err.resource))
    children.append(("RequestId", request_id))
    safe = [(tag, xml_safe(str(value)) if isinstance(value, str) else value)
            for tag, value in children]
    return render("Error", safe, namespace=False)


def iso_time(epoch: float) -> str:
    """S3's timestamp form in XML: 2026-11-22T01:02:03.000Z."""
    millis = int(round(epoch * 1000))
    return _iso_seconds(millis // 1000) + f".{millis % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    # A listing page repeats the same seconds many times; strftime is the costly part.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def http_time(epoch: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))


def parse(body: bytes, root: str | None = None) -> Element:
    """Parse an XML request body; namespaces are stripped so callers match plain tag names."""
    if len(body) > MAX_XML_BODY:
        raise S3Error("MalformedXML", "The XML you provided was larger than allowed.")
    try:
        element = SafeET.fromstring(body)
    except Exception:  # defusedxml raises several types for hostile or broken input
        raise S3Error("MalformedXML") from None
    for node in element.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
    if root is not None and element.tag != root:
        raise S3Error("MalformedXML")
    return element


def child_text(element: Element, tag: str) -> str | None:
    found = element.find(tag)
    return None if found is None else (found.text or "")
