"""The access log's line: one JSON object per request, written without the logging module.

A line through `logging` (a LogRecord, a formatter, json.dumps of a dict, a flush per line)
cost ~13 % of a 4 KiB GET's instructions (bench/instructions.py). Here the line is one
f-string with only its free-text fields escaped, handed with its time to the log thread
(gateway/server.py), which stamps and writes it. Without that thread (a gateway embedded in
a test process) the line goes through the "gateway.access" logger as before."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from json.encoder import encode_basestring  # C: a JSON string literal, quotes included

log = logging.getLogger("gateway.access")

# Set by gateway.server.configure_logging: takes (time.time(), line) to the log thread.
sink: Callable[[tuple[float, str]], None] | None = None


def _text(value: object) -> str:
    if value is None:
        return "null"
    return encode_basestring(value if isinstance(value, str) else str(value))


def enabled() -> bool:
    return log.isEnabledFor(logging.INFO)


def write(*, request_id: str, client_ip: str | None, account: object, canonical_id: object,
          access_key_id: object, user_agent: str | None, method: str, operation: object,
          bucket: object, key: object, version_id: object, location: object, status: int,
          error_code: object, bytes_in: int, bytes_out: int, total_ms: float,
          turnaround_ms: float) -> None:
    """One line with S3's server access-log fields (names as tests/test_access_log.py
    lists them); every field is always there, null when unknown."""
    line = (f'{{"requestId": {_text(request_id)}, "clientIp": {_text(client_ip)}, '
            f'"account": {_text(account)}, "canonicalId": {_text(canonical_id)}, '
            f'"accessKeyId": {_text(access_key_id)}, "userAgent": {_text(user_agent)}, '
            f'"method": {_text(method)}, "operation": {_text(operation)}, '
            f'"bucket": {_text(bucket)}, "key": {_text(key)}, '
            f'"versionId": {_text(version_id)}, "location": {_text(location)}, '
            f'"status": {int(status)}, "errorCode": {_text(error_code)}, '
            f'"bytesIn": {int(bytes_in)}, "bytesOut": {int(bytes_out)}, '
            f'"totalTimeMs": {total_ms!r}, "turnAroundTimeMs": {turnaround_ms!r}}}')
    if sink is not None:
        sink((time.time(), line))
    else:
        log.info(line)


def stamped(created: float, line: str) -> str:
    """The line as written: its time first ("time": ISO 8601 UTC with milliseconds)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f'{{"time": "{stamp}.{int(created * 1000) % 1000:03d}Z", {line[1:]}'
